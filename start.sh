#!/usr/bin/env bash
# Sobe o pipeline de terceirizados.
#
#   ./start.sh              com Docker: Prefect Server (UI :8080, API :4200), flows registrados
#                           no projeto adm_cgu_terceirizados, agente e app de resultados (:8050).
#                           Sem Docker: modo local (flow.run()): uma captura e materialização
#                           agora, o agendador e o app de resultados em segundo plano.
#   ./start.sh --amostra    usa o portal de exemplo do repositório (sem internet, dados sintéticos).
#   ./start.sh --local      força o modo local mesmo com Docker.
#   ./start.sh --pg-local   usa o cluster PostgreSQL local do projeto (criado na primeira vez),
#                           mesmo que o .env configure outro PostgreSQL.
#   ./start.sh --reiniciar  para a instância que já estiver rodando (./stop.sh) e sobe de novo.
#
# Configuração: .env (modelo em .env.example; sem .env valem os padrões). Um PostgreSQL
# configurado (POSTGRES_HOST/POSTGRES_PORT) que não responde, ou um valor inválido, interrompe
# o script com a mensagem do pipeline. Sem POSTGRES_HOST/POSTGRES_PORT, usa 127.0.0.1:5432 se
# ele responder, senão o cluster local do projeto.
# ./stop.sh para tudo o que este script iniciou.
set -euo pipefail
cd "$(dirname "$0")"

# Maintainer notes (comments in English; everything printed is in Portuguese for users).
# Configuration comes from pipelines/env_export.py, the same parser as the pipeline
# (environment first, then .env via python-dotenv): this script never reads .env itself.
# Every background process is recorded in $RUN_DIR/processes as "name pid starttime"
# (starttime from /proc, so a recycled pid is never mistaken for ours); stop.sh reads it.

SAMPLE_ARGS=()
FORCE_LOCAL=0
PG_LOCAL=0
RESTART=0
for arg in "$@"; do
  case "$arg" in
    --amostra) SAMPLE_ARGS=(--amostra) ;;
    --local) FORCE_LOCAL=1 ;;
    --pg-local) PG_LOCAL=1 ;;
    --reiniciar) RESTART=1 ;;
    -h|--help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) echo "Opção desconhecida: $arg (use --help)" >&2; exit 2 ;;
  esac
done

make --no-print-directory venv
PY=.venv/bin/python

[ -f .env ] || echo "Sem arquivo .env: usando os valores padrão (para ajustar: cp .env.example .env)."
resolved=$("$PY" -m pipelines.env_export) || exit "$?"
eval "$resolved"
mkdir -p "$RUN_DIR"
PROCESSES="$RUN_DIR/processes"
# one start.sh at a time per RUN_DIR (two started together would both see nothing running)
exec 9> "$RUN_DIR/start.lock"
if ! flock -n 9; then
  echo "Outro ./start.sh já está em andamento nesta pasta ($RUN_DIR); espere ele terminar." >&2
  exit 1
fi
RESULTS_URL="http://$RESULTS_HOST:$RESULTS_PORT"

process_start() {  # pid -> its start time (clock ticks since boot); nothing if gone or a zombie
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  # shellcheck disable=SC2086  # split the fields after "(comm) "
  set -- ${stat##*) }
  [ "$1" = Z ] || echo "${20}"
}

adopt_legacy_pid_files() {  # pid files of an older start.sh become records
  local name pid
  for name in results scheduler; do
    [ -f "$RUN_DIR/$name.pid" ] || continue
    pid=$(cat "$RUN_DIR/$name.pid")
    if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "run/$name.py"; then
      echo "$name $pid $(process_start "$pid")" >> "$PROCESSES"
    fi
    rm -f "$RUN_DIR/$name.pid"
  done
}

live_processes() {  # "name pid" of each recorded process that still runs
  local name pid started
  [ -f "$PROCESSES" ] || return 0
  while read -r name pid started; do
    if [ -n "$started" ] && [ "$(process_start "$pid")" = "$started" ]; then
      echo "$name $pid"
    fi
  done < "$PROCESSES"
}

label() {
  case "$1" in
    scheduler) echo "agendador" ;;
    results) echo "app de resultados" ;;
    *) echo "$1" ;;
  esac
}

