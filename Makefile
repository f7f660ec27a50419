# Set-up and common commands. A fresh machine needs only `make test` or `./start.sh`.
PYTHON ?= python3.11
VENV := .venv
REQUIREMENTS := requirements/start.txt requirements/results.txt requirements/test.txt pyproject.toml

SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: venv tools lint test capture

$(VENV)/.installed: $(REQUIREMENTS)
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 não encontrado ($(PYTHON))."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements/test.txt
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed

# Debian packages the tests use: Chromium (end-to-end test of the Dash app) and shellcheck.
tools:
	@missing=""; command -v chromium >/dev/null || missing="$$missing chromium"; \
	  command -v shellcheck >/dev/null || missing="$$missing shellcheck"; \
	  if [ -n "$$missing" ]; then echo "Instalando do Debian:$$missing"; \
	    $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi

# Lint and formatting, with the rules chosen in pyproject.toml.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: venv tools lint
	$(VENV)/bin/python -m pytest

capture: venv
	$(VENV)/bin/python run/capture.py
