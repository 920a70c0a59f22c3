"""Datasets for the recipes: the Hub, local files, or built-in synthetic data.

The synthetic sets are deterministic (seeded) and position-sensitive: the answer depends on word
order, so a model without position information cannot solve them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, IterableDatasetDict, load_dataset

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
    """ "Does `north` come before `south`?" Both markers appear once among random words; label 1 if
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
            out.append(
                {
                    "id": f"{seed}-{k}",
                    "title": "synthetic",
                    "context": context,
                    "question": question,
                    "answers": answers,
                }
            )
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
            first, second = (
                (("title", title), ("topic", topic)) if rng.random() < 0.5 else (("topic", topic), ("title", title))
            )
            words[j:j] = list(second)
            words[i:i] = list(first)
            out.append({"document": " ".join(words), "summary": f"{title} {topic}"})
        return out

    return _split(rows, train_size, eval_size, seed)


def data_files(data_args) -> dict[str, str]:
    """split → local file(s) of the recipe, as given (several comma-separated; empty when the data does not
    come from files)."""
    if not (data_args.train_file or data_args.validation_file):
        return {}
    return {
        k: v
        for k, v in (
            ("train", data_args.train_file),
            ("validation", data_args.validation_file),
            ("test", data_args.test_file),
        )
        if v
    }


def uses_synthetic(data_args) -> bool:
    return not data_files(data_args) and data_args.dataset_name in (None, "synthetic")


def dataset_label(data_args) -> str:
    """What the data was, for metrics.json and the model card: the Hub name (and config), the local
    files (folder/name, as given), or "synthetic"."""
    files = data_files(data_args)
    if files:
        return ", ".join(dict.fromkeys("/".join(Path(p).parts[-2:]) for v in files.values() for p in comma_list(v)))
    if uses_synthetic(data_args):
        return "synthetic"
    name = data_args.dataset_name
    return f"{name}/{data_args.dataset_config_name}" if data_args.dataset_config_name else name


def hub_dataset(data_args) -> list | None:
    """[name, config] of the Hub dataset the recipe reads, or None (local files, the synthetic task)."""
    if data_files(data_args) or uses_synthetic(data_args):
        return None
    return [data_args.dataset_name, data_args.dataset_config_name]


def load_raw_datasets(data_args, synthetic=None) -> DatasetDict:
    """A DatasetDict with `train` and `validation` (and `test` when given), from local files, the
    Hub, or ``synthetic(data_args)`` (the task's builder: the offline default when neither files nor a
    name are set)."""
    files = data_files(data_args)
    streaming = bool(getattr(data_args, "streaming", False))  # an IterableDatasetDict (pretraining tasks)
    if files:
        files = {split: comma_list(path) for split, path in files.items()}
        for split, paths in files.items():
            if not streaming:  # a streamed corpus may not fit in memory: read as it trains
                for path in paths:
                    check_data_file(f"{split}_file", path)
        if (
            any(len(paths) > 1 for paths in files.values())
            or len(comma_list(getattr(data_args, "text_column", None))) > 1
        ):
            raw = (IterableDatasetDict if streaming else DatasetDict)(
                {split: _concatenate_files(split, paths, data_args, streaming) for split, paths in files.items()}
            )
        else:
            raw = _load_files({split: paths[0] for split, paths in files.items()}, streaming)
    elif uses_synthetic(data_args):
        if synthetic is None:
            raise ValueError(
                f"task={data_args.task!r} has no built-in synthetic data; give train_file / "
                "validation_file or dataset_name"
            )
        raw = synthetic(data_args)
    else:
        raw = load_dataset(data_args.dataset_name, data_args.dataset_config_name, streaming=streaming)
    if "validation" not in raw and "test" in raw:
        raw["validation"] = raw["test"]
    for split in ("train", "validation"):
        if split not in raw:
            raise ValueError(
                f"the data has no {split!r} split (found: {', '.join(raw)}); give {split}_file or a dataset with one"
            )
        if not streaming and len(raw[split]) == 0:
            raise ValueError(f"the {split!r} split is empty; check {split}_file / dataset_name")
    for split, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples)):
        if limit is not None:
            raw[split] = raw[split].take(limit) if streaming else raw[split].select(range(min(limit, len(raw[split]))))
    return raw


def comma_list(value) -> list[str]:
    """A recipe field that may name several things, comma-separated (``train_file: a.jsonl,b.jsonl``,
    ``text_column: text,document``), as a list; [] for None."""
    return [] if value is None else [p.strip() for p in str(value).split(",") if p.strip()]


def _load_files(files: dict, streaming: bool):
    extension = Path(next(iter(files.values()))).suffix.lower().lstrip(".")
    builder = {"json": "json", "jsonl": "json", "txt": "text"}.get(extension, extension)
    options = {"sample_by": "paragraph"} if builder == "text" else {}  # plain text: a blank line ends a document
    return load_dataset(builder, data_files=files, streaming=streaming, **options)


