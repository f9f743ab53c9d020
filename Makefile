# forgetlab: `make demo` runs the main job on the built-in default, `make test` runs the tests.
# Both set up a virtualenv in .venv first (CPU build of torch, then the package with its dev extras).
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build of torch; on this project's machines pip finds this exact wheel on local disk.
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
# setup prints nothing on success but its first and last line: no pip "new release" notice
export PIP_DISABLE_PIP_VERSION_CHECK ?= 1

.PHONY: setup demo run test test-slow lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@echo "setup: $(VENV) with $(TORCH_SPEC) (CPU) and forgetlab[dev], editable (a minute or two)"
	@python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q "$(TORCH_SPEC)"
	@$(PY) -m pip install -q -e ".[dev]"
	@touch $@
	@echo "setup: done ($(VENV)/bin/forgetlab)"

run: setup
	$(VENV)/bin/forgetlab

# The main job: base stage (cached) + 5 strategy presets x 2 seeds (Hydra multirun), then the report.
# Relaunching resumes (completed jobs are skipped). Another sweep: make demo DEMO_EXPERIMENT=lr_sweep
DEMO_EXPERIMENT ?= compare_strategies
DEMO_OUT ?= $(or $(FORGETLAB_OUTPUTS),outputs)
DEMO_SWEEP := $(DEMO_OUT)/sweeps/$(DEMO_EXPERIMENT)

demo: setup
	@status=0; \
	$(VENV)/bin/forgetlab -m experiment=$(DEMO_EXPERIMENT) paths.root=$(DEMO_OUT) || status=$$?; \
	if [ $$status -ne 0 ]; then echo "some jobs failed: $(DEMO_SWEEP)/sweep_summary.json; reporting the rest"; fi; \
	$(VENV)/bin/forgetlab-report $(DEMO_SWEEP) || status=$$?; \
	echo "report: $(DEMO_SWEEP)/report/report.html (tables: report.md, report.csv; Pareto front: $(DEMO_SWEEP)/pareto_front.json)"; \
	exit $$status

test: setup
	WANDB_MODE=disabled $(PY) -m pytest

# The slow tests (marked `slow`): 2-process DDP, real SIGKILL and requeue, every documented example trained.
test-slow: setup
	WANDB_MODE=disabled $(PY) -m pytest -m slow

lint: setup
	$(VENV)/bin/ruff check src tests

bench: setup
	$(PY) benchmarks/bench_default.py

clean:
	rm -rf outputs multirun .pytest_cache
