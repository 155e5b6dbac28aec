# Passgate: the commands the README shows. A fresh machine needs only python3 and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## run: start the whole system locally on SQLite (Ctrl-C stops it)
run: $(STAMP)
	$(BIN)/python -m devstack $(if $(REPLICAS),--replicas $(REPLICAS)) $(if $(DB),--db $(DB))

## test: install what the tests need and run them
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## bench: gateway cost and scaling against direct, nginx and session-lookup baselines (a few minutes)
bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .data .pytest_cache
