# Passgate: the commands the README shows. A fresh machine needs only python3 and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test bench image lock clean

LOCKS := requirements

# pip and setuptools themselves come from the build lock, so the installer and the build
# backend are the versions CI used too.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(LOCKS)/build.lock

# One stamp per set of extras, redone when pyproject.toml or its lock changes: `make run`
# installs only what the system needs, `make test` adds the test tools, `make bench` the
# profiler. Every dependency comes from requirements/<set>.lock, pinned with hashes (pip
# refuses anything else), so a fresh machine installs exactly what CI tested; the project
# itself is then installed editable without resolving anything.
$(INSTALLED)-%: pyproject.toml $(LOCKS)/%.lock $(LOCKS)/build.lock | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r $(LOCKS)/build.lock -r $(LOCKS)/$*.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# Re-pin every dependency after a change to pyproject.toml's dependencies (uv resolves for
# CPython 3.11 on every platform and records the hash of every published file). The shared
# runtime pins constrain the test and bench locks, so all three agree.
UV_VERSION := 0.13.9
UV := $(VENV)/lock-tools/bin/uv
LOCK := UV_NO_CONFIG=1 $(UV) pip compile --quiet --generate-hashes --universal \
	--python-version 3.11 --no-header
$(UV):
	$(PYTHON) -m venv $(VENV)/lock-tools
	$(VENV)/lock-tools/bin/pip install --quiet uv==$(UV_VERSION)

## lock: re-pin requirements/*.lock from pyproject.toml (then commit them)
lock: $(UV)
	$(LOCK) pyproject.toml -o $(LOCKS)/runtime.lock $(LOCK_ARGS)
	$(LOCK) pyproject.toml --extra test -c $(LOCKS)/runtime.lock -o $(LOCKS)/test.lock $(LOCK_ARGS)
	$(LOCK) pyproject.toml --extra bench -c $(LOCKS)/runtime.lock -o $(LOCKS)/bench.lock $(LOCK_ARGS)
	$(LOCK) $(LOCKS)/build.in -o $(LOCKS)/build.lock $(LOCK_ARGS)

## run: start the whole system locally on SQLite (Ctrl-C stops it); BASE_PORT=N moves every port
run: $(INSTALLED)-runtime
	$(BIN)/python -m devstack $(if $(REPLICAS),--replicas $(REPLICAS)) $(if $(DB),--db $(DB)) $(if $(BASE_PORT),--base-port $(BASE_PORT))

## test: install what the tests need and run them, one pytest-xdist worker per core
## (PYTEST_WORKERS=0 runs them in this one process); a module's tests stay on one worker,
## so the system a module starts once serves all of its tests
PYTEST_WORKERS ?= auto
test: $(INSTALLED)-test
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

## bench: gateway cost against direct, HAProxy, nginx, bare-aiohttp and session-lookup baselines; issue 14's targets (6 to 7 minutes)
bench: $(INSTALLED)-bench
	$(BIN)/python -m bench $(BENCH_ARGS)

## image: build the container image passgate:dev (IMAGE=name:tag), from python:3.11-slim
## when a registry is reachable, else from a Debian base made with debootstrap (see deploy/README.md)
image:
	deploy/build-image.sh

clean:
	rm -rf $(VENV) .data .pytest_cache
