# Everything a run needs is installed here, into .venv, from the project's own files.
SHELL := /bin/bash
PYTHON_313 := $(shell command -v python3.13 2>/dev/null || pyenv which python3.13 2>/dev/null)
VENV := .venv
STAMP := $(VENV)/.installed
export SAM_CLI_TELEMETRY := 0
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup demo test bench lint clean

setup: $(STAMP)

$(STAMP): requirements-dev.txt layers/shared/requirements.txt pyproject.toml
	@test -n "$(PYTHON_313)" || { echo "python3.13 not found: install it (pyenv install 3.13) and retry" >&2; exit 1; }
	$(PYTHON_313) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tributary demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

bench: $(STAMP)
	$(VENV)/bin/python -m benchmarks

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/sam validate --lint

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .ruff_cache .hypothesis
