#!/usr/bin/env bash
# Processo principal do contêiner (modo servidor): registra os flows, inicia o agente
# Prefect e o app de resultados; termina se um dos dois terminar.
set -euo pipefail
cd "$(dirname "$0")/.."

prefect backend server
for _ in $(seq 60); do
  python run/register.py && break
  echo "Prefect Server ainda não responde; nova tentativa em 5 s..."
  sleep 5
done
prefect agent local start --label adm_cgu_terceirizados --no-hostname-label &
# App de resultados num servidor WSGI de produção (waitress), não no servidor de
# desenvolvimento do Werkzeug; run/results.py fica para uso local.
waitress-serve --listen="${RESULTS_HOST:-0.0.0.0}:${RESULTS_PORT:-8050}" --threads=8 --call pipelines.results.app:create_server &
wait -n
