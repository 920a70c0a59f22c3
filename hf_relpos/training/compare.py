"""`hf-relpos compare`: one recipe run once per scheme (``--schemes``) or once per starting checkpoint
(``--models``), side by side (metrics, training time, a chart)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..relative_positions import SCHEMES
from .arguments import parse_recipe
from .run import run

_SKIPPED_METRICS = ("runtime", "per_second", "epoch")


def parse_models(spec) -> list[tuple[str, str]]:
    """``--models`` as (label, path) pairs: comma-separated ``LABEL=PATH`` or ``PATH`` (label: the folder's
    name). ValueError naming the value when a label repeats or a path is missing."""
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    pairs = []
    for item in items:
        label, _, path = item.partition("=") if "=" in item else ("", "", item)
        label = label.strip() or Path(path.rstrip("/")).name
        if not Path(path).exists():
            raise ValueError(
                f"--models: {path!r} is not a local checkpoint folder (a `hf-relpos convert` or "
                "`hf-relpos train` output, or a save_pretrained folder)"
            )
        pairs.append((label, path.strip()))
    labels = [label for label, _ in pairs]
    if len(set(labels)) != len(labels) or not pairs:
        raise ValueError(f"--models={spec!r}: give each model once with a distinct label (LABEL=PATH)")
    return pairs


def compare(recipe, schemes=None, overrides=(), output_dir=None, models=None) -> list[dict]:
    """Run ``recipe`` once per scheme (``relative_position`` set to each) or once per checkpoint of ``models``
    (``model_name_or_path`` set to each; (label, path) pairs or a ``--models`` string), output in
    ``<output_dir>/compare/<label>``; write compare.json (and compare.png when matplotlib is there). After a
    checkpoint comparison each run's metrics.json and card carry the whole table. Returns one row per run:
    label, scheme, model, main_metric, value, eval, train_seconds, output_dir."""
    if (schemes is None) == (models is None):
        raise ValueError("compare: give either schemes (--schemes) or checkpoints (--models), not both")
    if schemes is not None:
        for scheme in schemes:
            if scheme not in SCHEMES:
                raise ValueError(f"--schemes: {scheme!r} is not valid; choose from: {', '.join(SCHEMES)}")
        runs = [(scheme, ["--relative_position", scheme], None) for scheme in schemes]
    else:
        runs = [(label, ["--model_name_or_path", path], path) for label, path in parse_models(models)]
    base_args = parse_recipe(recipe, list(overrides))
    base = Path(output_dir or base_args[2].output_dir) / "compare"
    rows = []
    for label, fields, model in runs:
        model_args, data_args, training_args = parse_recipe(
            recipe, [*overrides, *fields, "--output_dir", str(base / label)]
        )
        result = run(model_args, data_args, training_args)
        rows.append(
            {
                "label": label,
                "scheme": result["relative_position"],
                "model": model,
                "main_metric": result["main_metric"],
                "value": result["eval"].get("eval_" + result["main_metric"]),
                "eval": result["eval"],
                "train_seconds": result["train_seconds"],
                "output_dir": result["output_dir"],
            }
        )
    base.mkdir(parents=True, exist_ok=True)
    (base / "compare.json").write_text(json.dumps(rows, indent=2, default=str))
    plot_compare(rows, base / "compare.png")
    if models is not None:
        _record_comparison(rows)
    return rows


def _record_comparison(rows) -> None:
    """Add the comparison to each run's metrics.json (written to a temporary file, then moved over) and
    render its card README.md again, so each model's card shows the others' scores (e.g. the original
    checkpoint next to the converted one)."""
    from ..cards import card_from_metrics

    comparison = [
        {
            "label": r["label"],
            "model": r["model"],
            "train_seconds": r["train_seconds"],
            "metrics": {
                k.removeprefix("eval_"): v
                for k, v in r["eval"].items()
                if isinstance(v, float) and not k.endswith(_SKIPPED_METRICS)
            },
        }
        for r in rows
    ]
    for row in rows:
        folder = Path(row["output_dir"])
        metrics_path = folder / "metrics.json"
        if not metrics_path.is_file():  # not the main process's folder
            continue
        metrics = {**json.loads(metrics_path.read_text()), "comparison": comparison}
        config = json.loads((folder / "config.json").read_text())
        for name, text in (
            ("metrics.json", json.dumps(metrics, indent=2, default=str)),
            ("README.md", str(card_from_metrics(config, metrics, str(folder)))),
        ):
            tmp = folder / f".{name}.tmp"
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, folder / name)


def compare_table(rows) -> str:
    """The rows as a text table: one line per run (scheme or checkpoint label), every float eval metric,
    training seconds."""
    names = sorted(
        {
            k
            for r in rows
            for k, v in r["eval"].items()
            if k.startswith("eval_") and isinstance(v, float) and not k.endswith(_SKIPPED_METRICS)
        }
    )
    width = max(12, *(len(r["label"]) + 2 for r in rows))
    widths = {m: max(12, len(m.removeprefix("eval_"))) + 2 for m in names}
    lines = [
        f"{'run':<{width}}" + "".join(f"{m.removeprefix('eval_'):>{widths[m]}}" for m in names) + f"{'train s':>10}"
    ]
    for r in rows:
        lines.append(
            f"{r['label']:<{width}}"
            + "".join(f"{r['eval'].get(m, float('nan')):>{widths[m]}.4f}" for m in names)
            + f"{r['train_seconds']:>10.1f}"
        )
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
    names = [r["label"] for r in rows]
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
