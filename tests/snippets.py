"""Run documentation and model-card Python snippets warning-free in a fresh process (used by test_docs.py and
test_cards.py).

A snippet is one ```python fence of a Markdown file. `python_snippets` returns every fence of a file except
those right after the marker line ``<!-- no-test -->`` (snippets that need files, a network or a checkpoint
that the snippet cannot make itself). `run_snippets` executes each snippet in its own working folder and
namespace, in one subprocess (imports paid once), with every Python warning and every WARNING log record
(transformers' ``logger.warning``/``warning_once``, hf_relpos' loggers, remote code) turned into a failure: the
``-W error`` contract, extended to the logging warnings that transformers and hf_relpos use."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from helpers import _BLOCK_HF_RELPOS

NO_TEST = "<!-- no-test -->"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def python_snippets(text: str, skip_marked: bool = True) -> list[str]:
    """The ```python fences of ``text``, without those whose previous non-blank line is ``<!-- no-test -->``."""
    found = []
    for match in FENCE.finditer(text):
        before = [line for line in text[: match.start()].splitlines() if line.strip()]
        if skip_marked and before and before[-1].strip() == NO_TEST:
            continue
        found.append(match.group(1))
    return found


_RUNNER = r"""
import contextlib, io, json, logging, os, sys, traceback, warnings

class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []
    def emit(self, record):
        self.records.append(f"{record.name}: {record.getMessage()}")

collect = _Collect()
logging.getLogger().addHandler(collect)  # hf_relpos.* and remote code (transformers_modules.*) propagate here
logging.getLogger("transformers").addHandler(collect)  # transformers' root logger does not propagate
job = json.load(open(sys.argv[1]))
results = []
for item in job:
    os.makedirs(item["cwd"], exist_ok=True)
    os.chdir(item["cwd"])
    collect.records.clear()
    with contextlib.suppress(Exception):  # a warning_once seen by an earlier snippet must be seen again
        logging.Logger.warning_once.cache_clear()
    error, out = None, io.StringIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(item["code"], item["name"], "exec"), {"__name__": "__main__"})
        except BaseException:
            error = traceback.format_exc()
    problems = [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught]
    results.append({"name": item["name"], "error": error, "warnings": problems + list(collect.records),
                    "stdout": out.getvalue()[-2000:]})
print(json.dumps(results))
"""


def run_snippets(
    snippets: list[tuple[str, str]], workdir: Path, without_hf_relpos: bool = False, timeout: int = 300
) -> list[dict]:
    """Run (name, code) pairs; returns one dict per snippet: name, error (a traceback or None), warnings."""
    workdir = Path(workdir)
    job = [{"name": name, "code": code, "cwd": str(workdir / f"snippet{i}")} for i, (name, code) in enumerate(snippets)]
    (workdir / "job.json").write_text(json.dumps(job))
    script = (_BLOCK_HF_RELPOS if without_hf_relpos else "") + textwrap.dedent(_RUNNER)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": ""}
    if without_hf_relpos:
        env["PYTHONPATH"] = ""
    proc = subprocess.run(
        [sys.executable, "-c", script, str(workdir / "job.json")],
        cwd=str(workdir),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    if proc.returncode != 0 or not lines:
        raise AssertionError(
            f"snippet runner failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return json.loads(lines[-1])


def assert_clean(results: list[dict]) -> None:
    bad = [r for r in results if r["error"] or r["warnings"]]
    assert not bad, "\n\n".join(
        f"{r['name']}:\n" + (r["error"] or "") + "".join(f"\n  warning: {w}" for w in r["warnings"]) for r in bad
    )
