# Two commands on a fresh machine:
#   make run    install what running needs, fetch the local model (unless HF_TOKEN is set; offline
#               it says so and goes on) and start the service on 127.0.0.1:8000 (reads .env /
#               the environment; with no configuration: the web page, the API and the CLI with
#               the local model; with the Supabase settings: the bucket pipeline too)
#   make test   install everything (test tools included) and run lint + the test suite
# Every install takes its versions from constraints.txt (the versions the tests passed with).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := constraints.txt
# pip shows what it downloads and installs as it goes (minutes on a fresh machine)
PIP := $(BIN)/pip install --progress-bar on --constraint $(CONSTRAINTS)
# torch first, pinned by constraints.txt (2.13.0), from PyTorch's CPU wheels where that index
# answers (PyPI's Linux wheel is the CUDA build, gigabytes more); where it cannot be reached,
# pip gives up on it at once (no retries) and takes the pinned wheel from PyPI or a wheel cache.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# the model `make model` puts in the Hugging Face cache (empty: the configured local model)
MODEL ?=

.PHONY: setup run test lint bench model constraints schema-snapshot mutate

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

# What running needs: the service, the web page and the local model (no test tools).
$(VENV)/.run-installed: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(PIP) --retries 0 --timeout 10 $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) torch
	$(PIP) -e '.[local,ui]'
	touch $@

# Everything, test tools included.
$(VENV)/.dev-installed: $(VENV)/.run-installed
	$(PIP) -e '.[local,ui,dev]'
	touch $@

setup: $(VENV)/.dev-installed

# The local model first (with a progress bar; offline: one line, and the service starts
# without it), then the service. The service itself never downloads.
run: $(VENV)/.run-installed
	@$(BIN)/captioner fetch-model || true
	$(BIN)/captioner serve

# Download the local model (or MODEL) into the Hugging Face cache (about 1 GB for BLIP-base).
# Not needed with HF_TOKEN (hosted inference).
model: $(VENV)/.run-installed
	$(BIN)/captioner fetch-model $(MODEL)

test: $(VENV)/.dev-installed
	scripts/install-browser.sh
	$(BIN)/ruff check app tests bench scripts
	$(BIN)/ruff format --check app tests bench scripts
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check app tests bench scripts
	$(BIN)/ruff format --check app tests bench scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

# Mutation testing of the core guarantees (not in CI; tens of minutes): a table of module,
# mutants, killed, survived, also written to docs/MUTATION-RUN.md (see docs/MUTATION.md)
mutate: $(VENV)/.dev-installed
	$(PIP) -e '.[local,ui,dev,mutate]'
	$(BIN)/python scripts/mutate.py

bench: $(VENV)/.dev-installed
	$(BIN)/python -m bench

# after changing migrations/: refresh docs/schema.sql, the pg_dump of the schema they make
schema-snapshot: $(VENV)/.dev-installed
	UPDATE_SCHEMA_SNAPSHOT=1 $(BIN)/python -m pytest -q tests/integration/test_schema_snapshot.py

# after changing dependencies: pin what the (tested) virtualenv holds
constraints:
	scripts/freeze-constraints.sh $(BIN)/python > $(CONSTRAINTS)
