# Developer entry points for cas-download. `make check` is THE test command (CI: .ci/run).
#
# Tools come from the project venv ($(VENV), default .venv): `make venv` creates it.
# Nothing here needs Docker, AWS credentials or a local python3.13: `sam build` uses the makefile
# builds in functions/Makefile and layers/dependencies/Makefile (pip cross-installs for the runtime).

VENV ?= .venv
BIN := $(VENV)/bin
BOOTSTRAP_PYTHON ?= python3
SOURCES := functions tests scripts tools benchmarks mutation layers
VALIDATE_REGION ?= us-east-1
PYTEST_ARGS ?=
DEPLOY_ARGS ?=
PORT ?= 8080
EVENT ?= events/get_redirect.json

# sam: no telemetry calls. The layer build runs "$(PYTHON) -m pip": the venv's, unless overridden.
export SAM_CLI_TELEMETRY ?= 0
export PYTHON ?= $(abspath $(BIN))/python

.DEFAULT_GOAL := help
# CNCF distribution (Debian's docker-registry), unpacked without root into .local/registry: the real
# OCI registry of the tests and of `make run`'s OCI demo. Needs apt-get (Debian/Ubuntu).
REGISTRY_DIR ?= .local/registry
REGISTRY_BIN := $(REGISTRY_DIR)/usr/bin/docker-registry

# uv.lock decides every Python package any venv here gets (docs/development.md, "The lock"). uv itself
# comes from tools/envs/uv-requirements.txt, installed by pip with --require-hashes into .local/uv.
# UV_PREVIEW_FEATURES: the lock declares the project and checkov's venv as conflicting packages (uv
# calls that a preview feature; uv's version is pinned, so its behaviour is too). UV_PYTHON_DOWNLOADS:
# the venvs use the machine's Python, never one uv would download.
UV := .local/uv/bin/uv
UV_ENV := UV_PREVIEW_FEATURES=package-conflicts UV_PYTHON_DOWNLOADS=never
LOCK_FILES := uv.lock layers/dependencies/requirements.txt layers/dependencies/requirements-postgres.txt

# checkov (a template scanner nobody here wrote) in a venv of its own: its pins (boto3 1.35, packaging
# 23...) conflict with the project's, so it never shares the project venv (tools/envs/checkov, locked
# in uv.lock).
CHECKOV_BIN := .local/checkov/bin/checkov

# Azurite (Microsoft's Azure Storage emulator), installed without root into .local/node with `npm ci`
# from tools/envs/azurite/package-lock.json.
AZURITE_BIN := .local/node/node_modules/.bin/azurite-blob
AZURITE_LOCK := tools/envs/azurite/package-lock.json
# Mermaid for the documentation site's diagrams, installed with `npm ci` from its own lock (no CDN).
MERMAID_JS := .local/docs-node/node_modules/mermaid/dist/mermaid.min.js

.PHONY: help venv lock lock-check upgrade registry azurite chromium lambda-runtime lint format typecheck template security test package-check docs docs-serve check build deploy clean run invoke bench bench-sync bench-verifier load mutate

