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
	$(UV) sync --frozen
	@touch $@

setup: $(VENV)/.synced

test: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# Until the full demo lands (issue 7), the demo runs the real steps that exist: the paper's 1B recipe
# compiled at full scale and explained.
demo: setup
	$(VENV)/bin/mixture validate examples/paper_1b.yaml
	$(VENV)/bin/mixture compile examples/paper_1b.yaml -o out/paper_1b
	$(VENV)/bin/mixture explain out/paper_1b

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build dist
