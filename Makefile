# chromadb-chart: the Helm chart and chromactl.
#   make run    the local stack (Chroma + gateway) on this machine
#   make test   install what the tests need, then run them all
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CHECKOV_VENV := .venvs/checkov
LEGACY_CHROMA_VENV := .venvs/chroma-0.6.3
#: Chroma 1.x's own client tests (the wheel's chromadb/test/, with the pytest they need), run
#: through the gateway by tests/gateway/test_chroma_client_suite.py
CLIENT_TESTS_VENV := .venvs/client-tests/.installed
#: Chroma 0.x venvs: the migration tests' writers, the old clients with their own tests and servers (0.6.3 is also the legacy server)
CHROMA_0X_VENVS := $(foreach v,0.4.14 0.5.23 0.6.3,.venvs/chroma-$(v)/.installed)
CHART  := charts/chromadb
PYTEST_ARGS ?=
# Test processes make test runs (pytest-xdist; tests/conftest.py keeps each file in one).
TEST_WORKERS ?= auto

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[test,chroma]'
	touch $@

$(CHECKOV_VENV)/.installed: requirements/checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q -r requirements/checkov.txt
	touch $@

# requirements/chroma-*.txt: Chroma 0.x servers this project builds images of (the legacy server);
# requirements/migrate/: others whose data directories the migration tests write, never imaged.
.venvs/chroma-%/.installed: requirements/chroma-%.txt
	test -x .venvs/chroma-$*/bin/python || $(PYTHON) -m venv .venvs/chroma-$*
	.venvs/chroma-$*/bin/pip install -q -r $<
	touch $@

.venvs/chroma-%/.installed: requirements/migrate/chroma-%.txt
	test -x .venvs/chroma-$*/bin/python || $(PYTHON) -m venv .venvs/chroma-$*
	.venvs/chroma-$*/bin/pip install -q -r $<
	touch $@

$(CLIENT_TESTS_VENV): requirements/client-tests.txt
	test -x .venvs/client-tests/bin/python || $(PYTHON) -m venv .venvs/client-tests
	.venvs/client-tests/bin/pip install -q -r $<
	touch $@

.PHONY: legacy-chroma
legacy-chroma: $(CHROMA_0X_VENVS) ## venvs with Chroma 0.4.14, 0.5.23 and 0.6.3 (the legacy server, migration and old-client tests)

.PHONY: system-deps
system-deps: ## the Debian packages the tests and image builds use (root or sudo)
	@scripts/install-system-deps.sh

.PHONY: deps
deps: $(BIN)/.installed $(CHECKOV_VENV)/.installed $(CHROMA_0X_VENVS) $(CLIENT_TESTS_VENV) system-deps ## install everything the tests need

.PHONY: images
images: system-deps ## build every image the chart and the tests run (buildah, stand-in bases; cached by input hash)
	$(PYTHON) scripts/images.py build --standins

.PHONY: audit
audit: $(BIN)/.installed ## known vulnerabilities in the released images' Python packages (pip-audit; needs PyPI's JSON API)
	$(BIN)/python scripts/images.py audit

.PHONY: test
# The virtualenvs download while the images build (network and CPU at once): on a new machine
# that is minutes less before the first test.
test: ## run every test (the README's second command)
	$(MAKE) --no-print-directory -j4 --output-sync=target deps images
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

.PHONY: test-fresh
test-fresh: ## make test on a fresh clone with its own empty image storage (before calling image, pod-runner or Makefile work done)
	scripts/fresh-machine.sh test

SHELL_SCRIPTS := .ci/run $(wildcard scripts/*.sh)

.PHONY: lint
lint: $(BIN)/.installed ## ruff, ruff format --check, mypy and shellcheck (also the pre-commit hooks)
	$(BIN)/ruff check src tests scripts bench
	$(BIN)/ruff format --check src tests scripts bench
	$(BIN)/mypy
	$(BIN)/shellcheck $(SHELL_SCRIPTS)

.PHONY: format
format: $(BIN)/.installed ## ruff format and the fixable ruff findings, in place
	$(BIN)/ruff format src tests scripts bench
	$(BIN)/ruff check --fix src tests scripts bench

.PHONY: docs
docs: $(BIN)/.installed ## regenerate the chart README table and values.schema.json from values.yaml
	$(BIN)/python scripts/chart_docs.py $(CHART)

.PHONY: dashboard
dashboard: $(BIN)/.installed ## regenerate the chart's Grafana dashboard (charts/chromadb/files/dashboard.json)
	$(BIN)/python scripts/dashboard.py

.PHONY: package
package: $(BIN)/.installed ## the chart archive and repository index.yaml under dist/ (MERGE=old index.yaml, URL=repo URL)
	$(BIN)/python scripts/package_chart.py $(CHART) --destination dist $(if $(URL),--url $(URL)) $(if $(MERGE),--merge $(MERGE))

.PHONY: dist
dist: $(BIN)/.installed ## chromactl's sdist and wheel under dist/python, checked as the release checks them
	$(BIN)/python scripts/python_dist.py build --outdir dist/python
	$(BIN)/python scripts/python_dist.py check dist/python

# Real-cluster steps (Docker, kind or minikube, kubectl, helm): docs/development.md.
KIND_STEPS := images namespace stage install backup-restore
.PHONY: kind $(addprefix kind-,$(KIND_STEPS))
kind: ## on a kind cluster: build and load images, restricted namespace, install + helm test, backup -> restore
	scripts/kind.sh all
$(addprefix kind-,$(KIND_STEPS)):
	scripts/kind.sh $(patsubst kind-%,%,$@)

.PHONY: run
run: $(BIN)/.installed ## start the local stack and print how to connect
	$(BIN)/chromactl up

.PHONY: lock
lock: $(BIN)/.installed ## re-pin every transitive dependency into constraints.txt
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

.PHONY: bench
bench: $(BIN)/.installed $(LEGACY_CHROMA_VENV)/.installed ## run the benchmarks and write their results under bench/
	$(BIN)/pip install -q -c constraints.txt -e '.[bench]'
	$(BIN)/python bench/backup/run.py
	$(BIN)/python bench/gateway/run.py
	$(BIN)/python bench/gateway/cpu.py
	$(BIN)/python bench/gateway/writes.py
	$(BIN)/python bench/gateway/floor.py
	$(BIN)/python bench/gateway/feature_cost.py --feature console
	$(BIN)/python bench/gateway/feature_cost.py --feature legacy_clients
	$(BIN)/python bench/backup/hold.py
	$(BIN)/python bench/backup/continuous.py
	$(BIN)/python bench/scale-out/sizing.py
	$(BIN)/python bench/ha/run.py

.PHONY: console-screenshots
console-screenshots: $(BIN)/.installed system-deps ## the console's browser tests, writing the screenshots of docs/console.md
	CONSOLE_SCREENSHOTS=docs/console $(BIN)/pytest -q tests/console

.PHONY: soak
soak: $(BIN)/.installed $(CLIENT_TESTS_VENV) $(CHROMA_0X_VENVS) ## long load (5 min, concurrency 64) and Chroma-fault runs through the gateway; writes bench/soak/; Chroma's whole client test suite, and 0.4's and 0.5's, through the gateway
	$(BIN)/python bench/soak/run.py
	$(BIN)/python bench/soak/limits.py
	CHROMA_CLIENT_SUITE=full $(BIN)/pytest -p no:cacheprovider tests/gateway/test_chroma_client_suite.py tests/gateway/test_legacy_client_suites.py