help:
	@echo "make run            the service locally on 127.0.0.1:$(PORT) (PORT=...): moto stand-ins, demo data, real handler"
	@echo "make invoke         one event through the handler against the local stack (EVENT=$(EVENT))"
	@echo "make chromium       headless Chromium for the browser tests (apt-get, when root)"
	@echo "make registry       unpack CNCF distribution (Debian docker-registry) into $(REGISTRY_DIR), no root"
	@echo "make azurite        install Azurite (npm) into .local/node, no root"
	@echo "make venv           create $(VENV) with exactly uv.lock's '.[dev]' (uv sync --locked)"
	@echo "make lock           re-resolve uv.lock after a pyproject.toml change; derive the layers' requirements"
	@echo "make upgrade        bump everything to its newest allowed version, re-lock, make check"
	@echo "make check          lint typecheck template security test package-check docs (the full gate, as in CI)"
	@echo "make lint           ruff check + ruff format --check on $(SOURCES)"
	@echo "make format         ruff format + ruff check --fix"
	@echo "make typecheck      mypy (strict) on the package and scripts"
	@echo "make template       cfn-lint + sam validate --lint"
	@echo "make security       bandit on functions/ (medium+ fails) + cfn-lint least-privilege rule E9101 + checkov"
	@echo "make test           pytest (PYTEST_ARGS=...)"
	@echo "make package-check  sam build into a temp dir, report sizes, check the artifacts"
	@echo "make docs           the documentation site (mkdocs.yml, docs/) built --strict into site/: a broken link fails"
	@echo "make docs-serve     preview the site on 127.0.0.1:$(DOCS_PORT) (DOCS_PORT=...), rebuilt on every change"
	@echo "make lambda-runtime tests on CPython 3.13 (x86_64 chroot); sam build's output on emulated arm64 3.13 (root)"
	@echo "make bench          benchmarks against moto on loopback (~4 min): prints tables, writes BENCHMARKS.md"
	@echo "make bench-sync     the Chainloop sync: 10,000 and 100,000 mappings, real PostgreSQL, moto (~5 min): BENCHMARKS.md §8"
	@echo "make bench-verifier the verifier: throughput and memory at 1 MiB to 1 GiB, the first request after it (~4 min): BENCHMARKS.md §9"
	@echo "make mutate         mutation testing (cosmic-ray, ~2 h): proof/classification must kill all; logic/, tokens, links scores"
	@echo "make load           the local HTTP server under a bounded concurrent load (~45 s): errors, p50/p99, memory (LOAD_ARGS=...)"
	@echo "make build          sam build into .aws-sam/build, with CPython 3.13 byte code (LAMBDA_PYTHON=...)"
	@echo "make deploy         make build, ask JwtIssuer/JwtAudience once (samconfig.toml), sam deploy $(DEPLOY_ARGS)"
	@echo "make clean          remove build output and tool caches"

venv: $(VENV)/.dev-installed

# Exactly the lock: --locked fails (instead of re-resolving) when uv.lock is stale against pyproject.toml.
$(VENV)/.dev-installed: pyproject.toml uv.lock $(UV)
	$(UV_ENV) UV_PROJECT_ENVIRONMENT="$(VENV)" "$(UV)" sync --quiet --locked --extra dev --python "$(BOOTSTRAP_PYTHON)"
	touch "$@"

$(UV): tools/envs/uv-requirements.txt
	test -x .local/uv/bin/python || "$(BOOTSTRAP_PYTHON)" -m venv .local/uv
	.local/uv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes \
		-r tools/envs/uv-requirements.txt
	touch "$@"

lock: $(UV)
	$(UV_ENV) "$(UV)" lock
	$(MAKE) --no-print-directory venv
	"$(BIN)/python" -m scripts.layer_requirements

# CI's first step: a lock that no longer matches pyproject.toml fails the run with one line.
lock-check: $(UV)
	@$(UV_ENV) "$(UV)" lock --check --quiet 2>/dev/null \
		|| { echo "uv.lock is stale against pyproject.toml: run \`make lock\` and commit uv.lock" >&2; exit 1; }

upgrade: $(UV)
	$(UV_ENV) "$(UV)" lock --upgrade
	$(MAKE) --no-print-directory venv
	"$(BIN)/python" -m scripts.layer_requirements
	$(MAKE) --no-print-directory check

lint:
	"$(BIN)/ruff" check $(SOURCES)
	"$(BIN)/ruff" format --check $(SOURCES)

format:
	"$(BIN)/ruff" format $(SOURCES)
	"$(BIN)/ruff" check --fix $(SOURCES)

typecheck:
	"$(BIN)/mypy"
	"$(BIN)/mypy" scripts
	"$(BIN)/mypy" benchmarks
	"$(BIN)/mypy" layers/dependencies/slim_botocore.py

template:
	"$(BIN)/cfn-lint" template.yaml
	AWS_EC2_METADATA_DISABLED=true "$(BIN)/sam" validate --lint --template-file template.yaml --region $(VALIDATE_REGION)

