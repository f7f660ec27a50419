#!/usr/bin/env bash
# Sobe o pipeline de terceirizados.
#
#   ./start.sh              com Docker: Prefect Server (UI :8080, API :4200), flows registrados
#                           no projeto adm_cgu_terceirizados, agente e app de resultados (:8050).
#                           Sem Docker: modo local (flow.run()), com o PostgreSQL do .env ou um
#                           cluster local do projeto, agendador e app de resultados.
#   ./start.sh --amostra    usa o portal de exemplo do repositório (sem internet, dados sintéticos).
#   ./start.sh --local      força o modo local mesmo com Docker.
#
# ./stop.sh para tudo o que este script iniciou.
set -euo pipefail
cd "$(dirname "$0")"

SAMPLE_ARGS=()
FORCE_LOCAL=0
for arg in "$@"; do
  case "$arg" in
    --amostra) SAMPLE_ARGS=(--amostra) ;;
    --local) FORCE_LOCAL=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "Opção desconhecida: $arg (use --help)" >&2; exit 2 ;;
  esac
done

# .env fills in what the environment does not set (same precedence as python-dotenv).
if [ -f .env ]; then
  while IFS='=' read -r key value || [ -n "$key" ]; do
    [[ $key =~ ^[A-Z_][A-Z0-9_]*$ ]] || continue
    [ -n "${!key+x}" ] || export "$key=$value"
  done < .env
fi
POSTGRES_HOST="${POSTGRES_HOST:-127.0.0.1}"
POSTGRES_PORT="${POSTGRES_PORT:-5432}"
RESULTS_HOST="${RESULTS_HOST:-127.0.0.1}"
RESULTS_PORT="${RESULTS_PORT:-8050}"
RUN_DIR="${RUN_DIR:-$PWD/.run}"
mkdir -p "$RUN_DIR"
PY=.venv/bin/python

make --no-print-directory venv

docker_ready() {
  command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 && command -v docker-compose >/dev/null 2>&1
}

start_server_mode() {
  echo "Docker disponível: subindo o Prefect Server (UI em http://localhost:8080, API em :4200)..."
  .venv/bin/prefect backend server
  .venv/bin/prefect server start --detach --use-volume --hide-welcome
  .venv/bin/prefect server create-tenant --name tenant >/dev/null 2>&1 || true
  docker build -t adm_cgu_terceirizados .
  docker rm -f adm_cgu_terceirizados >/dev/null 2>&1 || true
  local env_file=()
  [ -f .env ] && env_file=(--env-file .env)
  docker run -d --name adm_cgu_terceirizados --network host "${env_file[@]}" adm_cgu_terceirizados >/dev/null
  echo "docker" > "$RUN_DIR/mode"
  echo "Prefect UI: http://localhost:8080 · resultados: http://localhost:8050 · ./stop.sh para parar."
}

# Use the PostgreSQL of .env when it answers; otherwise a project-local cluster.
ensure_postgres() {
  if pg_isready -h "$POSTGRES_HOST" -p "$POSTGRES_PORT" -q 2>/dev/null; then
    echo "Usando o PostgreSQL em $POSTGRES_HOST:$POSTGRES_PORT."
    return
  fi
  local bindir
  bindir=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$bindir" ]; then
    echo "O PostgreSQL em $POSTGRES_HOST:$POSTGRES_PORT não responde e não há binários do servidor nesta máquina." >&2
    echo "Instale-o (Debian/Ubuntu: sudo apt-get install postgresql) ou ajuste POSTGRES_* no .env." >&2
    exit 1
  fi
  local data port="${LOCAL_POSTGRES_PORT:-5433}"
  data=$(realpath -m "${LOCAL_PGDATA:-$PWD/.pgdata}")
  local as_postgres=()
  if [ "$(id -u)" -eq 0 ]; then
    as_postgres=(runuser -u postgres --)  # initdb refuses to run as root
  fi
  mkdir -p "$data"
  [ "$(id -u)" -eq 0 ] && chown postgres "$data"
  if [ ! -f "$data/PG_VERSION" ]; then
    echo "PostgreSQL em $POSTGRES_HOST:$POSTGRES_PORT não responde: criando um cluster local em $data..."
    "${as_postgres[@]}" "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  "${as_postgres[@]}" "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w \
    -o "-p $port -k /tmp -c listen_addresses=127.0.0.1" start >/dev/null
  printf '%s\n%s\n' "$bindir" "$data" > "$RUN_DIR/local_postgres"
  export POSTGRES_HOST=127.0.0.1 POSTGRES_PORT="$port" POSTGRES_USER=postgres POSTGRES_PASSWORD=
  echo "Usando o cluster PostgreSQL local do projeto em 127.0.0.1:$port."
}

start_background() {  # name, command...
  local name=$1
  shift
  nohup "$@" > "$RUN_DIR/$name.log" 2>&1 &
  echo $! > "$RUN_DIR/$name.pid"
}

start_local_mode() {
  ensure_postgres
  echo "Capturando e materializando o período mais recente (flow.run())..."
  if ! "$PY" run/scheduler.py --agora "${SAMPLE_ARGS[@]}"; then
    echo "A execução falhou; o agendador tenta de novo diariamente. Veja os logs no app de resultados." >&2
  fi
  start_background scheduler "$PY" run/scheduler.py "${SAMPLE_ARGS[@]}"
  start_background results "$PY" run/results.py --host "$RESULTS_HOST" --port "$RESULTS_PORT"
  echo "local" > "$RUN_DIR/mode"
  for _ in $(seq 60); do
    if "$PY" -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=2)" \
        "http://$RESULTS_HOST:$RESULTS_PORT/" 2>/dev/null; then
      echo "Resultados em http://$RESULTS_HOST:$RESULTS_PORT (agendador em segundo plano; ./stop.sh para parar)."
      return
    fi
    sleep 1
  done
  echo "O app de resultados não respondeu; veja $RUN_DIR/results.log" >&2
  exit 1
}

if [ "$FORCE_LOCAL" -eq 0 ] && docker_ready; then
  start_server_mode
else
  if [ "$FORCE_LOCAL" -eq 1 ]; then
    echo "Modo local solicitado (--local)."
  else
    echo "Docker indisponível nesta máquina (sem engine Docker ou docker-compose): o Prefect Server (UI :8080)" \
         "não será iniciado. Modo local: flows com flow.run(), agendador em processo e app de resultados."
  fi
  start_local_mode
fi
