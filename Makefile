# One command for each job; `make help` lists them.
#   make tutorial   the InfraKit tutorial on the local store (no cluster)
#   make test       every test: lint, types, import contracts, unit, control-plane and e2e tests
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)

.PHONY: help install tutorial test lint unit controlplane controlplane-up controlplane-down bench bench-smoke \
        kind-up kind-e2e kind-down dev image clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 20

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP) ## Create .venv with the package and its pinned test tools

tutorial: $(STAMP) ## Run the InfraKit tutorial on the local store (a fresh INFRAKIT_HOME under /tmp)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/tutorial.sh

lint: $(STAMP) ## ruff, mypy --strict, import-linter contracts
	$(BIN)/ruff check --output-format concise .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

controlplane: $(STAMP) ## Build (or reuse) the kube-apiserver + etcd binary from pinned Go modules
	$(BIN)/infrakit-controlplane build

test: lint controlplane ## Every test (the control-plane tests fail, not skip, when CI is set)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q
	$(MAKE) bench-smoke

unit: $(STAMP) ## The tests that need no API server
	$(BIN)/python -m pytest -q -m 'not cluster' --deselect tests/cluster

controlplane-up: controlplane ## Start a local control plane in the background; prints its kubeconfig
	$(BIN)/infrakit-controlplane up

controlplane-down: $(STAMP) ## Stop it and remove its data
	$(BIN)/infrakit-controlplane down

bench: $(STAMP) controlplane ## All benchmark scenarios; rewrites BENCHMARKS.md
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench

bench-smoke: $(STAMP) ## Tiny benchmark run (no thresholds) so the code cannot rot
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench --smoke

clean: ## Remove the venv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
