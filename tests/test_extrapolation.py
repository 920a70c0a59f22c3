"""The length-extrapolation benchmark on micro settings: report layout, lengths, determinism, the task rule."""

import json

import pytest
import torch
from helpers import PROJECT_ROOT

from hf_relpos.bench import extrapolation as ex

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
TRAIN_LENGTH = 8
MICRO = [
    "--train-length",
    str(TRAIN_LENGTH),
    "--steps",
    "4",
    "--batch-size",
    "4",
    "--hidden",
    "16",
    "--layers",
    "1",
    "--heads",
    "2",
    "--eval-examples",
    "2",
    "--threads",
    "1",
]


pytestmark = pytest.mark.usefixtures("one_thread")


def run(tmp_path, *extra, name="x.json"):
    out = tmp_path / name
    assert ex.main([*MICRO, "--out", str(out), *extra]) == 0
    return json.loads(out.read_text()), out


def test_shifted_copy_labels_by_hand():
    tokens = torch.tensor([[5, 3, 7, 1, 2], [9, 9, 4, 6, 8]])
    assert ex.shifted_copy_labels(tokens, offset=2).tolist() == [[0, 0, 5, 3, 7], [0, 0, 9, 9, 4]]
    assert ex.shifted_copy_labels(tokens, offset=1).tolist() == [[0, 5, 3, 7, 1], [0, 9, 9, 4, 6]]
    # windows of any length follow the same rule (the task is defined at every evaluation length)
    task = ex.PositionTask(None)
    stream = torch.arange(1, 33)
    inputs, labels = task.windows(stream, None, 16)
    assert inputs.shape == (2, 16) and labels[1, ex.OFFSET :].tolist() == list(range(17, 33 - ex.OFFSET))


def test_micro_run_report_and_plot(tmp_path, monkeypatch):
    seen = {}  # evaluation length → largest position index the learned table is asked for
    build_model = ex.build_model

    def build_and_watch(task, scheme, args):
        model = build_model(task, scheme, args)
        if scheme == "absolute":
            table = model.bert.embeddings.position_embeddings
            assert table.num_embeddings == TRAIN_LENGTH * 8  # covers the longest evaluation
            table.register_forward_hook(
                lambda m, inp, out: (
                    None
                    if m.training
                    else seen.__setitem__(inp[0].shape[-1], max(seen.get(inp[0].shape[-1], -1), int(inp[0].max())))
                )
            )
        return model

    monkeypatch.setattr(ex, "build_model", build_and_watch)

    report, out = run(tmp_path, "--schemes", "alibi,absolute", "--tasks", "position", "--seed", "3")
    assert out.with_suffix(".png").stat().st_size > 1000
    assert report["settings"]["seed"] == 3 and report["settings"]["factors"] == [1, 2, 4, 8]
    rows = report["results"]
    assert {(r["scheme"], r["factor"]) for r in rows} == {(s, f) for s in ("alibi", "absolute") for f in (1, 2, 4, 8)}
    for r in rows:
        assert set(r) >= {"task", "scheme", "factor", "length", "quality", "loss", "ratio_to_1x"}
        assert r["task"] == "position" and r["length"] == TRAIN_LENGTH * r["factor"]
        assert 0.0 <= r["quality"] <= 1.0 and r["loss"] > 0
        base = next(b for b in rows if b["scheme"] == r["scheme"] and b["factor"] == 1)
        assert r["ratio_to_1x"] == pytest.approx(r["quality"] / base["quality"])
        # every factor scores the same tokens
        assert r["eval_tokens"] == 2 * TRAIN_LENGTH * 8
    # the absolute model really looked up positions past the training length, up to 8× it
    assert seen == {TRAIN_LENGTH * f: TRAIN_LENGTH * f - 1 for f in (1, 2, 4, 8)}
    assert set(report["settings"]["verdicts"]["position"]) == {"learned_at", "alibi", "absolute"}


def test_verdict_rules():
    task = ex.PositionTask()
    quality = {"a": (1.0, 0.96), "b": (1.0, 0.7), "c": (1.0, 0.3), "d": (0.2, 0.2), "nopos": (0.07, 0.07)}
    rows = [dict(scheme=s, factor=f, quality=q[i]) for s, q in quality.items() for i, f in enumerate((1, 4))]
    verdicts, learned_at = ex.verdict(rows, task)
    assert verdicts == {"a": "holds", "b": "degrades", "c": "collapses", "d": "not learned", "nopos": "floor"}
    assert learned_at == task.learned_at
    # for mlm the bar is the order-blind floor, not only the unigram chance
    task.chance, task.learned_at = 0.03, 0.05
    rows = [dict(scheme=s, factor=f, quality=q) for s, q in (("nopos", 0.12), ("x", 0.13), ("y", 0.2)) for f in (1, 4)]
    verdicts, learned_at = ex.verdict(rows, task)
    assert learned_at == pytest.approx(0.12 + ex.FLOOR_MARGIN) and verdicts["x"] == "not learned"
    assert verdicts["y"] == "holds"