docker_ready() {
  command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 && command -v docker-compose >/dev/null 2>&1
}

docker_instance() {
  [ "$(cat "$RUN_DIR/mode" 2>/dev/null)" = docker ] && command -v docker >/dev/null 2>&1 &&
    [ -n "$(docker ps -q -f name=adm_cgu_terceirizados 2>/dev/null)" ]
}

# A second start: say where the running instance is (or restart it with --reiniciar).
refuse_second_start() {
  adopt_legacy_pid_files
  local live
  live=$(live_processes)
  if [ -z "$live" ] && ! docker_instance; then
    rm -f "$PROCESSES" "$RUN_DIR/mode" "$RUN_DIR/results.url"  # records of processes that ended
    return
  fi
  if [ "$RESTART" -eq 1 ]; then
    echo "Reiniciando: parando a instância em execução..."
    ./stop.sh
    return
  fi
  local where parts=() name pid
  where=$(cat "$RUN_DIR/results.url" 2>/dev/null || echo "$RESULTS_URL")
  while read -r name pid; do
    [ -n "$name" ] && parts+=("$(label "$name") (pid $pid)")
  done <<< "$live"
  docker_instance && parts+=("contêiner adm_cgu_terceirizados")
  local joined
  joined=$(printf '%s, ' "${parts[@]}")
  echo "O pipeline já está rodando a partir desta pasta: ${joined%, }; resultados em $where."
  echo "Nada foi iniciado de novo. Para parar: ./stop.sh; para reiniciar: ./start.sh --reiniciar."
  exit 0
}

port_state() {  # host port -> "livre", "em uso" or the reason the address cannot be used
  "$PY" - "$1" "$2" <<'PYTHON'
import errno, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        sock.bind((host, port))
    print("livre")
except OSError as exc:
    print("em uso" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc))
PYTHON
}

port_owner() {  # port -> the process listening there, when ss can tell
  command -v ss >/dev/null 2>&1 || return 0
  ss -Hltnp "( sport = :$1 )" 2>/dev/null | grep -o 'users:(([^)]*))' | head -n 1 || true
}

require_free_port() {  # variable host port
  local state owner
  state=$(port_state "$2" "$3")
  case "$state" in
    livre) return ;;
    "em uso")
      owner=$(port_owner "$3")
      echo "A porta $1=$3 ($2) já está em uso por outro processo${owner:+ ($owner)}." \
           "Pare-o ou escolha outra porta em $1 no .env. Nada foi iniciado." >&2 ;;
    *) echo "Não é possível usar $2:$3 ($1): $state. Nada foi iniciado." >&2 ;;
  esac
  exit 1
}

start_server_mode() {
  echo "Docker disponível: subindo o Prefect Server (UI em http://localhost:8080, API em :4200)..."
  .venv/bin/prefect backend server
  .venv/bin/prefect server start --detach --use-volume --hide-welcome
  .venv/bin/prefect server create-tenant --name tenant >/dev/null 2>&1 || true
  docker build -t adm_cgu_terceirizados .
  docker rm -f adm_cgu_terceirizados >/dev/null 2>&1 || true
  # the container gets the values the pipeline resolves, not docker's own reading of .env
  (umask 077 && "$PY" -m pipelines.env_export --docker-env > "$RUN_DIR/docker.env")  # may hold the password
  docker run -d --name adm_cgu_terceirizados --network host --env-file "$RUN_DIR/docker.env" \
    adm_cgu_terceirizados >/dev/null
  echo "docker" > "$RUN_DIR/mode"
  echo "http://localhost:8050" > "$RUN_DIR/results.url"
  echo "Prefect UI: http://localhost:8080 · resultados: http://localhost:8050 · ./stop.sh para parar."
}

# As root the cluster runs as the postgres user (initdb refuses root), which must be able to
# reach its data folder: a checkout under /root or any mode-700 folder is out of its reach,
# so the data then lives in the postgres user's home, one folder per checkout.
postgres_can_use() {  # folder
  mkdir -p "$1" && chown postgres: "$1" && chmod 700 "$1" &&
    runuser -u postgres -- test -w "$1" -a -x "$1" 2>/dev/null
}

