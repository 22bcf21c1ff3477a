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
        docker-install docker-images docker-up docker-down node-up node-down interop kind-up kind-e2e kind-down dev image clean

help:
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 20

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# compat: a path entry in a .pth, as an installed package is found; the default editable mode
	@# installs an import hook that costs every command ~15 ms of start-up users do not pay.
	$(BIN)/python -m pip install --quiet -e '.[test]' --config-settings editable_mode=compat
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

test: lint controlplane docker-images bench-smoke ## Every test (control-plane and Docker tests fail, not skip, when CI is set)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q --durations=30

unit: $(STAMP) ## The tests that need no API server
	$(BIN)/python -m pytest -q -m 'not cluster' --deselect tests/cluster

controlplane-up: controlplane ## Start a local control plane in the background; prints its kubeconfig
	$(BIN)/infrakit-controlplane up

controlplane-down: $(STAMP) ## Stop it and remove its data
	$(BIN)/infrakit-controlplane down

# -- A node beside a control plane (infrakit/controlplane/node.py): containerd and runc from
# Debian, kubelet, controller manager and scheduler from the control-plane binary. Root only.
node-up: controlplane docker-install ## Start a control plane and a node (kept until node-down); prints its kubeconfig
	$(BIN)/infrakit-controlplane node up

node-down: $(STAMP) ## Stop the node and its control plane
	$(BIN)/infrakit-controlplane node down

bench: $(STAMP) controlplane ## All benchmark scenarios; rewrites BENCHMARKS.md
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench

bench-scale: $(STAMP) ## The scaling curve alone, up to 100,000 instances in one group (~5 min)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench --only curve --output "$${TMPDIR:-/tmp}/infrakit-bench-scale.md"

bench-smoke: $(STAMP) ## Tiny benchmark run (no thresholds) so the code cannot rot
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench --smoke

# -- Docker: Debian's engine and the images made without a registry (tools/docker). Our own
# dockerd is started when no engine answers (DOCKER_HOST, /var/run/docker.sock) and stopped by
# its last user; its images are kept in ~/.cache/infrakit/docker. Outside CI a machine that
# cannot install or start it gets a warning, and the Docker tests skip.
docker-install: ## Install docker.io, debootstrap and busybox-static from Debian's packages (if missing)
	tools/docker/install.sh

docker-images: $(STAMP) docker-install ## Make the test images: busybox, Debian bookworm, the Python stand-in
	$(BIN)/python -m tools.docker images || { test -z "$${CI:-}" && echo "warning: no Docker images: the Docker tests will be skipped" >&2; }

docker-up: $(STAMP) docker-install ## Start our dockerd (kept until docker-down); prints export DOCKER_HOST=...
	$(BIN)/python -m tools.docker up

docker-down: $(STAMP) ## Stop our dockerd unless a test session still uses it
	$(BIN)/python -m tools.docker down

# Interop with InfraKit v0.5's own binaries (never in CI: they are built from a fetched source):
# bash ../shared/tools/build-infrakit-v0.5.sh GIT_DIR puts them in ~/.cache/infrakit-orig/bin ($$IKBIN).
interop: $(STAMP) docker-install ## InfraKit's CLI drives our instance-docker daemon, ours drives its plugin, each adopts the other's containers
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -p tests.dockerfixtures -p no:cacheprovider tools/interop

clean: ## Remove the venv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis

# -- On Kubernetes: the image, a kind cluster, Tilt. The image needs a Docker engine (ours, on
# these machines); kind and tilt need registry access: CI's kind job runs them; see README
# "Run on Kubernetes".
IMAGE ?= infrakit-operator:dev
KIND ?= kind
KIND_CLUSTER ?= infrakit
KIND_HOST_DIR ?= /tmp/infrakit-kind/instances
KIND_KUBECONFIG ?= $(HOME)/.infrakit/kind/kubeconfig
KIND_KUBECTL = KUBECONFIG=$(KIND_KUBECONFIG) $(CURDIR)/$(BIN)/kubectl

# With registry access: `docker build .` FROM python:3.11-slim-bookworm. Without (our machines):
# FROM a stand-in made with debootstrap, from wheels built on the host (tools/docker/operator_image.py).
# PYTHON_IMAGE=... picks the base.
image: $(STAMP) ## Build the operator image infrakit-operator:dev
	$(BIN)/python -m tools.docker image --tag $(IMAGE)

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
