"""`hf-relpos compare`: one recipe run once per scheme, side by side (metrics, training time)."""

from __future__ import annotations

import json
from pathlib import Path

from ..relative_positions import SCHEMES
from .arguments import parse_recipe
from .run import run

_SKIPPED_METRICS = ("runtime", "per_second", "epoch")


def compare(recipe, schemes, overrides=(), output_dir=None) -> list[dict]:
    """Run ``recipe`` once per scheme (``relative_position`` set to each, output in
    ``<output_dir>/compare/<scheme>``); write compare.json (and compare.png when matplotlib is there).
    Returns one row per scheme: scheme, main_metric, value, eval, train_seconds, output_dir."""
    for scheme in schemes:
        if scheme not in SCHEMES:
            raise ValueError(f"--schemes: {scheme!r} is not valid; choose from: {', '.join(SCHEMES)}")
    base_args = parse_recipe(recipe, list(overrides))
    base = Path(output_dir or base_args[2].output_dir) / "compare"
    rows = []
    for scheme in schemes:
        model_args, data_args, training_args = parse_recipe(
            recipe, [*overrides, "--relative_position", scheme, "--output_dir", str(base / scheme)]
        )
        result = run(model_args, data_args, training_args)
        rows.append({"scheme": scheme, "main_metric": result["main_metric"],
                     "value": result["eval"].get("eval_" + result["main_metric"]), "eval": result["eval"],
                     "train_seconds": result["train_seconds"], "output_dir": result["output_dir"]})
    base.mkdir(parents=True, exist_ok=True)
    (base / "compare.json").write_text(json.dumps(rows, indent=2, default=str))
    plot_compare(rows, base / "compare.png")
    return rows


def compare_table(rows) -> str:
    """The rows as a text table: one line per scheme, every float eval metric, training seconds."""
    names = sorted({k for r in rows for k, v in r["eval"].items() if k.startswith("eval_") and isinstance(v, float)
                    and not k.endswith(_SKIPPED_METRICS)})
    lines = [f"{'scheme':<12}" + "".join(f"{m.removeprefix('eval_'):>14}" for m in names) + f"{'train s':>10}"]
    for r in rows:
        lines.append(f"{r['scheme']:<12}" + "".join(f"{r['eval'].get(m, float('nan')):>14.4f}" for m in names)
                     + f"{r['train_seconds']:>10.1f}")
    return "\n".join(lines)


def plot_compare(rows, path) -> Path | None:
    """Bar charts of the main metric and the training time; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    names = [r["scheme"] for r in rows]
    axes[0].bar(names, [r["value"] or 0 for r in rows], color="tab:blue")
    axes[0].set_title(f"eval {rows[0]['main_metric']}")
    axes[1].bar(names, [r["train_seconds"] for r in rows], color="tab:orange")
    axes[1].set_title("training time (s)")
    for ax in axes:
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
