# entrasync — developer commands. Each target creates what it needs from scratch.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: venv test lint format demo bench mutation sandbox clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

test: venv
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: venv
	@bash scripts/demo.sh

bench: venv
	$(BIN)/python -m bench.run

# Mutation test of plan.py, safety.py and normalize.py (docs/mutation.md); not part of test or CI.
mutation: venv
	$(BIN)/python scripts/mutation.py

sandbox: venv
	$(BIN)/entrasync sandbox serve --seed demo --state-dir sandbox-state --write-config sandbox-state/config.yaml

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis sandbox-state demo-state mutants
