# Fleet Lockdown — two commands: `make demo` and `make test`. Needs only Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUNTIME := $(VENV)/.installed-runtime
STAMP_DEV := $(VENV)/.installed-dev
PIP_FLAGS := --disable-pip-version-check --quiet

.PHONY: demo test lint typecheck check pytest venv clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (set PYTHON=/path/to/python3.11)")'
	$(PYTHON) -m venv $(VENV)

$(STAMP_RUNTIME): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install $(PIP_FLAGS) -c constraints.txt -e .
	@touch $@

$(STAMP_DEV): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install $(PIP_FLAGS) -c constraints.txt -e '.[dev]'
	@touch $@ $(STAMP_RUNTIME)

venv: $(STAMP_DEV)

demo: $(STAMP_RUNTIME)
	$(BIN)/python -m config.demo

lint: $(STAMP_DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP_DEV)
	$(BIN)/mypy .

check: $(STAMP_DEV)
	$(BIN)/python manage.py check
	$(BIN)/python manage.py makemigrations --check --dry-run

pytest: $(STAMP_DEV)
	$(BIN)/pytest

test: lint typecheck check pytest

clean:
	rm -rf $(VENV) var
