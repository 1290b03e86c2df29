# One entry point for everything: `make run` serves on SQLite, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test test-postgres lint format openapi check-openapi check-migrations check fuzz bench bench-notify bench-quality bench-export bench-import

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed

DEMO ?= 1
BENCH_DB ?= both

run: install  ## create the venv, migrate the SQLite default, load the demo clinic if empty (DEMO=0: no), serve on :8000
	$(BIN)/cocm migrate
	@[ "$(DEMO)" = 0 ] || $(BIN)/cocm demo --if-empty
	$(BIN)/cocm serve --host $(HOST) --port $(PORT)

test: install  ## the whole suite; COCM_TEST_DATABASE_URL=postgresql://... runs it on PostgreSQL
	$(BIN)/pytest

test-postgres: install
	COCM_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres $(BIN)/pytest

lint: install
	$(BIN)/ruff check app tests migrations benchmarks
	$(BIN)/ruff format --check app tests migrations benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/hadolint Dockerfile

format: install
	$(BIN)/ruff check --fix app tests migrations benchmarks
	$(BIN)/ruff format app tests migrations benchmarks

openapi: install  ## regenerate openapi/openapi.json from the app
	$(BIN)/python -m app.openapi openapi/openapi.json

check-openapi: install
	$(BIN)/python -m app.openapi --check openapi/openapi.json

check-migrations: install  ## a model change without a migration fails here
	rm -f .alembic-check.db
	COCM_DATABASE_URL=sqlite:///./.alembic-check.db $(BIN)/alembic upgrade head
	COCM_DATABASE_URL=sqlite:///./.alembic-check.db $(BIN)/alembic check
	rm -f .alembic-check.db*

check: lint check-openapi check-migrations

fuzz: install  ## a longer schemathesis + Hypothesis run than the one in `make test`
	COCM_FUZZ_EXAMPLES=500 $(BIN)/pytest tests/test_fuzz.py tests/test_core_fuzz.py

bench: install  ## wrk against uvicorn subprocesses -> benchmarks/RESULTS.md (BENCH_DB=sqlite|postgresql|both)
	$(BIN)/python benchmarks/run.py --database $(BENCH_DB)
	$(BIN)/python benchmarks/notify.py --database $(BENCH_DB)
	$(BIN)/python benchmarks/quality.py --database $(BENCH_DB)
	$(BIN)/python benchmarks/export.py --database $(BENCH_DB)
	$(BIN)/python benchmarks/importing.py --database $(BENCH_DB)

bench-notify: install  ## commit-to-receiver latency of safety alerts -> benchmarks/RESULTS.md
	$(BIN)/python benchmarks/notify.py --database $(BENCH_DB)

bench-quality: install  ## the four quality measures for 1,000 and 10,000 patients -> benchmarks/RESULTS.md
	$(BIN)/python benchmarks/quality.py --database $(BENCH_DB)

bench-export: install  ## Bulk Data $export of 10,000 and 100,000 patients -> benchmarks/RESULTS.md
	$(BIN)/python benchmarks/export.py --database $(BENCH_DB)

bench-import: install  ## cocm import of 100,000 patients' history -> benchmarks/RESULTS.md
	$(BIN)/python benchmarks/importing.py --database $(BENCH_DB)
