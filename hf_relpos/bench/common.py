"""Pieces every benchmark uses: settings metadata, JSON reports, line plots."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch

# Inputs and outputs are explicit options of every suite. Text data has no default folder (a user's
# machine has none of ours): --data-dir or $HF_RELPOS_DATA_DIR; results go to an uncommitted folder
# relative to the working directory.
DEFAULT_DATA_DIR = Path(os.environ["HF_RELPOS_DATA_DIR"]) if os.environ.get("HF_RELPOS_DATA_DIR") else None
RESULTS_DIR = Path("benchmarks/results")


def add_io_options(parser, suite: str, data_help: str | None = None) -> None:
    """``--out`` (JSON report, default benchmarks/results/<suite>.json) and, with ``data_help``, ``--data-dir``."""
    if data_help is not None:
        parser.add_argument(
            "--data-dir",
            type=Path,
            default=DEFAULT_DATA_DIR,
            help=f"{data_help} (default: $HF_RELPOS_DATA_DIR; the parts that read text need one of the two)",
        )
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR / f"{suite.replace('-', '_')}.json",
        help="JSON report, default %(default)s; a PNG goes beside it where the suite plots",
    )


def environment() -> dict:
    """What a number depends on: versions, machine, threads, device."""
    import transformers

    env = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        env["cuda_device"] = torch.cuda.get_device_name()
    return env


def write_json(path, settings: dict, results) -> Path:
    """Write ``{"settings": ..., "environment": ..., "results": ...}`` to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(
        json.dumps({"settings": settings, "environment": environment(), "results": results}, indent=2, default=str)
    )
    tmp.replace(path)  # a reader never sees half a report
    return path


def line_plot(path, panels, title=None) -> Path | None:
    """One PNG with a panel per entry of ``panels``: ``{"title", "xlabel", "ylabel", "series": {name: (xs, ys)},
    "logx", "logy"}`` and optionally ``"styles": {name: plot kwargs}`` and ``"legend": legend kwargs``.
    Returns the path, or None (with a message) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for name, (xs, ys) in panel["series"].items():
            ax.plot(xs, ys, **{"marker": "o", "label": name, **panel.get("styles", {}).get(name, {})})
        ax.set_title(panel.get("title", ""))
        ax.set_xlabel(panel.get("xlabel", ""))
        ax.set_ylabel(panel.get("ylabel", ""))
        if panel.get("logx"):
            ax.set_xscale("log", base=2)
        if panel.get("logy"):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(**{"fontsize": 7, **panel.get("legend", {})})
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
