"""Fault injection (issue 14): a recipe run in a subprocess is killed with SIGKILL (by PID) mid-training,
while Trainer writes a checkpoint, and during the final save; then resumed. No folder may claim to be
finished when it is not, and every resume reaches the same final step as an uninterrupted run.

Each kill point is reached deterministically: the child writes a ready-file at that point and sleeps."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from helpers import PROJECT_ROOT

from hf_relpos.hub import INCOMPLETE_MARKER
from hf_relpos.training import train
from hf_relpos.training.run import complete_checkpoints

pytestmark = pytest.mark.usefixtures("one_thread")
RECIPE = str(PROJECT_ROOT / "recipes" / "classification_demo.yaml")
MAX_STEPS = 8
ARGS = [
    "--max_steps",
    str(MAX_STEPS),
    "--per_device_train_batch_size",
    "8",
    "--logging_steps",
    "1",
    "--save_strategy",
    "steps",
    "--save_steps",
    "3",
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

CHILD = textwrap.dedent("""
    import os, sys, time, pathlib
    import transformers
    from transformers import Trainer, TrainerCallback
    point, ready = sys.argv[1], pathlib.Path(sys.argv[2])

    def hang():
        ready.write_text(str(os.getpid()))
        time.sleep(300)

    if point == "mid":  # after step 5: checkpoint-3 is complete, step 6 not yet taken
        class Hang(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                if state.global_step == 5:
                    hang()
        original_init = Trainer.__init__
        def init(self, *a, **k):
            original_init(self, *a, **k)
            self.add_callback(Hang())
        Trainer.__init__ = init
    elif point == "checkpoint":  # checkpoint-6: weights written, optimizer and trainer_state.json not yet
        original = Trainer._save_optimizer_and_scheduler
        def save(self, output_dir):
            if output_dir.endswith("checkpoint-6"):
                hang()
            return original(self, output_dir)
        Trainer._save_optimizer_and_scheduler = save
    elif point == "final":  # the final model is half written (weights there, card and metrics not)
        original = Trainer.save_model
        def save_model(self, output_dir=None, _internal_call=False):
            result = original(self, output_dir, _internal_call)
            if output_dir and "checkpoint-" not in str(output_dir):
                hang()
            return result
        Trainer.save_model = save_model
    from hf_relpos.training import train
    train(sys.argv[3], sys.argv[4:])
""")


def claims_finished(folder) -> bool:
    """What a user (or from_pretrained) would take for a finished run: a loadable top-level model and no marker."""
    return (folder / "config.json").is_file() and not (folder / INCOMPLETE_MARKER).exists()


def test_killed_runs_are_visibly_incomplete_and_resume_to_the_same_step(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(PROJECT_ROOT / "tests")}
    points = ("mid", "checkpoint", "final")
    procs = {}
    for point in points:  # all three children at once: the imports dominate
        out, ready = tmp_path / point, tmp_path / f"{point}.ready"
        procs[point] = (
            subprocess.Popen(
                [sys.executable, "-c", CHILD, point, str(ready), RECIPE, *ARGS, "--output_dir", str(out)],
                env=env,
                cwd=str(tmp_path),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            ),
            out,
            ready,
        )
    deadline = time.time() + 240
    for point, (proc, _out, ready) in procs.items():
        while not ready.exists():
            assert proc.poll() is None, f"{point}: the child ended before the kill point: {proc.stderr.read()[-3000:]}"
            assert time.time() < deadline, f"{point}: kill point not reached"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL

    expected_checkpoints = {"mid": [3], "checkpoint": [3], "final": [6, 8]}  # the recipe keeps save_total_limit: 2
    for point, (_, out, _) in procs.items():
        assert (out / INCOMPLETE_MARKER).is_file(), point
        assert not claims_finished(out), point
        assert not (out / "metrics.json").exists() and not (out / "README.md").exists(), point
        assert [int(p.name.split("-")[1]) for p in complete_checkpoints(out)] == expected_checkpoints[point], point
        if point == "checkpoint":  # the cut checkpoint is there, without the trainer_state.json resume needs
            assert (out / "checkpoint-6").is_dir() and not (out / "checkpoint-6" / "trainer_state.json").exists()
        # a plain rerun is refused (nothing replaced silently); resuming finishes the run
        with pytest.raises(ValueError, match="is not empty.*unfinished run"):
            train(RECIPE, [*ARGS, "--output_dir", str(out)])
        result = train(RECIPE, [*ARGS, "--output_dir", str(out), "--resume_from_checkpoint", "true"])
        assert claims_finished(out), point
        assert result["train"]["global_step"] == MAX_STEPS, point
        assert json.loads((out / "trainer_state.json").read_text())["global_step"] == MAX_STEPS, point
        saved = json.loads((out / "metrics.json").read_text())
        assert saved["train"]["global_step"] == MAX_STEPS and saved["train"]["train_loss"] > 0, point
        assert (out / "README.md").is_file() and (out / "model.safetensors").is_file(), point
        assert not (out / ".final-incomplete").exists(), point
