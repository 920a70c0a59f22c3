"""Recipes take TrainingArguments' own `torch_compile: true` (issue 13) and train through the compiled
model. The test compiles with `torch_compile_backend: aot_eager` (dynamo + AOTAutograd, the same graph
capture and backward graph as inductor, without inductor's C++ code generation, which takes about a
minute more on a CPU); the graph-break and inductor checks are in tests/test_compile.py."""

import pytest
import torch
import yaml
from helpers import PROJECT_ROOT
from safetensors import safe_open

from hf_relpos.training import train

pytestmark = pytest.mark.usefixtures("one_thread")


def test_recipe_with_torch_compile_trains(tmp_path):
    recipe = yaml.safe_load((PROJECT_ROOT / "recipes" / "classification_demo.yaml").read_text())
    recipe.update(
        torch_compile=True,
        torch_compile_backend="aot_eager",
        max_steps=3,
        per_device_train_batch_size=8,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        synthetic_train_size=32,
        synthetic_eval_size=16,
        disable_tqdm=True,
        output_dir=str(tmp_path / "out"),
    )
    path = tmp_path / "compiled.yaml"
    path.write_text(yaml.safe_dump(recipe))
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    result = train(path, [])
    assert counters["stats"]["unique_graphs"] >= 1  # the training step ran through dynamo
    assert result["train"]["global_step"] == 3 and torch.isfinite(torch.tensor(result["train"]["train_loss"]))
    assert 0 <= result["eval"]["eval_accuracy"] <= 1
    out = tmp_path / "out"
    with safe_open(out / "model.safetensors", "pt") as weights:
        assert not [k for k in weights.keys() if "_orig_mod" in k]  # saved as the plain model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        logits = model(**AutoTokenizer.from_pretrained(out)(["north before south"], return_tensors="pt")).logits
    assert logits.shape == (1, 2) and torch.isfinite(logits).all()
