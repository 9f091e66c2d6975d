# graftcv developer tasks. Everything runs from the project virtualenv in .venv/.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

# Pinned so pip can take them from the local wheel cache; other versions download gigabytes.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test lint clean

install: $(BIN)/graftcv

# File target: re-runs only when the entry point is missing or pyproject.toml changed.
$(BIN)/graftcv: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/pip install $(TORCH_PINS)
	$(BIN)/pip install -e '.[dev]'
	touch $@

demo: install
	$(BIN)/graftcv demo --out runs/demo

test: install
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint:
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

clean:
	rm -rf runs/ lightning_logs/ .pytest_cache/ .ruff_cache/ bench/out/ build/ dist/
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
	find src -maxdepth 1 -type d -name '*.egg-info' -exec rm -rf {} +
