# The project's commands. `make test` is the one test command (README.md, .ci/run).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PKGTREE := .cache/pkgtree
PYTEST_ARGS ?=

# The card's top-level `operator/` folder would shadow the standard library's `operator` module
# for any `python -m …` run from here (Python puts the working folder first on sys.path).
# PYTHONSAFEPATH (Python >= 3.11) stops that.
export PYTHONSAFEPATH := 1

.PHONY: help test test-fast lint format venv envtest keda s3 jaeger monitoring-crds provision bench demo clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

venv: $(STAMP) ## create .venv and install the project with its test extras

provision: ## install PostgreSQL, RabbitMQ, Chromium and promtool from the OS packages when missing
	@hack/provision.sh

envtest: ## build etcd, kube-apiserver, kube-controller-manager and kubectl (cached) when missing
	@hack/envtest/build.sh >/dev/null

keda: ## build the KEDA operator and keep its CRDs (cached) when missing
	@hack/keda/build.sh >/dev/null

s3: ## build the versitygw S3 server (cached) when missing
	@hack/s3/build.sh >/dev/null

jaeger: ## build Jaeger v2, the test ground's trace store (cached) when missing
	@hack/jaeger/build.sh >/dev/null

monitoring-crds: ## download prometheus-operator's CRDs from its Go module (cached) when missing
	@hack/prometheus-operator/crds.sh >/dev/null

lint: venv ## ruff, mypy (strict) and the import-linter contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python hack/package_tree.py $(PKGTREE)
	$(BIN)/mypy $(PKGTREE)/imagebatch tests hack $(wildcard bench/*.py bench/*/*.py)
	cd $(PKGTREE) && PYTHONPATH=. $(CURDIR)/$(BIN)/python $(CURDIR)/hack/lint_imports.py --config $(CURDIR)/pyproject.toml --no-cache

format: venv ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: venv provision envtest keda s3 jaeger monitoring-crds lint ## the whole suite against real PostgreSQL, RabbitMQ, Kubernetes API servers, KEDA, an S3 server and Jaeger
	KUBEBUILDER_ASSETS="$$(hack/envtest/build.sh)" KEDA_DIR="$$(hack/keda/build.sh)" S3_SERVER_DIR="$$(hack/s3/build.sh)" PROMETHEUS_OPERATOR_DIR="$$(hack/prometheus-operator/crds.sh)" $(BIN)/pytest $(PYTEST_ARGS)

test-fast: venv envtest keda s3 monitoring-crds ## the suite without tests marked slow
	KUBEBUILDER_ASSETS="$$(hack/envtest/build.sh)" KEDA_DIR="$$(hack/keda/build.sh)" S3_SERVER_DIR="$$(hack/s3/build.sh)" PROMETHEUS_OPERATOR_DIR="$$(hack/prometheus-operator/crds.sh)" $(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

demo: venv provision envtest $(if $(filter 1,$(KEDA)),keda) $(if $(filter 1,$(S3)),s3) ## the whole system on local processes: apply examples/imagebatch.yaml, follow it to the end (KEEP=1 keeps it running, KEDA=1 scales with the real KEDA, S3=1 puts the thumbnails in a bucket)
	KUBEBUILDER_ASSETS="$$(hack/envtest/build.sh)" $(if $(filter 1,$(KEDA)),KEDA_DIR="$$(hack/keda/build.sh)") $(if $(filter 1,$(S3)),S3_SERVER_DIR="$$(hack/s3/build.sh)") $(BIN)/python -m imagebatch.devservers.demo

clean: ## remove the virtualenv and caches (not the envtest binaries in ~/.cache)
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
