# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv on first use and installs the project with its pinned dependencies.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/boneqct demo --out demo-output

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile Testing

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	for b in Testing/benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) demo-output build *.egg-info
