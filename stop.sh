#!/usr/bin/env bash
# Para o que o start.sh iniciou: contêiner e Prefect Server (modo Docker), ou agendador,
# app de resultados e cluster PostgreSQL local (modo local).
set -euo pipefail
cd "$(dirname "$0")"
RUN_DIR="${RUN_DIR:-$PWD/.run}"

if [ ! -d "$RUN_DIR" ]; then
  echo "Nada a parar: start.sh não foi executado aqui."
  exit 0
fi

if [ "$(cat "$RUN_DIR/mode" 2>/dev/null)" = "docker" ]; then
  docker rm -f adm_cgu_terceirizados >/dev/null 2>&1 || true
  .venv/bin/prefect server stop || true
  echo "Contêiner e Prefect Server parados."
fi

for name in results scheduler; do
  pid_file="$RUN_DIR/$name.pid"
  if [ -f "$pid_file" ]; then
    pid=$(cat "$pid_file")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      echo "Parado: $name (pid $pid)."
    fi
    rm -f "$pid_file"
  fi
done

if [ -f "$RUN_DIR/local_postgres" ]; then
  { read -r bindir; read -r data; } < "$RUN_DIR/local_postgres"
  as_postgres=()
  [ "$(id -u)" -eq 0 ] && as_postgres=(runuser -u postgres --)
  "${as_postgres[@]}" "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
  rm -f "$RUN_DIR/local_postgres"
  echo "Cluster PostgreSQL local parado ($data)."
fi
rm -f "$RUN_DIR/mode"
