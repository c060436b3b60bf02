# Everything a run needs is installed here, into .venv, from the project's own files.
SHELL := /bin/bash
PYTHON_313 := $(shell command -v python3.13 2>/dev/null || pyenv which python3.13 2>/dev/null)
VENV := .venv
STAMP := $(VENV)/.installed
export SAM_CLI_TELEMETRY := 0
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup demo test test-fast bench lint clean browser

setup: $(STAMP)

$(STAMP): requirements-dev.txt layers/shared/requirements.txt pyproject.toml
	@test -n "$(PYTHON_313)" || { echo "python3.13 not found: install it (pyenv install 3.13) and retry" >&2; exit 1; }
	@echo "setup: creating $(VENV) with $$($(PYTHON_313) --version)"
	@$(PYTHON_313) -m venv $(VENV)
	@$(VENV)/bin/pip install --quiet --upgrade pip
	@echo "setup: installing requirements-dev.txt (SAM CLI, moto, boto3, pyarrow, DuckDB, ...; 1-4 minutes the first time)"
	@$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	@# setuptools explains editable installs of a mapped package-dir in a warning block; nothing to act on.
	@echo "setup: installing tributary itself, editable"
	@PYTHONWARNINGS=ignore::UserWarning $(VENV)/bin/pip install --quiet --no-deps -e .
	@touch $(STAMP)
	@echo "setup: done; $(VENV)/bin has tributary, sam and pytest"

demo: $(STAMP)
	$(VENV)/bin/tributary demo

test: $(STAMP) browser
	$(VENV)/bin/ruff check .
	$(MAKE) --no-print-directory checkov
	$(VENV)/bin/pytest

# Everyday: everything but the tests marked slow (end to end, sam build, subprocess runs, the browser); about 2 minutes.
test-fast: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -m "not slow"

# The console's browser tests drive Debian's Chromium through Playwright (Playwright's own browser download
# is not reachable). As root it is installed here; otherwise those tests are skipped with the command to run.
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the browser tests (about a minute)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	  else echo "no chromium: the browser tests will be skipped (sudo apt-get install chromium)"; fi; }

# checkov pins old boto3/botocore, so it lives in a virtual environment of its own, never in .venv.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

$(CHECKOV_STAMP): requirements-checkov.txt
	@test -n "$(PYTHON_313)" || { echo "python3.13 not found: install it (pyenv install 3.13) and retry" >&2; exit 1; }
	$(PYTHON_313) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet -r requirements-checkov.txt
	touch $(CHECKOV_STAMP)

# The template's security scan: no failed check; each suppression is inline in template.yaml with its
# reason. --skip-download keeps it offline (no guideline links from Prisma Cloud).
.PHONY: checkov
checkov: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov --file template.yaml --framework cloudformation --compact --quiet --skip-download

bench: $(STAMP)
	$(VENV)/bin/python -m benchmarks

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/sam validate --lint

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .aws-sam .pytest_cache .ruff_cache .hypothesis
