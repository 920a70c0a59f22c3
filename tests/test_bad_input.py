"""Bad input and reruns (issue 14): every user mistake is one line naming the file / field / value with
exit 2; output folders are never replaced silently and are complete or visibly incomplete; resumed runs
report whole-run metrics. docs/bad_input.md lists each case with the test that checks it."""

import json
import re
from pathlib import Path

import pytest
from helpers import PROJECT_ROOT

from hf_relpos.cli import main as cli_main
from hf_relpos.hub import INCOMPLETE_MARKER, push_to_hub
from hf_relpos.training import train
from hf_relpos.training.run import FINAL_TMP

pytestmark = pytest.mark.usefixtures("one_thread")
RECIPE = str(PROJECT_ROOT / "recipes" / "classification_demo.yaml")
FAST = [
    "--max_steps",
    "4",
    "--per_device_train_batch_size",
    "8",
    "--logging_steps",
    "1",
    "--save_strategy",
    "no",
    "--eval_strategy",
    "no",
    "--synthetic_train_size",
    "32",
    "--synthetic_eval_size",
    "8",
    "--disable_tqdm",
    "true",
    "--max_seq_length",
    "32",
]


def _cli_error(capsys, argv) -> str:
    """Run the CLI; it must exit 2 with ONE line on stderr (no traceback). Returns that line."""
    code = cli_main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in re.split(r"[\r\n]", err) if line.startswith("hf-relpos ")]  # (progress bars aside)
    assert len(lines) == 1 and lines[0] == err.splitlines()[-1], err
    return lines[0]


