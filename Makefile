# feishui: `make help` lists the targets. `make demo` and `make test` work on a fresh machine
# with only Python 3.11+ and make: they create .venv and install into it when needed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PG_TEST_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/feishui_test

.DEFAULT_GOAL := help
.PHONY: help install demo serve test test-fast lint format check-migrations bench audit lock clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install feishui with its dev tools

demo: $(STAMP) ## run the demo on the embedded default (SQLite under ./var, jobs in-process)
	$(BIN)/feishui demo

serve: $(STAMP) ## serve the API and portal on http://127.0.0.1:8000 (embedded default)
	$(BIN)/feishui db upgrade && $(BIN)/feishui serve

test: $(STAMP) ## run the whole suite: unit, integration (SQLite, PostgreSQL, Redis), e2e
	FEISHUI_TEST_PG_URL=$(PG_TEST_URL) $(BIN)/pytest -q
	$(MAKE) --no-print-directory check-migrations

test-fast: $(STAMP) ## unit tests only (no services needed)
	$(BIN)/pytest -q tests/unit

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .

check-migrations: $(STAMP) ## alembic check: models and migrations agree (SQLite and PostgreSQL)
	$(BIN)/python -m tests.check_migrations $(PG_TEST_URL)

bench: $(STAMP) ## run the benchmarks (PostgreSQL); see bench/README.md
	$(BIN)/python bench/ledger_post.py

audit: $(STAMP) ## known vulnerabilities and yanks in requirements.lock (PyPI's advisories; see .ci/audit_deps.py)
	$(BIN)/python .ci/audit_deps.py requirements.lock

lock: ## re-resolve pyproject.toml's dependencies (dev extra included) into requirements.lock
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet -e '.[dev]'
	{ sed -n '1,2p' requirements.lock; .lock-venv/bin/pip freeze --exclude-editable; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lock-venv

clean: ## remove the venv and local data (var/)
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
