# Two commands do everything on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch is pinned and installed first: an unpinned torch pulls several GB of CUDA packages.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --disable-pip-version-check -q torch==2.13.0
	$(BIN)/pip install --disable-pip-version-check -q -e .[dev]
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/attnlab run sentiment --dataset rotten-tomatoes --seeds 1 --patience 2 --batch-size 64 --overwrite --out runs/demo

test: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/python -m pytest

test-all: $(STAMP)
	$(BIN)/python -m pytest -m ""

lint: $(STAMP)
	$(BIN)/ruff check src tests

bench: $(STAMP)
	$(BIN)/attnlab bench --quick

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
