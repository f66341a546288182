SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
MAKEFLAGS += --warn-undefined-variables --no-builtin-rules
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
BUF := node_modules/.bin/buf
PYTEST_ARGS ?=
TAG ?= 0.1.0
SERVICES := registry model_server orchestrator gateway

.PHONY: help setup proto proto-check proto-lint proto-breaking lint fmt test run images bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: ## fresh machine -> virtualenv, pinned deps, generated code, buf, system packages
	scripts/setup.sh

proto: ## regenerate libs/contracts from protos/ (the only way code gets there)
	scripts/gen_proto.sh

proto-check: ## fail when libs/contracts is stale or hand-edited
	scripts/gen_proto.sh --check

proto-lint: ## buf lint (STANDARD), offline
	$(BUF) lint

proto-breaking: ## buf breaking against main
	scripts/buf_breaking.sh main

lint: proto-check proto-lint proto-breaking ## ruff (format, lint, complexity <= 15), mypy, buf lint + breaking, proto freshness
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy libs/common/src services/*/src clients/python/src

fmt: ## format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: ## the whole test suite (.ci/run runs setup, lint, then exactly this)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

run: ## all four services locally on the embedded defaults; Ctrl-C stops them all
	$(PY) scripts/run_local.py

images: ## one image per service from deploy/docker/Dockerfile: modelserve-<service>:$(TAG)
	for svc in $(SERVICES); do \
	  docker build -f deploy/docker/Dockerfile --build-arg SERVICE=$$svc --target $$svc \
	    -t modelserve-$${svc//_/-}:$(TAG) . ; \
	done

bench: ## benchmarks of ours beside the peers (see bench/README.md)
	$(PY) bench/run.py

clean: ## remove build outputs, local data and tool caches
	rm -rf .build data .pytest_cache .mypy_cache .ruff_cache
