# One entry point for newcomers and CI. `make run` and `make test` install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build lies on disk on our machines; on a GPU node install a CUDA torch before `make`.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install run test test-all lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

run: install
	$(VENV)/bin/spdnas quickstart

test: install
	bash scripts/test.sh $(PYTEST_ARGS)

test-all: install
	SPDNAS_TEST_ALL=1 bash scripts/test.sh $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) benchmarks/geometry_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
