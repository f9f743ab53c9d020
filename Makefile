# forgetlab: `make demo` runs the main job on the built-in default, `make test` runs the tests.
# Both set up a virtualenv in .venv first (CPU build of torch, then the package with its dev extras).
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build of torch; on this project's machines pip finds this exact wheel on local disk.
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo run test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

run: setup
	$(VENV)/bin/forgetlab

demo: setup
	$(VENV)/bin/forgetlab

test: setup
	WANDB_MODE=disabled $(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check src tests

bench: setup
	$(PY) benchmarks/bench_default.py

clean:
	rm -rf outputs multirun .pytest_cache
