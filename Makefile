# Two commands do everything on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all test-timm lint bench clean

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

# timm, the trusted reference for the image blocks and the ViT, imports torchvision, and
# PyPI's torchvision does not load beside the pinned CPU torch 2.13.0. Its live comparisons
# run in a second environment (torch 2.14.1 + torchvision 0.29.1, about 6 GB); the default
# suite compares against outputs saved from timm (tests/vision/fixtures/make_*.py).
TIMM_VENV := .venv-timm
$(TIMM_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(TIMM_VENV)
	$(TIMM_VENV)/bin/pip install --disable-pip-version-check -q torch==2.14.1 torchvision==0.29.1
	$(TIMM_VENV)/bin/pip install --disable-pip-version-check -q -e .[timm] pytest hypothesis
	touch $@

test-timm: $(TIMM_VENV)/.installed
	$(TIMM_VENV)/bin/python -m pytest -m timm -p no:cacheprovider tests/vision tests/models

lint: $(STAMP)
	$(BIN)/ruff check src tests

bench: $(STAMP)
	$(BIN)/attnlab bench --quick

clean:
	rm -rf $(VENV) $(TIMM_VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
