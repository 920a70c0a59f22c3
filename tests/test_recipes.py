"""Recipes end to end on tiny models: built-in data, ../shared/data, errors, resume, compare, 2 processes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import PROJECT_ROOT, run_without_hf_relpos
from huggingface_hub import ModelCard

from hf_relpos.cli import main as cli_main
from hf_relpos.training import parse_recipe, train
from hf_relpos.training.data import synthetic_classification, synthetic_qa, synthetic_summarization
from hf_relpos.training.qa import postprocess_predictions

RECIPES = PROJECT_ROOT / "recipes"
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"

FAST = [
    "--max_steps",
    "6",
    "--per_device_train_batch_size",
    "8",
    "--logging_steps",
    "2",
    "--save_strategy",
    "no",
    "--eval_strategy",
    "no",
    "--synthetic_train_size",
    "64",
    "--synthetic_eval_size",
    "24",
    "--disable_tqdm",
    "true",
]


def need_shared(*parts):
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared/data is only on the project's machines)")
    return path


@pytest.mark.parametrize(
    "recipe,metric",
    [
        ("classification_demo.yaml", "eval_accuracy"),
        ("qa_demo.yaml", "eval_f1"),
        ("summarization_demo.yaml", "eval_rougeL"),
    ],
)
def test_demo_recipe_end_to_end(tmp_path, recipe, metric):
    out = tmp_path / "run"
    result = train(RECIPES / recipe, [*FAST, "--output_dir", str(out)])
    assert metric in result["eval"] and np.isfinite(result["eval"][metric])
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "metrics.json",
        "trainer_state.json",
        "README.md",
        "relative_positions.py",
        "attention_engine.py",
        "position_kernels.py",
        "scheme_config.py",
    ):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["eval"][metric] == pytest.approx(result["eval"][metric])
    card = ModelCard.load(out / "README.md")
    names = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert names[metric.removeprefix("eval_")] == pytest.approx(result["eval"][metric])
    assert "relative-position" in card.data.tags and "custom_code" in card.data.tags
    assert "trust_remote_code=True" in card.text
    config = json.loads((out / "config.json").read_text())
    assert config["relative_position"] == yaml.safe_load((RECIPES / recipe).read_text())["relative_position"]
    assert "auto_map" in config
    pipelines = {
        "qa_demo.yaml": {"question-answering"},
        "summarization_demo.yaml": {"summarization", "text2text-generation"},
    }
    assert set(config.get("custom_pipelines", {})) == pipelines.get(recipe, set())  # built-in pipelines need none
    assert (out / "pipelines_relpos.py").is_file() == (recipe in pipelines)


def test_classification_checkpoint_reproduces_metric_without_hf_relpos(tmp_path):
    out = tmp_path / "cls"
    result = train(RECIPES / "classification_demo.yaml", [*FAST, "--max_steps", "12", "--output_dir", str(out)])
    valid = synthetic_classification(train_size=64, eval_size=24, seed=1234)["validation"]
    data = tmp_path / "valid.json"
    data.write_text(json.dumps({"text": list(valid["text"]), "label": list(valid["label"])}))
    got = run_without_hf_relpos(
        f"""
        import json, torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        model = AutoModelForSequenceClassification.from_pretrained({str(out)!r}, trust_remote_code=True).eval()
        tok = AutoTokenizer.from_pretrained({str(out)!r}, trust_remote_code=True)
        data = json.load(open({str(data)!r}))
        enc = tok(data["text"], padding=True, truncation=True, max_length=64, return_tensors="pt")
        with torch.no_grad():
            pred = model(**enc).logits.argmax(-1).tolist()
        acc = sum(int(p == l) for p, l in zip(pred, data["label"])) / len(pred)
        print(json.dumps({{"accuracy": acc, "module": type(model).__module__}}))
        """,
        cwd=tmp_path,
    )
    assert "transformers_modules" in got["module"]
    assert got["accuracy"] == pytest.approx(result["eval"]["eval_accuracy"])


def test_qa_postprocessing_recovers_gold_answers_from_perfect_logits(tmp_path):
    """Logits peaked on the gold span must give EM 100 through windows, offsets and n-best."""
    from hf_relpos.training.arguments import DataTrainingArguments
    from hf_relpos.training.modeling import train_wordpiece_tokenizer

    raw = synthetic_qa(train_size=10, eval_size=20, seed=7, with_negative=True)["validation"]
    args = DataTrainingArguments(task="qa", max_seq_length=24, doc_stride=8, version_2_with_negative=True)
    tok = train_wordpiece_tokenizer(list(raw["context"]) + list(raw["question"]), vocab_size=300)
    enc = tok(
        list(raw["question"]),
        list(raw["context"]),
        truncation="only_second",
        max_length=24,
        stride=8,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )
    n = len(enc["input_ids"])
    assert n > len(raw)  # contexts were split into several windows
    start, end = np.full((n, 24), -10.0), np.full((n, 24), -10.0)
    features = {"example_id": [], "offset_mapping": []}
    for i in range(n):
        example = raw[enc["overflow_to_sample_mapping"][i]]
        seq = enc.sequence_ids(i)
        offsets = [o if seq[k] == 1 else None for k, o in enumerate(enc["offset_mapping"][i])]
        features["example_id"].append(example["id"])
        features["offset_mapping"].append(offsets)
        start[i, 0] = end[i, 0] = 0.0  # null score
        if example["answers"]["text"]:
            s_char = example["answers"]["answer_start"][0]
            e_char = s_char + len(example["answers"]["text"][0])
            for k, o in enumerate(offsets):
                if o is not None and o[0] == s_char:
                    start[i, k] = 10.0
                if o is not None and o[1] == e_char:
                    end[i, k] = 10.0

    class Features(list):
        def __getitem__(self, key):
            return features[key] if isinstance(key, str) else {"offset_mapping": features["offset_mapping"][key]}

    preds = postprocess_predictions(raw, Features(), start, end, args)
    for example in raw:
        gold = example["answers"]["text"][0] if example["answers"]["text"] else ""
        assert preds[example["id"]] == gold


def test_shared_sentiment_data(tmp_path):
    need_shared("sentiment", "train.jsonl")
    out = tmp_path / "sentiment"
    result = train(
        RECIPES / "sentiment_shared.yaml",
        [*FAST, "--max_train_samples", "128", "--max_eval_samples", "64", "--output_dir", str(out)],
    )
    assert 0.0 <= result["eval"]["eval_accuracy"] <= 1.0
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "0", "1": "1"}


def test_shared_qa_fixture(tmp_path):
    path = need_shared("qa", "squad_fixture.jsonl")
    result = train(
        RECIPES / "qa_demo.yaml",
        [
            *FAST,
            "--dataset_name",
            "none",
            "--train_file",
            str(path),
            "--validation_file",
            str(path),
            "--max_seq_length",
            "128",
            "--doc_stride",
            "48",
            "--output_dir",
            str(tmp_path / "qa"),
        ],
    )
    assert 0.0 <= result["eval"]["eval_f1"] <= 100.0


def test_shared_summarization_data(tmp_path):
    need_shared("summarization", "train.jsonl")
    out = tmp_path / "sum"
    result = train(
        RECIPES / "summarization_shared.yaml",
        [*FAST, "--max_train_samples", "64", "--max_eval_samples", "8", "--output_dir", str(out)],
    )
    assert "eval_rouge1" in result["eval"]


def test_resume_from_checkpoint_continues(tmp_path):
    out = tmp_path / "resume"
    common = [*FAST, "--save_strategy", "steps", "--save_steps", "3", "--output_dir", str(out)]
    train(RECIPES / "classification_demo.yaml", [*common, "--max_steps", "3"])
    assert (out / "checkpoint-3").is_dir()
    train(RECIPES / "classification_demo.yaml", [*common, "--max_steps", "6", "--resume_from_checkpoint", "true"])
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    # the resumed run logged no step before 3: it did not start over
    steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert steps and min(steps) >= 2 and max(steps) == 6


def test_compare_writes_table_and_chart(tmp_path, capsys):
    code = cli_main(
        [
            "compare",
            str(RECIPES / "classification_demo.yaml"),
            "--schemes",
            "alibi,none",
            *FAST,
            "--output_dir",
            str(tmp_path),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "alibi" in printed and "none" in printed and "accuracy" in printed
    rows = json.loads((tmp_path / "compare" / "compare.json").read_text())
    assert [r["scheme"] for r in rows] == ["alibi", "none"]
    assert (tmp_path / "compare" / "compare.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["--task", "translation"], "task='translation'"),
        (["--relative_position", "relative_key"], "relative_position='relative_key'"),
        (["--preset", "huge"], "preset='huge'"),
        (["--text_column", "sentence"], "text_column='sentence'"),
        (["--synthetic_train_size", "0"], "synthetic_train_size=0"),
        (["--bogus_flag", "1"], "--bogus_flag"),
    ],
)
def test_bad_recipe_values_fail_before_training(tmp_path, overrides, needle):
    with pytest.raises(ValueError) as err:
        train(RECIPES / "classification_demo.yaml", [*FAST, *overrides, "--output_dir", str(tmp_path / "x")])
    assert needle in str(err.value)
    assert not (tmp_path / "x" / "model.safetensors").exists()


def test_unknown_recipe_field_is_named(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"task": "classification", "learning_rat": 0.1}))
    with pytest.raises(ValueError, match="unknown recipe field.*learning_rat"):
        parse_recipe(str(recipe))


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_data_errors_name_the_problem(tmp_path):
    empty = _write_jsonl(tmp_path / "empty.jsonl", [])
    ok = _write_jsonl(tmp_path / "ok.jsonl", [{"text": "a b", "label": 0}, {"text": "b a", "label": 1}])
    unseen = _write_jsonl(tmp_path / "bad.jsonl", [{"text": "a b", "label": 5}])
    base = [*FAST, "--dataset_name", "none", "--output_dir", str(tmp_path / "o")]
    with pytest.raises(ValueError, match="split is empty|no 'train' split|empty"):
        train(RECIPES / "classification_demo.yaml", [*base, "--train_file", ok, "--validation_file", empty])
    with pytest.raises(ValueError, match="label 5"):
        train(RECIPES / "classification_demo.yaml", [*base, "--train_file", ok, "--validation_file", unseen])
    qa = synthetic_qa(train_size=4, eval_size=2, seed=3)["train"].to_list()
    qa[0]["answers"] = {"text": ["nowhere"], "answer_start": [0]}
    bad_qa = _write_jsonl(tmp_path / "qa.jsonl", qa)
    with pytest.raises(ValueError, match="answer 'nowhere' is not found in the context"):
        train(RECIPES / "qa_demo.yaml", [*base, "--train_file", bad_qa, "--validation_file", bad_qa])
    with pytest.raises(ValueError, match="train_file='missing.jsonl' does not exist"):
        train(RECIPES / "classification_demo.yaml", [*base, "--train_file", "missing.jsonl"])


def test_cli_reports_errors_without_traceback(capsys):
    code = cli_main(["train", str(RECIPES / "classification_demo.yaml"), "--relative_position", "nope"])
    assert code == 2
    assert "relative_position='nope'" in capsys.readouterr().err


def test_synthetic_data_is_deterministic_and_order_sensitive():
    a = synthetic_classification(50, 10, seed=3)["train"]
    b = synthetic_classification(50, 10, seed=3)["train"]
    assert a.to_list() == b.to_list()
    # same bag of words, different order, different label: a bag-of-words model cannot solve it
    for row in a:
        words = row["text"].split()
        assert words.count("north") == 1 and words.count("south") == 1
        assert row["label"] == int(words.index("north") < words.index("south"))
    for s in synthetic_summarization(20, 2, seed=1)["train"]:
        words = s["document"].split()
        assert s["summary"].split() == [words[words.index("title") + 1], words[words.index("topic") + 1]]


@pytest.mark.skipif(
    shutil.which("accelerate") is None and not Path(sys.executable).with_name("accelerate").exists(),
    reason="accelerate launcher not installed",
)
def test_two_processes_with_accelerate(tmp_path):
    out = tmp_path / "ddp"
    launcher = str(Path(sys.executable).with_name("accelerate"))
    # accelerate's --cpu flag runs ONE process; --multi_gpu goes through torch.distributed.run, and with
    # use_cpu (the recipe's) Trainer sets up gloo on the CPU
    cmd = [
        launcher,
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "hf_relpos.cli",
        "train",
        str(RECIPES / "classification_demo.yaml"),
        *FAST,
        "--output_dir",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    metrics = json.loads((out / "metrics.json").read_text())
    assert "eval_accuracy" in metrics["eval"]
    assert "processes: 2, total train batch size: 16" in proc.stdout + proc.stderr


def test_relative_position_learning_rate_gets_its_own_group(tmp_path):
    from hf_relpos.training.arguments import parse_recipe as parse
    from hf_relpos.training.data import load_raw_datasets
    from hf_relpos.training.tasks import TASKS
    from hf_relpos.training.trainer import is_position_parameter

    model_args, data_args, training_args = parse(
        RECIPES / "classification_demo.yaml",
        [*FAST, "--relative_position", "t5", "--relative_position_learning_rate", "0.1", "--output_dir", str(tmp_path)],
    )
    task = TASKS["classification"]
    trainer = task.setup(model_args, data_args, training_args, load_raw_datasets(data_args, task.synthetic)).trainer
    optimizer = trainer.create_optimizer()
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    groups = [{names[id(p)] for p in g["params"]} for g in optimizer.param_groups]
    position = [g for g in optimizer.param_groups if g["lr"] == 0.1]
    assert len(position) == 1
    assert {names[id(p)] for p in position[0]["params"]} == {
        "bert.encoder.relative_position.relative_attention_bias.weight"
    }
    assert all(not is_position_parameter(n) for g in groups[:-1] for n in g)
    assert sum(len(g) for g in groups) == len(names)  # every parameter in exactly one group
    with pytest.raises(ValueError, match="relative_position_learning_rate=-1.0"):
        parse(RECIPES / "classification_demo.yaml", ["--relative_position_learning_rate", "-1"])


def test_task_registry_drives_the_runner():
    from transformers import AutoModelForSequenceClassification

    from hf_relpos.training import TASKS, Task, get_task

    assert list(TASKS) == ["classification", "qa", "summarization", "mlm", "span_corruption", "embedding_distillation"]
    task = get_task("classification")
    assert isinstance(task, Task) and task.pipeline_tag == "text-classification"
    assert task.auto_class is AutoModelForSequenceClassification
    assert TASKS["summarization"].default_columns == {"text_column": "document", "summary_column": "summary"}
    with pytest.raises(
        ValueError,
        match="task='translation' is not valid; choose one of: classification, qa, summarization, mlm, span_corruption, "
        "embedding_distillation",
    ):
        get_task("translation")


def test_learned_positions_follow_max_seq_length(tmp_path):
    """A fresh model with learned absolute positions gets a table as long as the recipe's inputs (QA pads
    every window to max_seq_length, so 520 > 512 would fail at the first forward otherwise)."""
    out = tmp_path / "qa_long"
    train(
        RECIPES / "qa_demo.yaml",
        [
            *FAST,
            "--absolute_position",
            "learned",
            "--max_seq_length",
            "520",
            "--synthetic_train_size",
            "16",
            "--synthetic_eval_size",
            "8",
            "--max_steps",
            "1",
            "--output_dir",
            str(out),
        ],
    )
    assert json.loads((out / "config.json").read_text())["max_position_embeddings"] == 520
    # a table fixed shorter than the inputs by model_overrides: refused at parse time, naming both fields
    with pytest.raises(ValueError, match=r"max_position_embeddings=256.*max_seq_length"):
        parse_recipe(
            RECIPES / "qa_demo.yaml",
            [
                "--absolute_position",
                "learned",
                "--max_seq_length",
                "520",
                "--model_overrides",
                '{"max_position_embeddings": 256}',
            ],
        )


def test_pretrained_learned_positions_refuse_longer_inputs(tmp_path):
    from hf_relpos import RelPosBertConfig, RelPosBertForSequenceClassification

    folder = tmp_path / "short"
    RelPosBertForSequenceClassification(
        RelPosBertConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            vocab_size=100,
            absolute_position="learned",
            relative_position="none",
            max_position_embeddings=64,
        )
    ).save_pretrained(folder)
    with pytest.raises(ValueError, match=r"learned absolute positions for 64 tokens.*128 tokens.*max_seq_length"):
        parse_recipe(
            RECIPES / "classification_demo.yaml", ["--model_name_or_path", str(folder), "--max_seq_length", "128"]
        )
    parse_recipe(RECIPES / "classification_demo.yaml", ["--model_name_or_path", str(folder), "--max_seq_length", "64"])


def test_metrics_and_card_name_the_data_files(tmp_path):
    data = tmp_path / "mydata"
    data.mkdir()
    rows = synthetic_classification(48, 16, seed=5)
    train_file = _write_jsonl(data / "train.jsonl", rows["train"].to_list())
    valid_file = _write_jsonl(data / "valid.jsonl", rows["validation"].to_list())
    out = tmp_path / "files"
    result = train(
        RECIPES / "classification_demo.yaml",
        [*FAST, "--train_file", train_file, "--validation_file", valid_file, "--output_dir", str(out)],
    )
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["dataset"] == "mydata/train.jsonl, mydata/valid.jsonl"
    assert saved["data_files"] == {"train": train_file, "validation": valid_file}
    assert (
        saved["pipeline_tag"] == "text-classification" and saved["auto_class"] == "AutoModelForSequenceClassification"
    )
    card = ModelCard.load(out / "README.md")
    # training and evaluation data named apart; local files are no Hub dataset ids: the text names them, the
    # `datasets` metadata does not
    assert not card.data.datasets
    assert "- Training data: local file `mydata/train.jsonl`" in card.text
    assert "- Evaluation data: local file `mydata/valid.jsonl`" in card.text
    assert "Trained on local file `mydata/train.jsonl` only (evaluated on local file `mydata/valid.jsonl`)" in card.text
    assert "train.jsonl, mydata/valid.jsonl" not in card.text and "synthetic" not in card.text
    assert result["dataset"] == saved["dataset"]
