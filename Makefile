# Two commands for a new user: `make run` (quick report) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test setup clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m train report --quick --out results

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup --no-loadscope-reorder -q

clean:
	rm -rf $(VENV) .cache
