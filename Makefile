# One entry point for everything: `make run` serves on SQLite, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test test-postgres lint format openapi check-openapi check-migrations check ci

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed

run: install  ## create the venv, migrate the SQLite default, serve on :8000 (docs at /docs)
	$(BIN)/cocm migrate
	$(BIN)/cocm serve --host $(HOST) --port $(PORT)

test: install  ## the whole suite; COCM_TEST_DATABASE_URL=postgresql://... runs it on PostgreSQL
	$(BIN)/pytest

test-postgres: install
	COCM_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres $(BIN)/pytest

lint: install
	$(BIN)/ruff check app tests migrations benchmarks
	$(BIN)/ruff format --check app tests migrations benchmarks
	$(BIN)/mypy

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
