# Two commands for a new user: `make run` (quick report) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-all test-matrix setup clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m train report --quick --out results

# The everyday suite: everything but the tests marked `full` (many processes or simulated devices).
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup --no-loadscope-reorder -q -m "not full"

# Every test, the `full` ones included: what CI (.ci/run) runs.
test-all: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup --no-loadscope-reorder -q

# The suite under settings that change the arithmetic as another machine would (threads, ISA caps,
# XLA fast math); not part of `make test`. The table goes to .cache/test-matrix/matrix.md.
test-matrix: $(STAMP)
	$(BIN)/python scripts/test_matrix.py

clean:
	rm -rf $(VENV) .cache