# Static security checks: bandit (config in pyproject.toml), the template's least privilege on tables,
# secrets and KMS keys (cfn-lint custom rule E9101 in scripts/cfnlint_rules/), and checkov on the
# template: any failed check fails; each check the template does not follow is skipped in the template
# itself (Metadata: checkov: skip:) with the reason (README "Security scan").
security: $(CHECKOV_BIN)
	"$(BIN)/bandit" -c pyproject.toml -r functions --severity-level medium --quiet
	"$(BIN)/cfn-lint" template.yaml --append-rules scripts/cfnlint_rules
	"$(CHECKOV_BIN)" --file template.yaml --framework cloudformation --compact --quiet --skip-download

$(CHECKOV_BIN): uv.lock $(UV)
	$(UV_ENV) UV_PROJECT_ENVIRONMENT=.local/checkov "$(UV)" sync --quiet --locked --package checkov-env \
		--python "$(BOOTSTRAP_PYTHON)"
	test -x "$@" && touch "$@"

test:
	"$(BIN)/pytest" $(PYTEST_ARGS)

package-check:
	"$(BIN)/python" -m scripts.check_package

# The documentation site (MkDocs Material): --strict turns every warning (a broken link, a page missing
# from the nav) into a failure. Nothing is fetched at build time (mkdocs.yml says how). NO_MKDOCS_2_WARNING
# silences Material's end-of-life banner.
DOCS_PORT ?= 8000

docs: venv $(MERMAID_JS)
	NO_MKDOCS_2_WARNING=1 "$(BIN)/mkdocs" build --strict --site-dir site

docs-serve: venv $(MERMAID_JS)
	NO_MKDOCS_2_WARNING=1 "$(BIN)/mkdocs" serve --strict --dev-addr 127.0.0.1:$(DOCS_PORT)

registry: $(REGISTRY_BIN)

$(REGISTRY_BIN):
	mkdir -p "$(REGISTRY_DIR)/deb"
	@# apt-get download needs a package list; refresh it once if it does not know the package
	cd "$(REGISTRY_DIR)/deb" && { apt-get download docker-registry 2>/dev/null \
		|| { apt-get update -qq && apt-get download docker-registry; }; }
	dpkg-deb -x "$$(ls "$(REGISTRY_DIR)"/deb/docker-registry_*.deb | head -n 1)" "$(REGISTRY_DIR)"
	test -x "$@"
	"$@" --version

azurite: $(AZURITE_BIN)

$(AZURITE_BIN): $(AZURITE_LOCK)
	mkdir -p .local/node
	cp tools/envs/azurite/package.json $(AZURITE_LOCK) .local/node/
	npm ci --prefix .local/node --no-audit --no-fund --loglevel=error
	test -x "$@" && touch "$@"

$(MERMAID_JS): tools/envs/docs/package-lock.json
	mkdir -p .local/docs-node
	cp tools/envs/docs/package.json tools/envs/docs/package-lock.json .local/docs-node/
	npm ci --prefix .local/docs-node --no-audit --no-fund --loglevel=error
	test -f "$@" && touch "$@"

# Headless Chromium (Debian's chromium) for the browser tests (tests/local/test_browser.py): installed by
# apt-get when missing and root; otherwise those tests say what is missing (and fail under CI).
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null \
		&& { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; } \
		|| echo "chromium is missing and cannot be installed here (not root): apt-get install chromium"
	@command -v chromium >/dev/null && chromium --version || true

check: venv registry azurite chromium $(MERMAID_JS)
	$(MAKE) lint typecheck template security test package-check docs

# CI, after check (root; chroots cached in .local/lambda-runtime): the unit and scenario tests on Debian
# trixie's CPython 3.13, and sam build's function + layers on 3.13 for arm64 under qemu-user, serving
# S3, OCI and Azure requests and a Chainloop sync against cas-local run (scripts/lambda_runtime).
# LAMBDA_RUNTIME_ARGS=--fresh rebuilds the chroots; --part x86_64|arm64; --tests PATH...
lambda-runtime: venv registry azurite
	"$(BIN)/python" -m scripts.lambda_runtime $(LAMBDA_RUNTIME_ARGS)