def _concatenate_files(split: str, paths: list[str], data_args, streaming: bool):
    """The rows of several files as one split. Files of one layout are read together; files of different
    layouts (e.g. a corpus with ``text`` and a summarization set with ``document``) keep one text column:
    ``text_column`` lists a column for each, comma-separated, and each file's first listed column it has
    becomes a column named after the first of the list (also with one file a split)."""
    from datasets import concatenate_datasets

    parts = [_load_files({split: path}, streaming)[split] for path in paths]
    columns = [list(part.column_names or next(iter(part)).keys()) for part in parts]  # a stream may not know them
    wanted = comma_list(getattr(data_args, "text_column", None))
    if len(wanted) < 2 and all(c == columns[0] for c in columns) and columns[0]:
        return concatenate_datasets(parts)
    aligned = []
    for path, part, names in zip(paths, parts, columns):
        found = next((c for c in wanted if c in names), None)
        if found is None:
            raise ValueError(
                f"{split}_file={','.join(paths)!r}: the files have different columns, so text_column must "
                f"list a column of each (comma-separated): {path!r} has columns {', '.join(names) or 'none'}, "
                f"none of them in text_column={getattr(data_args, 'text_column', None)!r}"
            )
        part = part.select_columns([found])
        aligned.append(part.rename_column(found, wanted[0]) if found != wanted[0] else part)
    return concatenate_datasets(aligned)  # a stream reads the files one after the other


def check_data_file(field_name: str, path) -> None:
    """A local data file must be UTF-8 text with rows; a .jsonl file (or a .json file that is not one JSON
    document) must hold one JSON object per line. ValueError naming the field, the file and the line."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise ValueError(
            f"{field_name}={str(path)!r} is not UTF-8 text: byte 0x{data[err.start]:02x} at line {line}, "
            f"column {column} ({err.reason}); re-save the file as UTF-8"
        ) from None
    if not text.strip():
        split = field_name.removesuffix("_file")
        raise ValueError(f"{field_name}={str(path)!r} is empty: the {split!r} split has no rows")
    if Path(path).suffix.lower() not in (".json", ".jsonl"):
        return
    if Path(path).suffix.lower() == ".json":
        try:
            json.loads(text)
            return  # one JSON document (a list of rows, or an object of columns)
        except json.JSONDecodeError:
            pass  # JSON lines in a .json file
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{field_name}={str(path)!r} line {number} is not valid JSON ({err.msg}, column "
                f"{err.colno}): {line.strip()[:80]!r}"
            ) from None
        if not isinstance(row, dict):
            raise ValueError(
                f"{field_name}={str(path)!r} line {number} is not a JSON object of column: value "
                f"(got {type(row).__name__}): {line.strip()[:80]!r}"
            )


def _row_location(data_args, split: str, index: int) -> str:
    """Where row ``index`` of ``split`` came from: the file and line for local files, else the row number."""
    path = data_files(data_args).get(split)
    if path is None:
        return f"the {split} split, row {index + 1}"
    where = f"{split}_file={path!r}, row {index + 1}"
    if Path(path).suffix.lower() in (".jsonl", ".json"):
        lines = [n for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1) if line.strip()]
        if len(lines) > 1 and index < len(lines):  # JSON lines: one row per non-blank line
            where += f" (line {lines[index]})"
    elif Path(path).suffix.lower() == ".csv":
        where += f" (line {index + 2}, after the header, if no value spans lines)"
    return where


def check_text_columns(dataset, columns: dict[str, str | None], split: str, data_args) -> None:
    """Every value of the text ``columns`` (recipe field → column) must be a non-empty string: a null, a
    number or an empty string raises ValueError naming the field, the column and where the row is."""
    for field_name, column in columns.items():
        if column is None:
            continue
        for index, value in enumerate(dataset[column]):
            if isinstance(value, str) and value.strip():
                continue
            what = (
                "null"
                if value is None
                else "an empty string"
                if isinstance(value, str)
                else f"not text ({type(value).__name__} {value!r})"
            )
            raise ValueError(
                f"{field_name}={column!r}: {_row_location(data_args, split, index)} is {what}; every "
                f"row needs text in column {column!r} (drop or fix the row)"
            )


def tokenize(dataset, fn, data_args):
    """``dataset.map(fn)`` in batches, replacing the raw columns by what ``fn`` returns."""
    return dataset.map(
        fn, batched=True, remove_columns=dataset.column_names, num_proc=data_args.preprocessing_num_workers
    )


def require_columns(dataset, columns: dict[str, str], split: str) -> None:
    """Raise naming the recipe field whose column is missing."""
    for field_name, column in columns.items():
        if column is not None and column not in dataset.column_names:
            raise ValueError(
                f"{field_name}={column!r} is not a column of the {split} data; columns are: {', '.join(dataset.column_names)}"
            )
