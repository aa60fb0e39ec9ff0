# The two commands: `make run` serves with embedded defaults, `make test` runs the whole suite.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PG_TEST_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

.PHONY: run test test-sqlite test-postgres test-js lint format sync uv bench

uv:
	@command -v uv >/dev/null 2>&1 || test -x $(HOME)/.local/bin/uv || \
		(echo "installing uv..." && python3 -m pip install --user --quiet uv)

sync: uv
	@$(UV) sync --frozen --quiet

run: sync
	$(UV) run genapi migrate
	$(UV) run genapi serve

## Whole suite: Python tests on SQLite, then on PostgreSQL (skipped with a message when no
## server answers, failing under CI=true), then the front-end unit tests.
## The browser tests run in their own pytest process: Playwright's sync API keeps an event loop
## running in the main thread for as long as its browser lives.
test: sync test-sqlite test-postgres test-e2e test-js

test-sqlite:
	TEST_DB=sqlite $(UV) run pytest -q --ignore=tests/e2e $(PYTEST_ARGS)

test-postgres:
	TEST_DB=postgres TEST_DATABASE_URL=$(PG_TEST_URL) $(UV) run pytest -q --ignore=tests/e2e $(PYTEST_ARGS)

test-e2e:
	TEST_DB=sqlite $(UV) run pytest -q tests/e2e $(PYTEST_ARGS)

test-js:
	@if [ -d js_tests ]; then node --test js_tests/; fi

lint: sync
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy app

bench: sync
	$(UV) run python -m bench $(BENCH_ARGS)

format: sync
	$(UV) run ruff format .
	$(UV) run ruff check --fix .
