VENV ?= .venv
BIN := $(VENV)/bin
# Test workers: the suite is bound by waits on real services, not by the 2 cores.
PYTEST_WORKERS ?= 3

.PHONY: check lint types test format

check: lint types test

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types:
	$(BIN)/mypy
	$(BIN)/mypy tests bench

test:
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
