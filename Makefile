# One command for each job; `make help` lists them.
#   make tutorial   the InfraKit tutorial on the local store (no cluster)
#   make test       every test: lint, types, import contracts, unit, control-plane and e2e tests
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)

.PHONY: help install tutorial test lint unit controlplane controlplane-up controlplane-down bench bench-smoke bench-scale \
        kind-up kind-e2e kind-down dev image clean

help:
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 20

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

test: lint controlplane bench-smoke ## Every test (the control-plane tests fail, not skip, when CI is set)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

unit: $(STAMP) ## The tests that need no API server
	$(BIN)/python -m pytest -q -m 'not cluster' --deselect tests/cluster

controlplane-up: controlplane ## Start a local control plane in the background; prints its kubeconfig
	$(BIN)/infrakit-controlplane up

controlplane-down: $(STAMP) ## Stop it and remove its data
	$(BIN)/infrakit-controlplane down

bench: $(STAMP) controlplane ## All benchmark scenarios; rewrites BENCHMARKS.md
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench

bench-scale: $(STAMP) ## The scaling curve alone, up to 100,000 instances in one group (~5 min)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench --only curve --output "$${TMPDIR:-/tmp}/infrakit-bench-scale.md"

bench-smoke: $(STAMP) ## Tiny benchmark run (no thresholds) so the code cannot rot
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench --smoke

clean: ## Remove the venv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis

# -- On Kubernetes: the image, a kind cluster, Tilt. These need a Docker engine (and kind,
# tilt): CI's kind job runs them; see README "Run on Kubernetes".
IMAGE ?= infrakit-operator:dev
KIND ?= kind
KIND_CLUSTER ?= infrakit
KIND_HOST_DIR ?= /tmp/infrakit-kind/instances
KIND_KUBECONFIG ?= $(HOME)/.infrakit/kind/kubeconfig
KIND_KUBECTL = KUBECONFIG=$(KIND_KUBECONFIG) $(CURDIR)/$(BIN)/kubectl

image: ## Build the operator image infrakit-operator:dev
	docker build -t $(IMAGE) .

# KIND_HOST_DIR is the extraMounts hostPath of manifests/overlays/kind/kind-config.yaml; it
# must exist before the cluster. It is private to the host user (0700), and the operator's
# pod runs as that user (KIND_USER_PATCH): the file plugin refuses a directory other users
# may write or own, and counts only its own user's files, so the pod, the tests and the
# CLI on the host must be one user. The image is loaded under a fixed tag, so the
# Deployment is restarted to pick it up.
KIND_UID := $(shell id -u)
KIND_GID := $(shell id -g)
KIND_NONROOT := $(if $(filter 0,$(KIND_UID)),false,true)
KIND_USER := "runAsUser":$(KIND_UID),"runAsGroup":$(KIND_GID),"runAsNonRoot":$(KIND_NONROOT)
KIND_USER_PATCH := {"spec":{"template":{"spec":{"securityContext":{$(KIND_USER)},"containers":[{"name":"operator","securityContext":{$(KIND_USER)}}]}}}}
kind-up: $(STAMP) image ## A kind cluster running the operator (manifests/overlays/kind)
	mkdir -p $(KIND_HOST_DIR) $(dir $(KIND_KUBECONFIG))
	chmod 0700 $(KIND_HOST_DIR)
	if $(KIND) get clusters 2>/dev/null | grep -x '$(KIND_CLUSTER)' >/dev/null; then \
	  $(KIND) export kubeconfig --name $(KIND_CLUSTER) --kubeconfig $(KIND_KUBECONFIG); \
	else \
	  $(KIND) create cluster --name $(KIND_CLUSTER) --config manifests/overlays/kind/kind-config.yaml \
	    --kubeconfig $(KIND_KUBECONFIG) --wait 120s; \
	fi
	$(KIND) load docker-image $(IMAGE) --name $(KIND_CLUSTER)
	$(KIND_KUBECTL) apply -k manifests/overlays/kind
	$(KIND_KUBECTL) -n infrakit-system patch deployment infrakit-operator -p '$(KIND_USER_PATCH)'
	$(KIND_KUBECTL) -n infrakit-system rollout restart deployment/infrakit-operator
	$(KIND_KUBECTL) -n infrakit-system rollout status deployment/infrakit-operator --timeout=180s
	@echo "export KUBECONFIG=$(KIND_KUBECONFIG)"

kind-e2e: $(STAMP) ## The e2e tests against the operator kind-up deployed
	INFRAKIT_TEST_CLUSTER=external INFRAKIT_TEST_OPERATOR=external INFRAKIT_TEST_INSTANCE_DIR=$(KIND_HOST_DIR) \
	  KUBECONFIG=$(KIND_KUBECONFIG) PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q tests/e2e

kind-down: ## Delete the kind cluster, its kubeconfig and instance directory
	$(KIND) delete cluster --name $(KIND_CLUSTER) --kubeconfig $(KIND_KUBECONFIG)
	rm -rf $(KIND_HOST_DIR) $(KIND_KUBECONFIG)

dev: $(STAMP) ## Tilt on the kind cluster (after make kind-up): live-updates infrakit/ in the pod
	KUBECONFIG=$(KIND_KUBECONFIG) PATH="$(CURDIR)/$(BIN):$$PATH" tilt up
