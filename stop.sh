#!/usr/bin/env bash
# Para o que start.sh iniciou. No modo local os flows terminam sozinhos: não há nada a parar.
set -euo pipefail
cd "$(dirname "$0")"

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 && [ -f docker-compose.yml ]; then
  docker compose down
else
  echo "Modo local: nenhum serviço em execução para parar."
fi
