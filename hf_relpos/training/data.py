"""Datasets for the recipes: the Hub, local files, or built-in synthetic data.

The synthetic sets are deterministic (seeded) and position-sensitive: the answer depends on word
order, so a model without position information cannot solve them.
"""

from __future__ import annotations

import random
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, load_dataset

WORDS = (
    "river stone cloud maple amber lantern meadow harbor violet copper falcon willow ember canyon "
    "orchid pebble thunder saffron glacier marble juniper quartz tundra cobalt prairie lotus "
    "cedar dune fjord hazel ivory jasper kelp lagoon mango nectar olive pine quill raven sage "
    "tulip umber velvet walnut yarrow zephyr basil clover dahlia fennel ginger heron iris"
).split()

def _split(rows_fn, train_size, eval_size, seed):
    return DatasetDict(
        train=Dataset.from_list(rows_fn(random.Random(seed), train_size)),
        validation=Dataset.from_list(rows_fn(random.Random(seed + 1), eval_size)),
    )


def synthetic_classification(train_size=2000, eval_size=300, seed=1234) -> DatasetDict:
    """"Does `north` come before `south`?" Both markers appear once among random words; label 1 if
    north is first. A bag of words cannot tell the classes apart."""

    def rows(rng, n):
        out = []
        for _ in range(n):
            words = [rng.choice(WORDS) for _ in range(rng.randint(8, 24))]
            i, j = rng.sample(range(len(words) + 2), 2)
            words.insert(min(i, j), "north" if i < j else "south")
            words.insert(max(i, j), "south" if i < j else "north")
            out.append({"text": " ".join(words), "label": int(i < j)})
        return out

    data = _split(rows, train_size, eval_size, seed)
    return data.cast_column("label", ClassLabel(names=["south_first", "north_first"]))


def synthetic_qa(train_size=2000, eval_size=300, seed=1234, with_negative=False) -> DatasetDict:
    """SQuAD layout. The context holds `north <w1>` and `south <w2>` among random words; the
    question "what comes after north?" (or south) is answered by the word that FOLLOWS the marker.
    With ``with_negative``, a quarter of the questions ask about `east`, which is absent."""

    def rows(rng, n):
        out = []
        for k in range(n):
            words = [rng.choice(WORDS) for _ in range(rng.randint(8, 24))]
            i, j = sorted(rng.sample(range(len(words) + 1), 2))
            pairs = [["north", rng.choice(WORDS)], ["south", rng.choice(WORDS)]]
            rng.shuffle(pairs)
            words[j:j] = pairs[1]
            words[i:i] = pairs[0]
            context = " ".join(words)
            if with_negative and rng.random() < 0.25:
                question, answers = "what comes after east?", {"text": [], "answer_start": []}
            else:
                marker = rng.choice(["north", "south"])
                m = words.index(marker)
                start = len(" ".join(words[: m + 1])) + 1
                question = f"what comes after {marker}?"
                answers = {"text": [words[m + 1]], "answer_start": [start]}
            out.append({"id": f"{seed}-{k}", "title": "synthetic", "context": context, "question": question, "answers": answers})
        return out

    return _split(rows, train_size, eval_size, seed)


def synthetic_summarization(train_size=2000, eval_size=300, seed=1234) -> DatasetDict:
    """The summary is "<word after `title`> <word after `topic`>": both markers appear once, in
    either order, among random words. Which words follow the markers depends on word order."""

    def rows(rng, n):
        out = []
        for _ in range(n):
            words = [rng.choice(WORDS) for _ in range(rng.randint(8, 24))]
            title, topic = rng.sample(WORDS, 2)
            i, j = sorted(rng.sample(range(len(words) + 1), 2))
            first, second = (("title", title), ("topic", topic)) if rng.random() < 0.5 else (("topic", topic), ("title", title))
            words[j:j] = list(second)
            words[i:i] = list(first)
            out.append({"document": " ".join(words), "summary": f"{title} {topic}"})
        return out

    return _split(rows, train_size, eval_size, seed)


def data_files(data_args) -> dict[str, str]:
    """split → local file of the recipe (empty when the data does not come from files)."""
    if not (data_args.train_file or data_args.validation_file):
        return {}
    return {k: v for k, v in (("train", data_args.train_file), ("validation", data_args.validation_file),
                              ("test", data_args.test_file)) if v}


def uses_synthetic(data_args) -> bool:
    return not data_files(data_args) and data_args.dataset_name in (None, "synthetic")


def dataset_label(data_args) -> str:
    """What the data was, for metrics.json and the model card: the Hub name (and config), the local
    files (folder/name, as given), or "synthetic"."""
    files = data_files(data_args)
    if files:
        return ", ".join(dict.fromkeys("/".join(Path(p).parts[-2:]) for p in files.values()))
    if uses_synthetic(data_args):
        return "synthetic"
    name = data_args.dataset_name
    return f"{name}/{data_args.dataset_config_name}" if data_args.dataset_config_name else name


def load_raw_datasets(data_args, synthetic=None) -> DatasetDict:
    """A DatasetDict with `train` and `validation` (and `test` when given), from local files, the
    Hub, or ``synthetic(data_args)`` (the task's builder: the offline default when neither files nor a
    name are set)."""
    files = data_files(data_args)
    if files:
        for split, path in files.items():
            with open(path, encoding="utf-8") as handle:
                if not any(line.strip() for line in handle):
                    raise ValueError(f"{split}_file={path!r} is empty: the {split!r} split has no rows")
        extension = Path(next(iter(files.values()))).suffix.lower().lstrip(".")
        raw = load_dataset("json" if extension in ("json", "jsonl") else extension, data_files=files)
    elif uses_synthetic(data_args):
        if synthetic is None:
            raise ValueError(f"task={data_args.task!r} has no built-in synthetic data; give train_file / "
                             "validation_file or dataset_name")
        raw = synthetic(data_args)
    else:
        raw = load_dataset(data_args.dataset_name, data_args.dataset_config_name)
    if "validation" not in raw and "test" in raw:
        raw["validation"] = raw["test"]
    for split in ("train", "validation"):
        if split not in raw:
            raise ValueError(f"the data has no {split!r} split (found: {', '.join(raw)}); give {split}_file or a dataset with one")
        if len(raw[split]) == 0:
            raise ValueError(f"the {split!r} split is empty; check {split}_file / dataset_name")
    for split, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples)):
        if limit is not None:
            raw[split] = raw[split].select(range(min(limit, len(raw[split]))))
    return raw


def tokenize(dataset, fn, data_args):
    """``dataset.map(fn)`` in batches, replacing the raw columns by what ``fn`` returns."""
    return dataset.map(fn, batched=True, remove_columns=dataset.column_names, num_proc=data_args.preprocessing_num_workers)


def require_columns(dataset, columns: dict[str, str], split: str) -> None:
    """Raise naming the recipe field whose column is missing."""
    for field_name, column in columns.items():
        if column is not None and column not in dataset.column_names:
            raise ValueError(
                f"{field_name}={column!r} is not a column of the {split} data; columns are: {', '.join(dataset.column_names)}"
            )