def _jsonl(path: Path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _rows(n=8):
    return [{"text": f"north river {i} south stone", "label": i % 2} for i in range(n)]


def _files_run(tmp_path, capsys, train_file, valid_file=None, recipe=RECIPE, extra=()):
    valid_file = valid_file or _jsonl(tmp_path / "valid.jsonl", _rows(4))
    return _cli_error(
        capsys,
        [
            "train",
            recipe,
            *FAST,
            "--dataset_name",
            "none",
            "--train_file",
            train_file,
            "--validation_file",
            valid_file,
            "--output_dir",
            str(tmp_path / "out"),
            *extra,
        ],
    )


# ---- 1. non-empty output_dir ---------------------------------------------------------------------------------


def test_nonempty_output_dir_is_refused_then_overwritten_or_resumed(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train",
        RECIPE,
        *FAST,
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
        "--save_total_limit",
        "1",
        "--output_dir",
        str(out),
    ]
    assert cli_main(args) == 0
    capsys.readouterr()
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert "checkpoint-4" in before
    err = _cli_error(capsys, args)
    assert f"output_dir={str(out)!r} is not empty" in err and "overwrite_output_dir=true" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing touched
    # a folder of the user's own files is refused as well, and nothing is written into it
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert "is not empty" in _cli_error(capsys, ["train", RECIPE, *FAST, "--output_dir", str(mine)])
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    # resuming in it is allowed; save_total_limit only rotates this run's own lineage
    assert cli_main([*args, "--max_steps", "6", "--resume_from_checkpoint", "true"]) == 0
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 6
    # overwrite_output_dir starts over in an emptied folder: the earlier run's checkpoints are gone, not mixed in
    (out / "stray.txt").write_text("from the earlier run")
    assert cli_main([*args, "--overwrite_output_dir", "true"]) == 0
    assert not (out / "stray.txt").exists() and not (out / "checkpoint-6").exists()
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 4


# ---- 3. complete or visibly incomplete -----------------------------------------------------------------------


def test_finished_folder_is_complete_and_marker_free(tmp_path):
    out = tmp_path / "done"
    train(RECIPE, [*FAST, "--output_dir", str(out)])
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json", "README.md"} <= names
    assert INCOMPLETE_MARKER not in names and FINAL_TMP not in names


def test_failed_final_step_leaves_a_visibly_incomplete_folder(tmp_path, monkeypatch):
    """The final step fails after training (the card): the folder has the marker, no top-level config.json
    (so from_pretrained refuses it), and `push` refuses it."""
    import importlib

    run_module = importlib.import_module("hf_relpos.training.run")

    def broken_card(*args, **kwargs):
        raise RuntimeError("injected: card rendering failed")

    monkeypatch.setattr(run_module, "build_model_card", broken_card)
    out = tmp_path / "half"
    with pytest.raises(RuntimeError, match="injected"):
        train(RECIPE, [*FAST, "--output_dir", str(out)])
    assert (out / INCOMPLETE_MARKER).is_file() and "resume_from_checkpoint" in (out / INCOMPLETE_MARKER).read_text()
    assert not (out / "config.json").exists()
    from transformers import AutoConfig

    with pytest.raises((OSError, ValueError)):  # no config.json: not loadable
        AutoConfig.from_pretrained(out)
    with pytest.raises(ValueError, match="unfinished training run"):
        push_to_hub(out, "user/half", dry_run=True)


# ---- 5. CLI errors: one line, exit 2 -------------------------------------------------------------------------


def test_push_to_unreachable_hub_is_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "model"
    train(RECIPE, [*FAST, "--output_dir", str(out)])
    capsys.readouterr()
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    err = _cli_error(capsys, ["push", str(out), "--repo-id", "user/model", "--token", "hf_x"])
    assert "cannot reach the Hub at http://127.0.0.1:9" in err and "Connection refused" in err


def test_malformed_yaml_recipe(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("task: classification\nlearning_rate: [0.1\nseed: 3\n")
    err = _cli_error(capsys, ["train", str(recipe)])
    assert f"recipe {str(recipe)!r} is not valid YAML" in err and "line 3" in err


def test_malformed_jsonl_line_names_file_and_line(tmp_path, capsys):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(_rows(1)[0]) + "\n" + '{"text": "a b", "label": 1\n')
    err = _files_run(tmp_path, capsys, str(path))
    assert f"train_file={str(path)!r} line 2 is not valid JSON" in err


def test_null_text_names_file_column_and_row(tmp_path, capsys):
    rows = _rows(5)
    rows[3]["text"] = None
    path = _jsonl(tmp_path / "train.jsonl", rows)
    err = _files_run(tmp_path, capsys, path)
    assert f"text_column='text': train_file={path!r}, row 4 (line 4) is null" in err


def test_empty_text_is_refused_before_training(tmp_path, capsys):
    rows = _rows(5)
    rows[1]["text"] = ""
    path = _jsonl(tmp_path / "train.jsonl", rows)
    assert "row 2 (line 2) is an empty string" in _files_run(tmp_path, capsys, path)
    doc = [{"document": "title a topic b", "summary": "a b"}, {"document": "   ", "summary": "x"}]
    sfile = _jsonl(tmp_path / "sum.jsonl", doc)
    err = _files_run(tmp_path, capsys, sfile, sfile, recipe=str(PROJECT_ROOT / "recipes" / "summarization_demo.yaml"))
    assert "text_column='document'" in err and "row 2" in err and "empty string" in err


def test_non_utf8_file_names_file_line_and_column(tmp_path, capsys):
    path = tmp_path / "train.csv"
    path.write_bytes(b"text,label\nnorth a south,1\nsouth caf\xe9 north,0\n")
    valid = tmp_path / "valid.csv"
    valid.write_text("text,label\nnorth a south,1\nsouth b north,0\n")
    err = _files_run(tmp_path, capsys, str(path), str(valid))
    assert f"train_file={str(path)!r} is not UTF-8 text: byte 0xe9 at line 3, column 10" in err


def test_float_labels_are_refused_whole_floats_are_classes(tmp_path, capsys):
    rows = _rows(6)
    rows[2]["label"] = 0.5
    err = _files_run(tmp_path, capsys, _jsonl(tmp_path / "train.jsonl", rows))
    assert "label_column='label'" in err and "label 0.5 (row 3)" in err and "Regression" in err
    whole = [{**r, "label": float(r["label"])} for r in _rows(8)]
    out = tmp_path / "whole"
    train(
        RECIPE,
        [
            *FAST,
            "--dataset_name",
            "none",
            "--train_file",
            _jsonl(tmp_path / "w.jsonl", whole),
            "--validation_file",
            _jsonl(tmp_path / "wv.jsonl", whole[:4]),
            "--output_dir",
            str(out),
        ],
    )
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "0", "1": "1"}


