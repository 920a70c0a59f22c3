"""`hf-relpos bench speed` on tiny sizes: every part runs and reports what it measured; the compiled
CPU flex path (inference on long inputs) gives the same numbers as sdpa."""

import json
import statistics
import sys

import pytest
import torch

from hf_relpos import RelPosBertConfig, RelPosBertModel
from hf_relpos.attention_engine import flex_compiled
from hf_relpos.bench import speed

TINY = ["--threads", "1", "--hidden", "32", "--heads", "4", "--intermediate", "64", "--layers", "2", "--repeats", "2"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_speed_suite_reports_every_part(tmp_path, capsys):
    out = tmp_path / "speed.json"
    speed.main(
        [
            *TINY,
            "--lengths",
            "32",
            "--batch",
            "2",
            "--schemes",
            "t5",
            "shaw_kq",
            "--memory-length",
            "64",
            "--v4-python",
            str(tmp_path / "missing" / "python"),
            "--gen-batch",
            "2",
            "--gen-input-length",
            "8",
            "--gen-new-tokens",
            "5",
            "--t5-d-model",
            "32",
            "--t5-layers",
            "1",
            "--t5-heads",
            "4",
            "--flex-schemes",
            "alibi",
            "--flex-lengths",
            "32",
            "64",
            "--flex-sdpa-max-length",
            "32",
            "--compiled-length",
            "24",
            "--compiled-batch",
            "2",
            "--compiled-backend",
            "aot_eager",
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    rows = report["results"]
    assert out.with_suffix(".png").stat().st_size > 0
    assert report["environment"]["torch"] == torch.__version__
    encoder = {r["model"]: r for r in rows if r["part"] == "encoder"}
    assert set(encoder) == {"t5", "shaw_kq"}
    for r in encoder.values():
        assert r["time_s"] > 0 and r["anchor_time_s"] > 0
        assert len(r["times_s"]) == len(r["anchor_times_s"]) == 2
        assert r["ratio"] == pytest.approx(statistics.median(t / a for t, a in zip(r["times_s"], r["anchor_times_s"])))
        assert r["meets_target"] == (r["ratio"] <= r["target"])
    memory = {r["model"]: r for r in rows if r["part"] == "memory"}
    assert set(memory) == {"hf_bert", "t5", "shaw_kq"}  # the 4.x anchor is absent here, and said so
    assert "run `make bench-v4`" in printed
    assert all(r["peak_bytes"] > 0 for r in memory.values())
    generation = {r["model"]: r for r in rows if r["part"] == "generation"}
    assert generation["relpos_t5"]["same_tokens"] is True  # same weights, same greedy tokens as HF T5
    ours, hf = generation["relpos_t5"]["times_s"], generation["hf_t5"]["times_s"]
    assert generation["relpos_t5"]["ratio"] == pytest.approx(1 / statistics.median(o / h for o, h in zip(ours, hf)))
    flex = [(r["backend"], r["length"]) for r in rows if r["part"] == "flex"]
    assert flex == [("flex_attention", 32), ("flex_attention", 64), ("sdpa", 32)]  # sdpa stops at its max length
    compiled = {r["model"]: r for r in rows if r["part"] == "compiled"}  # fullgraph: a graph break would fail
    assert set(compiled) == {"t5", "shaw_kq"}
    for r in compiled.values():
        assert (r["length"], r["batch"], r["backend"]) == (24, 2, "aot_eager") and r["compile_s"] > 0
        assert r["ratio"] == pytest.approx(statistics.median(t / a for t, a in zip(r["times_s"], r["anchor_times_s"])))
        assert r["meets_target"] == (r["ratio"] <= r["target"])


def test_v4_worker_refuses_transformers_5(tmp_path, capsys):
    """5.x would silently build an absolute BERT for relative_key_query: the worker must refuse."""
    parsed = type("A", (), {"repeats": 1, "device": "cpu", "hidden": 32, "heads": 4, "intermediate": 64, "layers": 1})
    assert speed.run_v4(parsed, [[16, 1]], sys.executable) is None
    assert "needs transformers 4.x" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["alibi", "t5"])
def test_compiled_cpu_flex_equals_sdpa(name, monkeypatch):
    """Inference on CPU compiles flex (score_mod over the (H, 2L − 1) table): same outputs as sdpa."""
    monkeypatch.setenv("HF_RELPOS_FLEX_COMPILE", "always")
    cfg = dict(
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=64,
        num_hidden_layers=2,
        relative_position=name,
        absolute_position="none",
    )
    torch.manual_seed(0)
    flex = RelPosBertModel(RelPosBertConfig(**cfg, attn_implementation="flex_attention")).eval()
    sdpa = RelPosBertModel(RelPosBertConfig(**cfg, attn_implementation="sdpa")).eval()
    sdpa.load_state_dict(flex.state_dict())
    ids = torch.randint(0, 1000, (2, 48))
    mask = torch.ones_like(ids)
    mask[1, 40:] = 0
    probe = torch.zeros(1, 1, 48, 8)
    with torch.no_grad():
        assert flex_compiled(probe, probe)
        got = flex(input_ids=ids, attention_mask=mask).last_hidden_state
        want = sdpa(input_ids=ids, attention_mask=mask).last_hidden_state
    assert (got[0] - want[0]).abs().max() <= 1e-5
    assert (got[1, :40] - want[1, :40]).abs().max() <= 1e-5
    assert not flex_compiled(probe.requires_grad_(True), probe)  # training never takes the compiled CPU path


def test_targets_and_flex_schemes_come_from_the_registry(monkeypatch):
    """A new scheme is benchmarked without touching the bench: its cost class gives its time target and
    distance_only puts it in the flex part."""
    from hf_relpos.relative_positions import SCHEMES

    targets = speed.time_targets()
    assert set(targets) == {name for name, cls in SCHEMES.items() if cls.cost != "none"}
    assert {targets[n] for n, cls in SCHEMES.items() if cls.cost == "content"} == {1.35}
    assert {targets[n] for n, cls in SCHEMES.items() if cls.cost in ("bias", "rotate")} == {1.10}
    assert speed.flex_schemes() == [name for name, cls in SCHEMES.items() if cls.distance_only]
    distance_only = SCHEMES[speed.flex_schemes()[0]]
    monkeypatch.setitem(SCHEMES, "brand_new", type("BrandNew", (distance_only,), {"name": "brand_new"}))
    assert speed.time_targets()["brand_new"] == 1.10 and "brand_new" in speed.flex_schemes()


def test_bench_suites_run_from_the_cli(tmp_path, capsys):
    from hf_relpos.cli import main as cli_main
    from hf_relpos.relative_positions import SCHEMES

    schemes = [n for n in SCHEMES if n != "none"][:2]
    out = tmp_path / "attention.json"
    assert (
        cli_main(
            [
                "bench",
                "attention",
                "--lengths",
                "16",
                "--schemes",
                *schemes,
                "--hidden",
                "16",
                "--heads",
                "2",
                "--repeats",
                "1",
                "--threads",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = json.loads(out.read_text())["results"]
    assert [r["scheme"] for r in rows] == ["baseline_sdpa", *schemes]
    with pytest.raises(SystemExit) as done:
        cli_main(["bench", "convert-finetune", "--help"])
    assert done.value.code == 0 and "--data-dir" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli_main(["bench", "nope"])
    assert "choose a suite from: speed, extrapolation, attention, convert-finetune" in capsys.readouterr().err


def test_long_part_patterns_modernbert_and_unpadded(tmp_path, capsys):
    """`--parts long` at toy sizes: every (scheme, pattern) and ModernBertModel per mode and length, paired ratios,
    memory where asked, the unpadded rows equal per text, the targets summary and the plot."""
    out = tmp_path / "long.json"
    speed.main(
        [
            *TINY,
            "--parts",
            "long",
            "--long-lengths",
            "64",
            "128",
            "--long-schemes",
            "t5",
            "rotary",
            "--long-layers",
            "3",
            "--long-window",
            "8",
            "--long-memory-lengths",
            "128",
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    rows = json.loads(out.read_text())["results"]
    long = [r for r in rows if r["part"] == "long"]
    models = {(r["model"], r["pattern"]) for r in long}
    assert models == {
        ("t5", "global"),
        ("t5", "1:2"),
        ("t5", "local"),
        ("rotary", "global"),
        ("rotary", "1:2"),
        ("rotary", "local"),
        ("modernbert", "global"),
        ("modernbert", "1:2"),
    }
    assert len(long) == len(models) * 2 * 2  # two modes, two lengths
    for r in long:
        assert r["ratio"] == pytest.approx(statistics.median(t / a for t, a in zip(r["times_s"], r["anchor_times_s"])))
        assert (r["peak_bytes"] is not None) == (r["length"] == 128)
    unpadded = {r["model"]: r for r in rows if r["part"] == "long_unpadded"}
    assert set(unpadded) == {"t5", "rotary"} and all(r["max_abs_diff"] < 1e-5 for r in unpadded.values())
    assert "1:2 / all-global" in printed and out.with_suffix(".png").stat().st_size > 0


def test_long_part_anchor_has_the_models_depth(monkeypatch, tmp_path):
    from hf_relpos.bench import speed_long

    depths = []
    real = speed_long.build_encoder

    def spy(name, args, *rest, **kwargs):
        depths.append(args.layers)
        return real(name, args, *rest, **kwargs)

    monkeypatch.setattr(speed_long, "build_encoder", spy)
    speed.main(
        [
            *TINY,
            "--parts",
            "long",
            "--long-lengths",
            "32",
            "--long-schemes",
            "t5",
            "--long-patterns",
            "local",
            "--long-layers",
            "3",
            "--long-window",
            "4",
            "--long-modes",
            "inference",
            "--long-no-modernbert",
            "--long-memory-lengths",
            "1",
            "--out",
            str(tmp_path / "long.json"),
        ]
    )
    assert depths and set(depths) == {3}  # TINY says --layers 2: the anchor follows --long-layers