# Not a test, not in CI: calls per request, latency, cold start, body mode, cost (benchmarks/run.py).
bench: venv
	"$(BIN)/python" -m benchmarks.run $(BENCH_ARGS)

# Not a test, not in CI: the Chainloop sync at scale (benchmarks/chainloop_sync.py, BENCH_SYNC_ARGS=...).
bench-sync: venv
	"$(BIN)/python" -m benchmarks.chainloop_sync $(BENCH_SYNC_ARGS)

# Not a test, not in CI: the verifier (throughput, memory, the first request after it; BENCH_VERIFIER_ARGS=...).
bench-verifier: venv
	"$(BIN)/python" -m benchmarks.verifier $(BENCH_VERIFIER_ARGS)

# Not in CI (slow): mutation testing with cosmic-ray (its own venv, .local/cosmic-ray) on a copy of the
# last commit. proof: every mutant of the proof and classification functions must be killed (exit 1
# otherwise); logic: the score of logic/ on a fixed 20 % sample (MUTATE_SAMPLE=1 for all of it).
COSMIC_RAY := .local/cosmic-ray/bin/cosmic-ray
MUTATE_SAMPLE ?= 0.2

mutate: venv $(COSMIC_RAY)
	.local/cosmic-ray/bin/python mutation/run.py proof
	.local/cosmic-ray/bin/python mutation/run.py logic --sample $(MUTATE_SAMPLE)
	.local/cosmic-ray/bin/python mutation/run.py tokens
	.local/cosmic-ray/bin/python mutation/run.py links

$(COSMIC_RAY): uv.lock $(UV)
	$(UV_ENV) UV_PROJECT_ENVIRONMENT=.local/cosmic-ray "$(UV)" sync --quiet --locked --package cosmic-ray-env \
		--python "$(BOOTSTRAP_PYTHON)"
	test -x "$@" && touch "$@"

# Not in CI (tests/local/test_load.py runs it small): cas-local run on 127.0.0.1 under 8 clients, 2,000
# requests or 30 s; exit 1 on an error, a lost request or RSS growth (benchmarks/load.py).
# LOAD_ARGS=--write-docs also writes the figures into docs/reliability.md.
load: venv
	"$(BIN)/python" -m benchmarks.load $(LOAD_ARGS)

# The local stack (tools/cas_local): moto for DynamoDB + Secrets Manager and S3 + IAM (IAM auth on), a
# storage gateway for presigned URLs, the tables of template.yaml, the demo data, the handler over HTTP.
run: venv
	@# Azurite for the Azure demo when Node is there; without it the demo says what is missing
	@$(MAKE) --no-print-directory azurite >/dev/null 2>&1 || echo "make run: Azurite not installed (npm missing?): no Azure demo"
	"$(BIN)/cas-local" run --port $(PORT)

invoke: venv
	@"$(BIN)/cas-local" invoke "$(EVENT)"

# sam build, then the byte code of Lambda's CPython 3.13 for every function and layer (scripts/bytecode.py:
# python3.13 on PATH, LAMBDA_PYTHON=..., or make lambda-runtime's chroot; without one it says so).
build: venv
	"$(BIN)/sam" build
	"$(BIN)/python" -m scripts.bytecode .aws-sam/build

# Never a silent slow artifact: an artifact without 3.13 byte code deploys only with ALLOW_NO_BYTECODE=1.
deploy: build
	test "$(ALLOW_NO_BYTECODE)" = 1 || "$(BIN)/python" -m scripts.bytecode .aws-sam/build --check-only
	@# asks only what has no default (JwtIssuer, JwtAudience), once, into samconfig.toml; the rest keep
	@# their defaults (docs/deploying.md, Parameters). DEPLOY_ARGS="--guided" asks everything, as SAM does.
	"$(BIN)/python" -m scripts.deploy_params $(DEPLOY_ARGS)
	"$(BIN)/sam" deploy $(DEPLOY_ARGS)

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache site
