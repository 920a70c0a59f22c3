"""Pretraining recipes under 2 CPU processes (gloo), unchanged: torchrun and accelerate launch reach the same
final step count as one process with the same global batch; Trainer's ``fsdp`` option on CPU is reported
for what it is (accelerate runs it as DDP). Tiny sizes, generated text written to jsonl files."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import PROJECT_ROOT

from hf_relpos.training import train
from hf_relpos.training.pretraining import synthetic_pretraining

RECIPES = PROJECT_ROOT / "recipes"
BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
# the recipe unchanged except for data files and sizes; epochs (not max_steps) decide the step count
TINY = [
    "--num_train_epochs",
    "1",
    "--max_steps",
    "-1",
    "--max_seq_length",
    "32",
    "--eval_lengths",
    "32",
    "64",
    "--tokenizer_vocab_size",
    "300",
    "--per_device_eval_batch_size",
    "8",
    "--save_strategy",
    "no",
    "--logging_steps",
    "5",
    "--disable_tqdm",
    "true",
    "--dataloader_num_workers",
    "0",
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    data = synthetic_pretraining(train_size=70, eval_size=12, seed=11)
    for split in ("train", "validation"):
        with open(folder / f"{split}.jsonl", "w") as f:
            for text in data[split]["text"]:
                f.write(json.dumps({"text": text}) + "\n")
    return ["--train_file", str(folder / "train.jsonl"), "--validation_file", str(folder / "validation.jsonl")]


def launch(launcher: list[str], recipe: str, args: list[str], cwd) -> subprocess.Popen:
    cmd = [*launcher, "-m", "hf_relpos.cli", "train", str(RECIPES / f"{recipe}.yaml"), *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV, cwd=str(cwd))


def finish(proc: subprocess.Popen, timeout=300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def launcher_cmd(name: str) -> list[str]:
    if name == "torchrun":
        return [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", free_port()]
    # accelerate's --cpu flag runs ONE process; --multi_gpu goes through torch.distributed.run, and with the
    # recipe's use_cpu Trainer sets up gloo on the CPU
    return [
        str(BIN / "accelerate"),
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
        "--main_process_port",
        free_port(),
    ]


@pytest.mark.parametrize("recipe,launcher", [("mlm_longtext", "torchrun"), ("span_corruption_longtext", "accelerate")])
def test_two_processes_match_one_process(tmp_path, files, recipe, launcher):
    if not (BIN / launcher).exists():
        pytest.skip(f"{launcher} is not installed beside {sys.executable}")
    two = tmp_path / "two"
    proc = launch(
        launcher_cmd(launcher),
        recipe,
        [*TINY, *files, "--per_device_train_batch_size", "4", "--output_dir", str(two)],
        tmp_path,
    )
    try:  # the one-process reference runs meanwhile, in this process: global batch 8 = 2 × 4
        one = train(
            RECIPES / f"{recipe}.yaml",
            [*TINY, *files, "--per_device_train_batch_size", "8", "--output_dir", str(tmp_path / "one")],
        )
    finally:
        out = finish(proc)
    assert "processes: 2, total train batch size: 8" in out
    assert "model wrapped in torch.nn.parallel.distributed.DistributedDataParallel" in out
    state = json.loads((two / "trainer_state.json").read_text())
    assert one["train"]["global_step"] >= 3
    assert state["global_step"] == one["train"]["global_step"]
    metrics = json.loads((two / "metrics.json").read_text())["eval"]
    assert {"eval_accuracy", "eval_len32_accuracy", "eval_len64_accuracy"} <= set(metrics)
    assert metrics["eval_len32_accuracy"] == metrics["eval_accuracy"]  # the training length is evaluated once


def test_fsdp_on_cpu_is_reported_as_ddp(tmp_path, files):
    """accelerate (1.x) enables FSDP only for multi-GPU/NPU/XPU-like runs: with CPU processes (gloo) the
    ``fsdp`` request is dropped and Trainer wraps the model in DDP. The recipe says so instead of staying
    silent. If this test fails because the model is FSDP-wrapped, FSDP on CPU started working: update
    docs/pretraining.md."""
    if not (BIN / "torchrun").exists():
        pytest.skip("torchrun is not installed")
    out = finish(
        launch(
            launcher_cmd("torchrun"),
            "mlm_longtext",
            [
                *TINY,
                *files,
                "--max_steps",
                "2",
                "--eval_lengths",
                "32",
                "--per_device_train_batch_size",
                "4",
                "--fsdp",
                "--fsdp_config",
                json.dumps({"version": 2, "transformer_layer_cls_to_wrap": ["RelPosBertLayer"]}),
                "--output_dir",
                str(tmp_path / "fsdp"),
            ],
            tmp_path,
        )
    )
    assert "fsdp was requested but accelerate runs this as MULTI_CPU" in out
    assert "model wrapped in torch.nn.parallel.distributed.DistributedDataParallel" in out
    assert json.loads((tmp_path / "fsdp" / "trainer_state.json").read_text())["global_step"] == 2


def test_fsdp_true_in_a_recipe_parses():
    from hf_relpos.training.arguments import parse_recipe

    _, _, args = parse_recipe({"task": "mlm", "fsdp": True, "fsdp_config": {"version": 2}, "use_cpu": True})
    assert args.fsdp is True and args.fsdp_config["version"] == 2
