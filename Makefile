# Developer entry points for cas-download. `make check` is THE test command (CI: .ci/run).
#
# Tools come from the project venv ($(VENV), default .venv): `make venv` creates it.
# Nothing here needs Docker, AWS credentials or a local python3.13: `sam build` uses the makefile
# builds in functions/Makefile and layers/dependencies/Makefile (pip cross-installs for the runtime).

VENV ?= .venv
BIN := $(VENV)/bin
BOOTSTRAP_PYTHON ?= python3
SOURCES := functions tests scripts
VALIDATE_REGION ?= us-east-1
PYTEST_ARGS ?=
DEPLOY_ARGS ?= --guided

# sam: no telemetry calls. The layer build runs "$(PYTHON) -m pip": the venv's, unless overridden.
export SAM_CLI_TELEMETRY ?= 0
export PYTHON ?= $(abspath $(BIN))/python

.DEFAULT_GOAL := help
.PHONY: help venv lint format typecheck template test package-check check build deploy clean

help:
	@echo "make venv           create $(VENV) and install -e '.[dev]' (if missing or pyproject changed)"
	@echo "make check          lint typecheck template test package-check (the full gate, as in CI)"
	@echo "make lint           ruff check + ruff format --check on $(SOURCES)"
	@echo "make format         ruff format + ruff check --fix"
	@echo "make typecheck      mypy (strict) on the package and scripts"
	@echo "make template       cfn-lint + sam validate --lint"
	@echo "make test           pytest (PYTEST_ARGS=...)"
	@echo "make package-check  sam build into a temp dir, report sizes, check the artifacts"
	@echo "make build          sam build into .aws-sam/build"
	@echo "make deploy         sam build + sam deploy $(DEPLOY_ARGS)"
	@echo "make clean          remove build output and tool caches"

venv: $(VENV)/.dev-installed

$(VENV)/.dev-installed: pyproject.toml
	test -x "$(BIN)/python" || "$(BOOTSTRAP_PYTHON)" -m venv "$(VENV)"
	"$(BIN)/python" -m pip install --quiet --upgrade pip
	"$(BIN)/python" -m pip install --quiet -e '.[dev]'
	touch "$@"

lint:
	"$(BIN)/ruff" check $(SOURCES)
	"$(BIN)/ruff" format --check $(SOURCES)

format:
	"$(BIN)/ruff" format $(SOURCES)
	"$(BIN)/ruff" check --fix $(SOURCES)

typecheck:
	"$(BIN)/mypy"
	"$(BIN)/mypy" scripts

template:
	"$(BIN)/cfn-lint" template.yaml
	AWS_EC2_METADATA_DISABLED=true "$(BIN)/sam" validate --lint --template-file template.yaml --region $(VALIDATE_REGION)

test:
	"$(BIN)/pytest" $(PYTEST_ARGS)

package-check:
	"$(BIN)/python" scripts/check_package.py

check: venv
	$(MAKE) lint typecheck template test package-check

build:
	"$(BIN)/sam" build

deploy: build
	@echo "First deployment: answer the prompts (JwtIssuer, JwtAudience, SecretNamePrefix...) and save them to samconfig.toml."
	"$(BIN)/sam" deploy $(DEPLOY_ARGS)

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
