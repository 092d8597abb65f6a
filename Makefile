# One entry point for newcomers and CI. `make run` and `make test` install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build lies on disk on our machines; on a GPU node install a CUDA torch before `make`.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install browser run test test-all lint bench clean

install: $(VENV)/.installed browser

# The report's browser test drives Debian's headless Chromium: installed here when missing and we are
# root with apt-get (CI, fresh machines); elsewhere the test is skipped with a note.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      chromium chromium-driver; \
	  else \
	    echo "note: chromium/chromedriver missing and not root: the browser test is skipped (and fails under CI)"; \
	  fi; \
	fi

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
