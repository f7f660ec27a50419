#!/usr/bin/env bash
# Sobe o pipeline: instala as dependências (.venv), captura o período mais recente no
# PostgreSQL do .env e o materializa (dbt). Argumentos extras vão para run/capture.py.
set -euo pipefail
cd "$(dirname "$0")"

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  echo "Docker disponível, mas o modo servidor Prefect ainda não está empacotado: usando o modo local."
else
  echo "Docker não disponível nesta máquina: rodando em modo local (flow.run())."
fi

make --no-print-directory venv
.venv/bin/python run/capture.py "$@"
.venv/bin/python run/materialize.py
