"""Test helpers shared by the test modules."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

_BLOCK_HF_RELPOS = f"""
import sys
# hf_relpos must not be importable here: drop the project from the path and block the name
# (an editable install would otherwise find it through its meta-path finder).
sys.path[:] = [p for p in sys.path if p not in ("", ".", {str(PROJECT_ROOT)!r})]
sys.meta_path[:] = [f for f in sys.meta_path if "hf_relpos" not in repr(f).lower()]
sys.modules["hf_relpos"] = None
try:
    import hf_relpos  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("hf_relpos is importable; the remote-code test would prove nothing")
"""


def run_without_hf_relpos(code: str, cwd, env: dict | None = None, timeout: int = 300):
    """Run ``code`` in a fresh Python process where hf_relpos cannot be imported.

    The code should print one JSON line last; it is parsed and returned."""
    script = _BLOCK_HF_RELPOS + textwrap.dedent(code)
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": "", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=str(cwd), env=full_env, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise AssertionError(f"subprocess failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise AssertionError(f"subprocess printed no JSON line:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[-1])
