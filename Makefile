# hefl: every entry point a user or CI needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.hefl-installed
PROTO_FILES := $(wildcard protos/hefl/v1/*.proto)

# OpenFHE parallelises over RNS towers only; OpenMP threads buy nothing for one tower
# and stall under CPU contention (notes/openfhe-study.md §4.3).
export OMP_NUM_THREADS ?= 1
export PYTHONPATH := $(CURDIR):$(CURDIR)/protos

CONFIG ?= examples/coordinator.toml
COORDINATOR ?= 127.0.0.1:50051
PYTEST_ARGS ?=

.PHONY: help setup protos protos-check lint format test test-long coordinator worker demo bench stubs certs clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml scripts/bootstrap-venv.sh
	scripts/bootstrap-venv.sh $(VENV)
	touch $@

setup: $(STAMP) ## find python3.10, build .venv, install hefl and its dev tools

protos: $(STAMP) ## regenerate the Python stubs (and .pyi) from protos/
	PATH=$(BIN):$$PATH scripts/gen-protos.sh protos

protos-check: $(STAMP) ## fail if the committed stubs differ from a fresh generation
	PATH=$(BIN):$$PATH scripts/check-protos.sh

lint: $(STAMP) ## ruff, mypy, buf lint/format and buf breaking against main
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	cd protos && ../$(BIN)/buf lint && ../$(BIN)/buf format --diff --exit-code
	scripts/buf-breaking.sh $(BIN)/buf

format: $(STAMP) ## apply ruff and buf formatting
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	cd protos && ../$(BIN)/buf format -w

test: $(STAMP) ## install what the tests need, then run the whole suite
	scripts/install-test-deps.sh
	$(BIN)/pytest -q $(PYTEST_ARGS)

test-long: $(STAMP) ## the long tests (chaos, load) only
	scripts/install-test-deps.sh
	$(BIN)/pytest -q -m slow $(PYTEST_ARGS)

coordinator: $(STAMP) ## run a coordinator (CONFIG=path.toml, flags via ARGS=...)
	$(PY) -m coordinator --config $(CONFIG) $(ARGS)

worker: $(STAMP) ## run one worker against COORDINATOR (flags via ARGS=...)
	$(PY) -m edge_worker --coordinator $(COORDINATOR) $(ARGS)

demo: $(STAMP) ## a real federated training on loopback (ARGS=--plaintext for the comparison run)
	$(PY) -m examples.demo $(ARGS)

bench: $(STAMP) ## benchmarks against baselines measured in the same run (QUICK=1 for a smoke run)
	@# Flower is an optional external reference in its own venv: a failed install only skips it.
	$(if $(QUICK)$(NO_FLOWER),,scripts/flower-venv.sh || echo "Flower reference unavailable: its figures will say skipped")
	$(PY) -m bench $(if $(QUICK),--quick,)

certs: $(STAMP) ## a local CA, a coordinator certificate and WORKERS device identities in var/certs
	$(PY) -m crypto.certs demo var/certs --workers $(or $(WORKERS),8)

stubs: ## client stubs for Go, C++, TypeScript and Java into stubs-out/ (LANGS=go,ts; CHECK=1 compiles them)
	scripts/gen-stubs.sh $(if $(LANGS),--lang $(LANGS)) $(if $(CHECK),--check)

clean: ## remove build and run output (keeps .venv)
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist demo-output stubs-out
