# The README's commands. Every target sets itself up: a fresh clone needs nothing else.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

export POLO_HOME ?= $(CURDIR)/.polo
export DAGSTER_HOME ?= $(POLO_HOME)/dagster

.PHONY: setup run test dev bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	@cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

setup: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	@$(BIN)/polo migrate

run: setup
	@$(BIN)/polo run

test: $(STAMP)
	$(BIN)/python -m pytest

dev: setup
	$(BIN)/dg dev

bench: setup
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) $(POLO_HOME)
