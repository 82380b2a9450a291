# Each target bootstraps .venv on a fresh machine, then runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint format bench clean chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/layerscope depth

test: $(STAMP) chromium
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/pytest

# The site's browser tests need Debian's chromium: installed here when missing and the machine
# allows it (root and apt-get, as CI runs); elsewhere those tests skip and say why.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; } && \
	  echo "installed chromium for the browser tests"; } || \
	echo "chromium is missing and cannot be installed here (needs root and apt-get): the browser tests will skip"

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
	$(BIN)/python benchmarks/sweep.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
