VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: check lint types test format

check: lint types test

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types:
	$(BIN)/mypy
	$(BIN)/mypy tests bench

test:
	$(BIN)/pytest

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
