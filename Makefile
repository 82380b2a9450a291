# Each target bootstraps .venv on a fresh machine, then runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/layerscope depth

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/pytest

test-slow: $(STAMP)
	$(BIN)/pytest -m slow

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/inversion.py
	$(BIN)/python benchmarks/training.py
	$(BIN)/python benchmarks/similarity.py
	$(BIN)/python benchmarks/cca.py
	$(BIN)/python benchmarks/sensitivity.py
	$(BIN)/python benchmarks/conditioning.py
	$(BIN)/python benchmarks/generation.py
	$(BIN)/python benchmarks/descent_quality.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
