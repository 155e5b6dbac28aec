# Passgate: the commands the README shows. A fresh machine needs only python3 and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# One stamp per set of extras, redone when pyproject.toml changes: `make run` installs
# only what the system needs, `make test` adds the test tools, `make bench` the profiler.
$(INSTALLED)-%: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.$(if $(filter-out runtime,$*),[$*])'
	touch $@

## run: start the whole system locally on SQLite (Ctrl-C stops it); BASE_PORT=N moves every port
run: $(INSTALLED)-runtime
	$(BIN)/python -m devstack $(if $(REPLICAS),--replicas $(REPLICAS)) $(if $(DB),--db $(DB)) $(if $(BASE_PORT),--base-port $(BASE_PORT))

## test: install what the tests need and run them
test: $(INSTALLED)-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## bench: gateway cost against direct, HAProxy, nginx, bare-aiohttp and session-lookup baselines; issue 14's targets (about 8 minutes)
bench: $(INSTALLED)-bench
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .data .pytest_cache