choose_cluster_folder() {  # sets CLUSTER_DATA
  CLUSTER_DATA=$LOCAL_PGDATA
  if [ "$(id -u)" -ne 0 ]; then
    mkdir -p "$CLUSTER_DATA"
    return
  fi
  postgres_can_use "$CLUSTER_DATA" && return
  rmdir "$CLUSTER_DATA" 2>/dev/null || true
  if [ "$LOCAL_PGDATA_CONFIGURED" -eq 1 ]; then
    echo "LOCAL_PGDATA=$LOCAL_PGDATA: o usuário postgres, que roda o cluster local, não consegue entrar nesta" \
         "pasta (uma pasta acima dela não permite). Aponte LOCAL_PGDATA no .env para uma pasta que ele alcance." >&2
    exit 1
  fi
  CLUSTER_DATA="$(getent passwd postgres | cut -d: -f6)/terceirizados/$(basename "$PWD")-$(printf '%s' "$PWD" |
    sha256sum | cut -c1-8)"
  runuser -u postgres -- mkdir -p "$CLUSTER_DATA"
  echo "O usuário postgres não alcança $LOCAL_PGDATA (uma pasta acima dela não permite a entrada dele):" \
       "os dados do cluster local ficam em $CLUSTER_DATA."
}

PG_OWNER=()  # as root: runuser -u postgres --

as_cluster_owner() {  # command...: from /, which the postgres user can always enter; the server
  (cd / && "${PG_OWNER[@]}" "$@" 9>&-)  # must not inherit (and hold) the start lock
}

start_local_cluster() {
  local bindir data port=$LOCAL_POSTGRES_PORT
  bindir=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$bindir" ]; then
    echo "Não há binários do servidor PostgreSQL nesta máquina para o cluster local do projeto." \
         "Instale-os (Debian/Ubuntu: sudo apt-get install postgresql) ou configure POSTGRES_* no .env." >&2
    exit 1
  fi
  if [ "$(id -u)" -eq 0 ]; then
    if ! getent passwd postgres >/dev/null; then
      echo "Como root, o cluster local roda como o usuário postgres, que não existe nesta máquina." \
           "Rode ./start.sh como um usuário comum ou configure POSTGRES_* no .env." >&2
      exit 1
    fi
    PG_OWNER=(runuser -u postgres --)
  fi
  choose_cluster_folder
  data=$CLUSTER_DATA
  if [ ! -f "$data/PG_VERSION" ]; then
    echo "Criando o cluster PostgreSQL local do projeto em $data..."
    as_cluster_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  if as_cluster_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    port=$(sed -n 4p "$data/postmaster.pid")
    echo "O cluster local já estava no ar."
  else
    require_free_port LOCAL_POSTGRES_PORT 127.0.0.1 "$port"
    as_cluster_owner "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w \
      -o "-p $port -k /tmp -c listen_addresses=127.0.0.1" start >/dev/null
  fi
  printf '%s\n%s\n' "$bindir" "$data" > "$RUN_DIR/local_postgres"
  export POSTGRES_HOST=127.0.0.1 POSTGRES_PORT="$port" POSTGRES_USER=postgres POSTGRES_PASSWORD=
  echo "Usando o cluster PostgreSQL local do projeto em 127.0.0.1:$port (dados em $data)."
}

