# Course payments backend. `make help` lists the targets.
# Every target creates or updates the environment it needs, from the lock files.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PY313 ?= $(shell p=$$(pyenv prefix 3.13.0 2>/dev/null) && echo $$p/bin/python3.13 || command -v python3.13)
BOOTSTRAP_PY ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
SAM_VENV := .venv-sam
PY := $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS := never
export UV_NO_PROGRESS := 1
export AWS_DEFAULT_REGION ?= eu-west-1

.PHONY: help dev test lint types template-check unit integration e2e build bench token deploy lock clean python313

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

python313:
	@if [ -z "$(PY313)" ] || ! [ -x "$(PY313)" ]; then \
	  echo "error: Python 3.13 (the Lambda runtime's version) was not found."; \
	  echo "  Install it, for example 'pyenv install 3.13.0', or pass PY313=/path/to/python3.13."; \
	  exit 1; fi

$(UV):
	$(BOOTSTRAP_PY) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml layers/coursepay/pyproject.toml | python313
	$(UV) sync --frozen --python $(PY313)
	@touch $@

$(SAM_VENV)/.synced: $(UV) tools/sam/uv.lock tools/sam/pyproject.toml | python313
	cd tools/sam && UV_PROJECT_ENVIRONMENT=$(CURDIR)/$(SAM_VENV) ../../$(UV) sync --frozen --python $(PY313)
	@touch $@

venv: $(VENV)/.synced
sam-venv: $(SAM_VENV)/.synced

dev: $(VENV)/.synced ## Run the whole system locally (AWS emulator, API gateway, event pumps, PayMob simulator)
	$(PY) -m devstack

test: lint types template-check unit integration e2e ## Lint, types, template checks, unit, integration and end-to-end tests

lint: $(VENV)/.synced ## ruff and the import-layer contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

types: $(VENV)/.synced ## mypy (strict, pydantic plugin)
	$(VENV)/bin/mypy layers/coursepay/coursepay functions devstack bench tests

template-check: $(VENV)/.synced $(SAM_VENV)/.synced ## cfn-lint, sam validate --lint and the house rules over template.yaml
	$(SAM_VENV)/bin/cfn-lint template.yaml
	$(SAM_VENV)/bin/sam validate --lint --template template.yaml --region $(AWS_DEFAULT_REGION)
	$(PY) -m pytest -q tests/unit/test_template_rules.py

unit: $(VENV)/.synced ## Unit tests (pure, no sockets)
	$(PY) -m pytest -q tests/unit

integration: $(VENV)/.synced ## Handlers and adapters against the AWS emulator
	$(PY) -m pytest -q tests/integration

e2e: $(VENV)/.synced ## HTTP and headless-browser tests against a local stack the tests start
	@if [ -d tests/e2e ] && ls tests/e2e/test_*.py >/dev/null 2>&1; then \
	  bash devstack/ensure_chromium.sh && $(PY) -m pytest -q tests/e2e; \
	else echo "e2e: no end-to-end tests yet"; fi

build: $(SAM_VENV)/.synced ## sam build for python3.13 on arm64 (no Docker)
	PATH="$(dir $(PY313)):$$PATH" $(SAM_VENV)/bin/sam build --template template.yaml

bench: $(VENV)/.synced ## Benchmarks; results go to docs/benchmarks.md
	$(PY) -m bench

token: $(VENV)/.synced ## Print a dev JWT: make token SUB=<id> [ROLE=admin]
	@$(PY) -m devstack.tokens --sub "$(SUB)" --role "$(or $(ROLE),student)"

deploy: $(SAM_VENV)/.synced build ## Deploy with SAM: make deploy STAGE=dev|staging|prod
	$(SAM_VENV)/bin/sam deploy --config-env $(or $(STAGE),dev)

lock: $(UV) ## Re-resolve the lock files after a dependency change
	$(UV) lock --python $(PY313)
	cd tools/sam && ../../$(UV) lock --python $(PY313)

clean: ## Remove environments and build output
	rm -rf $(VENV) $(SAM_VENV) $(TOOLS) .aws-sam .pytest_cache .mypy_cache .ruff_cache
