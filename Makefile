# The README's commands. Every target sets itself up: a fresh clone needs only Python 3.11+ and make.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .venv-tools
UV := $(TOOLS)/bin/uv
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed-stamp

export POLO_HOME ?= $(CURDIR)/.polo
export DAGSTER_HOME ?= $(POLO_HOME)/dagster
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)

.PHONY: setup run test test-fast lint format dev bench docs screenshots clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The environment is exactly uv.lock (with the dev extra): `uv lock` after changing pyproject.toml's dependencies.
# Bytecode is compiled at install, as pip does: this workplace sets PYTHONDONTWRITEBYTECODE, so a module never
# compiled at install would be compiled again by every process (5 s for the Dagster stack).
$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --extra dev --python $(PYTHON) --compile-bytecode --quiet
	touch $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: config/dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	@cp config/dagster.yaml $(DAGSTER_HOME)/dagster.yaml

setup: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	@$(BIN)/polo migrate

run: setup
	@$(BIN)/polo run

# The whole suite, end-to-end tests included.
test: $(STAMP)
	$(BIN)/python -m pytest

# Everything but the end-to-end tests (marked e2e): the quick loop while changing code.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e"

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The Dagster UI (dg dev, port 3000), Polo's own pages and API (polo serve, port 8765) and its OTLP/HTTP trace receiver
# (polo otlp, port 4318) side by side; Ctrl-C stops them all.
# dg checks the active virtual environment against the project's, and names the code location from pyproject.toml.
dev: setup
	@trap 'kill 0' EXIT INT TERM; $(BIN)/polo serve & $(BIN)/polo otlp & \
	VIRTUAL_ENV=$(CURDIR)/$(VENV) PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dg dev

bench: setup
	$(BIN)/python -m bench.run

# Pictures of the Dagster UI over the sample world and of Polo's pages (the browser tests' walk) for docs/screenshots/
# (needs Debian's chromium and chromium-driver).
screenshots: run
	$(BIN)/python scripts/screenshots.py
	POLO_TEST_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest -q polo_pipelines_tests/test_browser.py

docs: $(STAMP)
	$(BIN)/python -m polo_pipelines.sources.docs

clean:
	rm -rf $(VENV) $(TOOLS) $(POLO_HOME)
