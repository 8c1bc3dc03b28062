# Quick start: `make run` (set up + run the series on the bundled sample), then `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_DIR ?= outputs/sample
PARAMS ?= params/sample.yaml
PYTEST_ARGS ?=
# The suite on every core (most of it keeps one busy); tests sharing a session fixture run in one worker
# (tests/conftest.py: SHARED, its scheduler). XDIST= runs it in one process.
XDIST ?= -n logical --maxprocesses 4 --no-loadscope-reorder
# rknn-toolkit2 version: empty = keep the installed one (requirements.txt pins 2.5.0); e.g. TOOLKIT=2.3.2
# reinstalls only the toolkit (same dependency pins), TOOLKIT=2.5.0 goes back.
TOOLKIT ?=

.PHONY: setup run test lab report bench clean help

help:
	@echo "make setup TOOLKIT=2.3.2   switch rknn-toolkit2 (only the toolkit is reinstalled; TOOLKIT=2.5.0 goes back)"
	@echo "make run     set up .venv and run the notebook series on the bundled sample into $(RUN_DIR)"
	@echo "make test    unit tests + every notebook under papermill + browser checks"
	@echo "make lab     JupyterLab on notebooks/ with the project's kernel"
	@echo "make report  re-render the HTML reports of $(RUN_DIR)"
	@echo "make bench   cold vs warm wall time of the series and the toolkit's share (benchmarks/bench_series.py)"
	@echo "make clean   remove outputs/ runs and the generated sample data (keeps .venv)"

setup: $(STAMP)
ifneq ($(TOOLKIT),)
	$(PY) -m pip install --disable-pip-version-check --no-deps rknn-toolkit2==$(TOOLKIT)
	$(PY) -c "from importlib.metadata import version; print('rknn-toolkit2', version('rknn-toolkit2'))"
endif

# One pip call for everything: installing pieces separately lets pip upgrade torch/numpy past the toolkit's pins.
$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 10) <= v <= (3, 12) else \
	  f"$(PYTHON) is Python {v[0]}.{v[1]}; the pins install on 3.10-3.12: pass one, e.g. make run PYTHON=python3.10")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -r requirements.txt -e .
	$(PY) -m ipykernel install --sys-prefix --name rknn-workbook --display-name "RKNN workbook (.venv)"
	touch $(STAMP)

run: setup
	$(PY) -m helpers run --params $(PARAMS) --run-dir $(RUN_DIR)

test: setup
	WORKBOOK_CHECK_CLEAN=1 $(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

report: setup
	$(PY) -m helpers report --run-dir $(RUN_DIR)

bench: setup
	$(PY) benchmarks/bench_series.py --params $(PARAMS)

clean:
	find outputs -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	find data -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
