# Two commands do all set-up on a fresh machine: `make test` and `make demo`.
# Both create .venv with uv from uv.lock (installing uv itself with pip if it is missing).
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
VENV := .venv
PY := $(VENV)/bin/python
export NO_ALBUMENTATIONS_UPDATE := 1
export HYPOTHESIS_PROFILE ?= $(if $(CI),ci,dev)

.PHONY: setup test demo bench clean

$(VENV)/.synced: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen --extra eval
	@touch $@

setup: $(VENV)/.synced

test: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The paper's introduction-point study in miniature (docs/demo.md): embedded data, four introduction points
# (0/40/80/100%) trained from one shared trunk on CPU, each measured before and after fine-tuning;
# out/demo/summary.json, figure.png and report/. Re-running reuses what is finished and continues an
# interrupted run from its newest checkpoint. DEMO_ARGS passes options, e.g. DEMO_ARGS="--seeds 2".
demo: setup
	$(VENV)/bin/mixture demo -o out/demo $(DEMO_ARGS)

# The quick benchmarks (benchmarks/run_all.py: 16 min measured on 2 cores shared at load average 20);
# BENCH_ARGS="--full" for the sizes docs/benchmarks.md reports (hours).
bench: setup
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build dist
