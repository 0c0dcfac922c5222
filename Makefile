# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv on first use; `make demo` installs the project with its pinned runtime
# dependencies only, `make test` adds the test extras (pytest, ruff, slicer-core, ...).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --progress-bar on -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --progress-bar on -e '.[test]'
	touch $@ $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/boneqct demo --out demo-output

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile Testing

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

bench: $(TEST_STAMP)
	for b in Testing/benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) demo-output build *.egg-info