# The PostgreSQL of the configuration, checked as the flows check it (same message); the
# project-local cluster only when none is configured and the default does not answer, or
# with --pg-local.
ensure_postgres() {
  if [ "$PG_LOCAL" -eq 1 ]; then
    echo "Cluster PostgreSQL local do projeto solicitado (--pg-local)."
    start_local_cluster
    return
  fi
  if [ "$POSTGRES_CONFIGURED" -eq 1 ]; then
    if ! "$PY" -m pipelines.env_export --postgres; then
      echo "O PostgreSQL configurado no .env (ou no ambiente) não pôde ser usado: corrija POSTGRES_*," \
           "ou rode ./start.sh --pg-local para usar o cluster local do projeto. Nada foi iniciado." >&2
      exit 2
    fi
    echo "Usando o PostgreSQL configurado em $POSTGRES_HOST:$POSTGRES_PORT."
    return
  fi
  local status=0
  "$PY" -m pipelines.env_export --postgres --sondar || status=$?
  case "$status" in
    0) echo "Usando o PostgreSQL em $POSTGRES_HOST:$POSTGRES_PORT" \
            "(padrão: nenhum POSTGRES_HOST/POSTGRES_PORT configurado)." ;;
    3) echo "Nenhum PostgreSQL configurado (POSTGRES_HOST/POSTGRES_PORT) e nada responde em" \
            "$POSTGRES_HOST:$POSTGRES_PORT: usando o cluster local do projeto."
       start_local_cluster ;;
    *) exit "$status" ;;
  esac
}

start_background() {  # name, command...
  local name=$1
  shift
  nohup "$@" > "$RUN_DIR/$name.log" 2>&1 9>&- &  # without the start lock
  echo "$name $! $(process_start $!)" >> "$PROCESSES"
}

recorded_pid() {  # name -> pid of the last recorded process of that name
  awk -v name="$1" '$1 == name { pid = $2 } END { print pid }' "$PROCESSES"
}

serving_pid() {  # url -> pid of the results app answering there; "outro" for another app; nothing if none
  "$PY" - "$1/saude" <<'PYTHON' 2>/dev/null || true
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
        answer = json.load(response)
    print(answer["pid"] if answer.get("app") == "terceirizados-resultados" else "outro")
except Exception:
    pass
PYTHON
}

fail_start() {  # message: say it, show the log and stop what this run started
  echo "$*" >&2
  ./stop.sh >&2 || true
  exit 1
}

# The app this run started must be the one answering (not another process on the port).
wait_for_results() {
  local pid answer
  pid=$(recorded_pid results)
  for _ in $(seq 120); do
    if [ -z "$(process_start "$pid")" ]; then
      fail_start "O app de resultados terminou ao iniciar (veja $RUN_DIR/results.log):
$(tail -n 5 "$RUN_DIR/results.log")"
    fi
    answer=$(serving_pid "$RESULTS_URL")
    if [ "$answer" = "$pid" ]; then
      echo "$RESULTS_URL" > "$RUN_DIR/results.url"
      return
    elif [ "$answer" = outro ]; then
      fail_start "Quem responde em $RESULTS_URL é outro programa, não o app de resultados iniciado agora (pid $pid)."
    elif [ -n "$answer" ]; then
      fail_start "Quem responde em $RESULTS_URL é outro app de resultados (pid $answer)," \
                 "não o iniciado agora (pid $pid)."
    fi
    sleep 0.5
  done
  fail_start "O app de resultados não respondeu em 60 s; veja $RUN_DIR/results.log"
}

start_local_mode() {
  require_free_port RESULTS_PORT "$RESULTS_HOST" "$RESULTS_PORT"
  ensure_postgres
  echo "Capturando e materializando o período mais recente (flow.run())..."
  if ! "$PY" run/scheduler.py --agora "${SAMPLE_ARGS[@]}"; then
    echo "A execução falhou; o agendador tenta de novo diariamente. Veja os logs no app de resultados." >&2
  fi
  start_background scheduler "$PY" run/scheduler.py "${SAMPLE_ARGS[@]}"
  start_background results "$PY" run/results.py --host "$RESULTS_HOST" --port "$RESULTS_PORT"
  echo "local" > "$RUN_DIR/mode"
  wait_for_results
  if [ -z "$(process_start "$(recorded_pid scheduler)")" ]; then
    fail_start "O agendador terminou ao iniciar (veja $RUN_DIR/scheduler.log):
$(tail -n 5 "$RUN_DIR/scheduler.log")"
  fi
  echo "Resultados em $RESULTS_URL (documentação do dbt em $RESULTS_URL/docs/)."
  echo "Agendador e app de resultados em segundo plano (pids $(recorded_pid scheduler) e $(recorded_pid results));" \
       "./stop.sh para parar."
}

refuse_second_start
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
