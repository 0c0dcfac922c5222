# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv on first use; `make demo` installs the project with its pinned runtime
# dependencies only (not the batch or test extras), `make test` adds the test extras (pytest,
# ruff, slicer-core, the batch packages, ...).
# pip is not upgraded (a round trip to the index; the venv's own pip, 21.3 or newer on every
# supported Python, installs the project editable) and compiles no bytecode while installing
# (--no-compile; Python compiles the modules it imports on first use): compiling every module
# of vtk, scipy and matplotlib took most of the install's time.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP_INSTALL := $(BIN)/python -m pip install --progress-bar on --no-compile
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'pip>=21.3'

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	@echo "Installing the demo's pinned dependencies into $(VENV) (vtk, SimpleITK, scipy, matplotlib, ...)"
	$(PIP_INSTALL) -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	@echo "Installing the project with its test extras into $(VENV)"
	$(PIP_INSTALL) -e '.[test]'
	touch $@ $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/boneqct demo --out demo-output

# The tests start many Python processes (the command line as a user runs it, Dask workers):
# each would compile every module it imports again where the environment sets
# PYTHONDONTWRITEBYTECODE (as this project's CI machine does), about 3 s a process; the
# bytecode is written once instead (test_cli_validation.py: 78 s -> 32 s).
test: $(TEST_STAMP)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -n 2 --dist loadfile Testing

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

bench: $(TEST_STAMP)
	for b in Testing/benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) demo-output build *.egg-info
