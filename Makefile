# Two commands do all the set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The torch build to install; override for your CUDA, e.g.
#   make demo TORCH="torch==2.14.1 torchvision==0.29.1 --index-url <PyTorch wheel index for your CUDA>"
TORCH ?= torch==2.14.1 torchvision==0.29.1
DEMO_DIR ?= work_dirs/demo

.PHONY: demo test install dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch, torchvision" 2>/dev/null || $(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.installed-dev

## Train ReSeg on the synthetic street scenes (generated on first use), then evaluate it.
demo: $(VENV)/.installed
	$(BIN)/reseg train configs/reseg_synthetic.yaml --work-dir $(DEMO_DIR)
	$(BIN)/reseg evaluate --checkpoint $(DEMO_DIR)/best.pt --out $(DEMO_DIR)/eval

## The whole test suite (CPU only, no network, no ../shared).
test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) work_dirs .pytest_cache
