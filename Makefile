# Two commands do all the set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The torch build to install; override for your CUDA, e.g.
#   make demo TORCH="torch==2.14.1 torchvision==0.29.1 --index-url <PyTorch wheel index for your CUDA>"
TORCH ?= torch==2.14.1 torchvision==0.29.1
DEMO_DIR ?= work_dirs/demo

.PHONY: demo test lint format install dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch, torchvision" 2>/dev/null || $(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[onnx]"  # ONNX Runtime: the CPU fast paths that --backend auto weighs
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.installed-dev

## Train ReSeg on the synthetic street scenes (generated on first use) within the config's
## train.time_budget, evaluate it, and run it on a synthetic drive. A second `make demo` starts again.
demo: $(VENV)/.installed
	$(BIN)/reseg train configs/reseg_synthetic.yaml --work-dir $(DEMO_DIR) --overwrite --no-progress
	$(BIN)/reseg evaluate --checkpoint $(DEMO_DIR)/best.pt --out $(DEMO_DIR)/eval
	$(BIN)/reseg make-synthetic --train 0 --val 0 --test 0 --size 240 320 --difficulty easy --seed 7 \
		--video $(DEMO_DIR)/drive.mp4 --video-frames 120
	$(BIN)/reseg video $(DEMO_DIR)/drive.mp4 --checkpoint $(DEMO_DIR)/best.pt --output $(DEMO_DIR)/drive_overlay.mp4 \
		--backend auto --legend --no-progress --stats-json $(DEMO_DIR)/drive_stats.json
	@echo
	@echo "demo done:"
	@echo "  report:        $(DEMO_DIR)/eval/report.md (metrics.json, per_class.csv)"
	@echo "  sample grid:   $(DEMO_DIR)/eval/samples.png"
	@echo "  overlay video: $(DEMO_DIR)/drive_overlay.mp4"
	@echo "  from Python:   import reseg; seg = reseg.load('$(DEMO_DIR)/best.pt'); mask = seg(rgb_image)"
	@echo "  to share it:   $(BIN)/reseg package --checkpoint $(DEMO_DIR)/best.pt --out $(DEMO_DIR)/model"

## The whole test suite (CPU only, no network, no ../shared).
test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

## ruff's lint and format checks (the versions pinned in the dev extras); `make format` applies both.
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) work_dirs .pytest_cache
