# Two commands on a fresh machine:
#   make run    set up and run the service (reads .env / the environment)
#   make test   set up and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0

.PHONY: setup run test lint bench supabase-migrations

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

setup: $(BIN)/python
	# torch first, pinned: an unpinned torch would pull the CUDA build
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/pip install --quiet -e '.[local,ui,dev]'

run: setup
	$(BIN)/captioner serve

test: setup
	scripts/install-browser.sh
	$(BIN)/ruff check app tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check app tests bench
	$(BIN)/ruff format --check app tests bench
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m bench

# after changing migrations/: refresh their copies in supabase/migrations/ (Supabase CLI)
supabase-migrations:
	$(PYTHON) scripts/supabase_migrations.py
