# Boomerang — every command a newcomer needs. Each target does its own setup.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOTSTRAP ?= python3
UV_VERSION := 0.13.9
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KAFKA := $(PY) -m services.tools.local_kafka
PG := $(PY) -m services.tools.local_postgres

export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help setup browser lock kafka-up kafka-down kafka-clean kafka-status pg-server pg-up pg-down pg-clean pg-status topics demo sample chaos test test-chaos test-long test-unit \
        test-integration bench lint schemas-check schemas-publish clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv and install the locked packages (fast when nothing changed)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	@$(VENV)/bin/pip --version >/dev/null
	@test -x $(VENV)/bin/uv || $(VENV)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip sync --python $(PY) --require-hashes requirements.lock
	$(VENV)/bin/uv pip install --python $(PY) --no-deps -e .
	@touch $(STAMP)

lock: ## re-resolve requirements.lock from pyproject.toml
	@test -x $(VENV)/bin/uv || $(MAKE) setup
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements.lock

kafka-up: setup ## start the local KRaft broker (downloads jars first time); prints the bootstrap address
	@$(KAFKA) up $(if $(NODES),--nodes $(NODES))

kafka-down: setup ## stop the local broker (by its pid file)
	@$(KAFKA) down

kafka-clean: setup ## stop the local broker and wipe its data
	@$(KAFKA) down --wipe

kafka-status: setup ## is the local broker running, and where
	@$(KAFKA) status

pg-server: ## install Debian's PostgreSQL 15 server when it is missing (as root; CI runs as root)
	@test -x /usr/lib/postgresql/15/bin/pg_ctl || command -v pg_ctl >/dev/null || [ -n "$$DATABASE_URL" ] \
	  || { [ "$$(id -u)" = 0 ] && export DEBIAN_FRONTEND=noninteractive \
	       && { apt-get install -y -q postgresql-15 >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q postgresql-15 >/dev/null; }; }; } \
	  || { echo "PostgreSQL 15 is not installed: apt-get install postgresql-15, or set DATABASE_URL" >&2; exit 1; }

pg-up: setup pg-server ## start the local PostgreSQL cluster under .cache/ (initialised the first time); prints its DATABASE_URL
	@$(PG) up

pg-down: setup ## stop the local PostgreSQL cluster
	@$(PG) down

pg-clean: setup ## stop the local PostgreSQL cluster and delete its data
	@$(PG) down --wipe

pg-status: setup ## is the local PostgreSQL cluster running, and where
	@$(PG) status

topics: kafka-up ## create the declared topics (idempotent) and report drift
	@$(PY) -m services.cli topics

demo: setup ## the main job: broker, topics, partners and seven services (risk among them); N returns (N=50) through the whole loop; INSTANCES=2 runs two of each service; KEEP=1 leaves it running; DRILL=consumer-bug stages the runbook's first incident
	@$(PY) -m services.tools.local_stack.demo $(if $(N),--returns $(N)) $(if $(INSTANCES),--instances $(INSTANCES)) $(if $(SEED),--seed $(SEED)) $(if $(KEEP),--keep-running) $(if $(DRILL),--drill $(DRILL))

sample: kafka-up ## send one sample return's events and read them back (no services)
	@$(PY) -m services.cli topics
	@$(PY) -m services.tools.local_stack.sample_roundtrip

chaos: setup ## M returns (1000) through real processes while services, broker and partners fail; SEED=, NODES=3, INSTANCES=2
	@$(PY) -m services.tools.local_stack.chaos $(if $(M),--returns $(M)) $(if $(SEED),--seed $(SEED)) $(if $(NODES),--nodes $(NODES)) $(if $(INSTANCES),--instances $(INSTANCES))

bench: setup ## open-loop sweep of the whole loop (25-300/s, then 2x the max sustained) vs a raw Kafka pipe with its record budget (<15 min; QUICK=1 <3 min; LEVELS=25,50 LABEL=name RAW_BUDGET=target ISOLATE_LOAD=1: generator and doubles on a core of their own; SETTLEMENT=1: settlement and PostgreSQL in the loop); never part of `make test`
	@$(PY) -m tests.bench.run_bench $(if $(QUICK),--quick) $(if $(SETTLEMENT),--settlement) $(if $(INSTANCES),--instances $(INSTANCES)) $(if $(LEVELS),--levels $(LEVELS)) $(if $(LABEL),--label $(LABEL)) $(if $(RAW_BUDGET),--raw-budget $(RAW_BUDGET)) $(if $(ISOLATE_LOAD),--isolate-load $(ISOLATE_LOAD))

test: test-unit test-integration ## the suite: unit tests, then tests against a real broker (the fuzzing run last); the chaos run is `make test-chaos` (CI runs both)

test-unit: setup ## fast tests, no Kafka
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: setup browser ## tests against a real broker (started if needed, stopped if started here)
	$(PY) -m pytest tests/integration tests/e2e -m "not chaos and not long" --durations=8 $(PYTEST_ARGS)

test-long: setup ## long drills on a broker of their own (the 4 → 12 partitions migration, ~2 min; out of `make test` to keep it under 20 min; .ci/run runs it)
	$(PY) -m pytest tests/e2e -m long $(PYTEST_ARGS)

test-chaos: setup ## the 200-return chaos run through real processes (~4 min; kept out of `make test` to keep it under 20 min; .ci/run runs it)
	$(PY) -m pytest tests/e2e/test_chaos.py -m chaos $(PYTEST_ARGS)

# the dashboard's browser test: Debian's chromium and its chromedriver, and axe-core from the
# npm registry (checked against its pinned digest, kept under .cache)
AXE_VERSION := 4.11.4
AXE_SHA256 := fb83a4378d978ecb7d2dae48a3a3778a84c971ac692f3afd45d714fba89c0f0d
AXE := .cache/axe-core-$(AXE_VERSION)/axe.min.js

browser: $(AXE) ## chromium and chromedriver (Debian's, installed as root when missing) and axe-core, for the dashboard's browser test
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null \
	  || { [ "$$(id -u)" = 0 ] && export DEBIAN_FRONTEND=noninteractive \
	       && { apt-get install -y -q chromium chromium-driver >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }; }; } \
	  || { echo "chromium is not installed: apt-get install chromium chromium-driver" >&2; exit 1; }

$(AXE):
	@mkdir -p $(@D)
	@cd $(@D) && npm pack --silent axe-core@$(AXE_VERSION) >/dev/null \
	  && tar -xzf axe-core-$(AXE_VERSION).tgz package/axe.min.js && mv package/axe.min.js axe.min.js.part \
	  && rmdir package && rm axe-core-$(AXE_VERSION).tgz
	@echo "$(AXE_SHA256)  $@.part" | sha256sum --check --quiet && mv $@.part $@

lint: setup ## ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

schemas-check: setup ## fail if a schema is not backward+forward compatible with its last published version
	$(PY) -m services.eventing.schema_evolution check

schemas-publish: setup ## record the current schemas as a new published version in schemas/history/
	$(PY) -m services.eventing.schema_evolution publish

clean: kafka-clean pg-clean ## remove the venv and caches (keeps the Maven cache)
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