def test_same_seed_same_numbers(tmp_path):
    args = ("--schemes", "rotary,absolute", "--tasks", "position", "--factors", "1", "2")
    first, _ = run(tmp_path, *args, name="a.json")
    second, _ = run(tmp_path, *args, name="b.json")
    other, _ = run(tmp_path, *args, "--seed", "1", name="c.json")
    numbers = lambda rep: [(r["scheme"], r["factor"], r["quality"], r["loss"]) for r in rep["results"]]  # noqa: E731
    assert numbers(first) == numbers(second)
    assert numbers(first) != numbers(other)


def test_bad_scheme_names_the_field():
    with pytest.raises(ValueError, match="scheme='nope'.*absolute_sinusoidal"):
        ex.main(["--schemes", "nope"])


def test_mlm_micro_run(tmp_path):
    if not (SHARED_DATA / "sentiment" / "train.jsonl").is_file():
        pytest.skip(f"{SHARED_DATA} is absent (../shared/data is only on the project's machines)")
    report, _ = run(
        tmp_path,
        "--schemes",
        "t5",
        "--tasks",
        "mlm",
        "--factors",
        "1",
        "4",
        "--mlm-vocab",
        "300",
        "--data-dir",
        str(SHARED_DATA),
    )
    rows = report["results"]
    assert [(r["task"], r["factor"], r["length"]) for r in rows] == [
        ("mlm", 1, TRAIN_LENGTH),
        ("mlm", 4, 4 * TRAIN_LENGTH),
    ]
    for r in rows:
        assert 0.0 <= r["quality"] <= 1.0 and r["perplexity"] == pytest.approx(2.718281828 ** r["loss"], rel=1e-6)
    assert 0 < report["settings"]["chance"]["mlm"] < 1


def test_mlm_skipped_without_data(tmp_path, capsys):
    report, _ = run(
        tmp_path,
        "--schemes",
        "t5",
        "--tasks",
        "position,mlm",
        "--factors",
        "1",
        "--data-dir",
        str(tmp_path / "missing"),
    )
    assert "mlm: skipped" in capsys.readouterr().out
    assert {r["task"] for r in report["results"]} == {"position"}


def test_scheme_variants_set_hyper_parameters():
    assert ex.position_fields("alibi:directional") == {
        "relative_position": "alibi",
        "absolute_position": "none",
        "relative_position_parameters": {"directional": True},
    }
    assert ex.position_fields("kerple:symmetric")["relative_position_parameters"] == {"directional": False}
    assert ex.position_fields("fire:mlp_width=16")["relative_position_parameters"] == {"mlp_width": 16}
    with pytest.raises(ValueError, match="scheme='alibi:sideways'.*directional, symmetric"):
        ex.position_fields("alibi:sideways")
    with pytest.raises(ValueError, match=r"relative_position_parameters\['directional'\]='maybe'"):
        ex.position_fields("fire:directional=maybe")
    with pytest.raises(ValueError, match="does not use"):
        ex.position_fields("t5:directional")  # t5 has no such parameter (its buckets are signed already)


def test_variants_in_one_run_differ_and_plot(tmp_path):
    report, out = run(
        tmp_path, "--schemes", "alibi:symmetric,alibi:directional", "--tasks", "position", "--factors", "1", "2"
    )
    by = {(r["scheme"], r["factor"]): r["loss"] for r in report["results"]}
    assert set(by) == {(s, f) for s in ("alibi:symmetric", "alibi:directional") for f in (1, 2)}
    assert by[("alibi:symmetric", 1)] != by[("alibi:directional", 1)]
    assert out.with_suffix(".png").stat().st_size > 1000


def test_mlm_on_longtext_micro_run(tmp_path):
    if not (SHARED_DATA / "longtext" / "train.jsonl").is_file():
        pytest.skip(f"{SHARED_DATA / 'longtext'} is absent (../shared/data is only on the project's machines)")
    texts = ex.read_texts(SHARED_DATA, "validation", "longtext")
    assert len(texts) == 26 and all(isinstance(t, str) for t in texts)
    report, _ = run(
        tmp_path,
        "--schemes",
        "kerple:directional",
        "--tasks",
        "mlm",
        "--factors",
        "1",
        "2",
        "--mlm-data",
        "longtext",
        "--mlm-vocab",
        "300",
        "--data-dir",
        str(SHARED_DATA),
    )
    assert report["settings"]["mlm_data"] == "longtext"
    assert [r["factor"] for r in report["results"]] == [1, 2]