# ---- 6. trust_remote_code ------------------------------------------------------------------------------------


def test_trust_remote_code_is_off_by_default_and_named_when_needed(tmp_path, capsys):
    from hf_relpos import RelPosBertConfig, RelPosBertForSequenceClassification
    from hf_relpos.training import parse_recipe

    model_args, _, _ = parse_recipe(RECIPE, [])
    assert model_args.trust_remote_code is False
    own = tmp_path / "own"
    RelPosBertForSequenceClassification(
        RelPosBertConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            vocab_size=200,
            relative_position="alibi",
        )
    ).save_pretrained(own)
    from hf_relpos.training.modeling import train_wordpiece_tokenizer

    train_wordpiece_tokenizer([r["text"] for r in _rows(20)], vocab_size=200).save_pretrained(own)
    # our own checkpoint (auto_map + code files) loads without trust_remote_code: the classes are registered
    train(RECIPE, [*FAST, "--model_name_or_path", str(own), "--output_dir", str(tmp_path / "ft")])
    # a checkpoint whose model type only its own code knows: the error says how to opt in
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    config = json.loads((own / "config.json").read_text())
    config["model_type"] = "someone_elses_model"
    (foreign / "config.json").write_text(json.dumps(config))
    err = _cli_error(
        capsys,
        [
            "train",
            RECIPE,
            *FAST,
            "--model_name_or_path",
            str(foreign),
            "--tokenizer_name",
            str(own),
            "--output_dir",
            str(tmp_path / "f"),
        ],
    )
    assert f"model_name_or_path={str(foreign)!r} carries its own modeling code" in err
    assert "`trust_remote_code: true`" in err


# ---- 8. resumed runs report the whole run ---------------------------------------------------------------------


def test_resumed_train_metrics_cover_the_whole_run(tmp_path):
    straight = train(RECIPE, [*FAST, "--max_steps", "6", "--output_dir", str(tmp_path / "a")])["train"]
    common = [*FAST, "--save_strategy", "steps", "--save_steps", "3", "--output_dir", str(tmp_path / "b")]
    train(RECIPE, [*common, "--max_steps", "3", "--lr_scheduler_type", "constant"])
    common_b = [*common, "--lr_scheduler_type", "constant"]
    resumed = train(RECIPE, [*common_b, "--max_steps", "6", "--resume_from_checkpoint", "true"])["train"]
    assert resumed["global_step"] == 6 and resumed["resumed_from_step"] == 3
    saved = json.loads((tmp_path / "b" / "train_results.json").read_text())
    assert saved["global_step"] == 6
    # the whole-run loss is the mean of the per-step losses over all 6 steps, not the last 3
    state = json.loads((tmp_path / "b" / "trainer_state.json").read_text())
    losses = {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}
    assert sorted(losses) == [1, 2, 3, 4, 5, 6]
    assert saved["train_loss"] == pytest.approx(sum(losses.values()) / 6, rel=1e-4)
    assert saved["train_loss_this_session"] == pytest.approx(sum(losses[s] for s in (4, 5, 6)) / 3, rel=1e-4)
    assert straight["global_step"] == 6 and "resumed_from_step" not in straight


def test_missing_checkpoint_folders_and_unreachable_hub_ids_are_one_line(tmp_path, capsys, monkeypatch):
    """A local-looking model, tokenizer or teacher path that does not exist is refused before any work; a Hub
    id that cannot be fetched (offline here) names the field and the value."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    out = str(tmp_path / "out")
    for field, value in (
        ("model_name_or_path", str(tmp_path / "missing")),
        ("tokenizer_name", "./missing-tok"),
        ("teacher_model_name_or_path", "runs/missing-teacher"),
    ):
        task = ["--task", "mlm"] if field == "teacher_model_name_or_path" else []
        line = _cli_error(capsys, ["train", RECIPE, *FAST, *task, f"--{field}", value, "--output_dir", "runs/x"])
        assert f"{field}={value!r} is not a folder" in line
    line = _cli_error(
        capsys, ["train", RECIPE, *FAST, "--model_name_or_path", "no-such-org/no-such-model", "--output_dir", out]
    )
    assert "model_name_or_path='no-such-org/no-such-model' could not be loaded" in line
    assert not Path("runs/x").exists()
