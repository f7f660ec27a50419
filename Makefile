# Set-up and common commands. A fresh machine needs only `make test` or `./start.sh`.
PYTHON ?= python3.11
VENV := .venv
REQUIREMENTS := requirements/start.txt requirements/results.txt requirements/test.txt

SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: venv browser test capture materialize

$(VENV)/.installed: $(REQUIREMENTS)
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 não encontrado ($(PYTHON))."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements/test.txt
	touch $@

venv: $(VENV)/.installed

# Debian's Chromium for the end-to-end test of the Dash app.
browser:
	@command -v chromium >/dev/null || { echo "Instalando o Chromium do Debian (teste de navegador)..."; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

test: venv browser
	$(VENV)/bin/python -m pytest

capture: venv
	$(VENV)/bin/python run/capture.py
