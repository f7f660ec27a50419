#!/usr/bin/env bash
# Para tudo o que o start.sh iniciou: contêiner e Prefect Server (modo Docker), ou agendador,
# app de resultados e cluster PostgreSQL local (modo local). Diz o que parou e termina com
# código 1 se algum processo não pôde ser parado.
set -euo pipefail
cd "$(dirname "$0")"

# Maintainer notes (comments in English; everything printed is in Portuguese for users).
# RUN_DIR comes from the pipeline's own parser (pipelines/env_export.py), without validating
# the rest of the configuration: a broken .env must not keep stop.sh from stopping things.
# start.sh records each background process as "name pid starttime" in $RUN_DIR/processes;
# a process is only signalled while its /proc start time still matches (no recycled pids).

if [ -x .venv/bin/python ]; then
  eval "$(.venv/bin/python -m pipelines.env_export --run-dir 2>/dev/null || true)"
fi
RUN_DIR="${RUN_DIR:-$PWD/.run}"
PROCESSES="$RUN_DIR/processes"
GRACE_SECONDS="${STOP_GRACE_SECONDS:-15}"  # SIGTERM, then SIGKILL after this long
FAILED=0
RECORDED=0  # whether start.sh left anything to stop here

if [ ! -d "$RUN_DIR" ]; then
  echo "Nada a parar: start.sh não foi executado aqui."
  exit 0
fi

process_start() {  # pid -> its start time (clock ticks since boot); nothing if gone or a zombie
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  # shellcheck disable=SC2086  # split the fields after "(comm) "
  set -- ${stat##*) }
  [ "$1" = Z ] || echo "${20}"
}

label() {
  case "$1" in
    scheduler) echo "agendador" ;;
    results) echo "app de resultados" ;;
    *) echo "$1" ;;
  esac
}

gone_within() {  # pid started ticks(0.25 s each)
  local _
  for _ in $(seq "$3"); do
    [ "$(process_start "$1")" = "$2" ] || return 0
    sleep 0.25
  done
  return 1
}

stop_process() {  # name pid started
  local what
  what="$(label "$1") (pid $2)"
  if [ -z "$3" ] || [ "$(process_start "$2")" != "$3" ]; then
    echo "Já tinha terminado: $what."
    return
  fi
  if ! kill -TERM "$2" 2>/dev/null; then
    echo "Não foi possível parar $what: sem permissão para sinalizá-lo." >&2
    FAILED=1
    return
  fi
  if gone_within "$2" "$3" $((GRACE_SECONDS * 4)); then
    echo "Parado: $what."
    return
  fi
  kill -KILL "$2" 2>/dev/null || true
  if gone_within "$2" "$3" 20; then
    echo "Parado à força (não terminou em $GRACE_SECONDS s): $what."
  else
    echo "Não foi possível parar $what: continua rodando depois de SIGKILL." >&2
    FAILED=1
  fi
}

if [ "$(cat "$RUN_DIR/mode" 2>/dev/null)" = "docker" ]; then
  RECORDED=1
  docker rm -f adm_cgu_terceirizados >/dev/null 2>&1 || true
  .venv/bin/prefect server stop || true
  echo "Contêiner e Prefect Server parados."
fi

# pid files of an older start.sh
for name in results scheduler; do
  if [ -f "$RUN_DIR/$name.pid" ]; then
    pid=$(cat "$RUN_DIR/$name.pid")
    if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "run/$name.py"; then
      echo "$name $pid $(process_start "$pid")" >> "$PROCESSES"
    fi
    rm -f "$RUN_DIR/$name.pid"
  fi
done

if [ -f "$PROCESSES" ]; then
  RECORDED=1
  # results first: the app stops answering before the scheduler goes
  for wanted in results others; do
    while read -r name pid started; do
      if [ "$name" = results ]; then kind=results; else kind=others; fi
      if [ "$kind" = "$wanted" ]; then
        stop_process "$name" "$pid" "$started"
      fi
    done < "$PROCESSES"
  done
  [ "$FAILED" -eq 1 ] || rm -f "$PROCESSES"
fi

as_cluster_owner() {  # command...: as the cluster's owner, from /, which it can always enter
  local owner=()
  [ "$(id -u)" -eq 0 ] && owner=(runuser -u postgres --)
  (cd / && "${owner[@]}" "$@")
}

if [ -f "$RUN_DIR/local_postgres" ]; then
  RECORDED=1
  { read -r bindir; read -r data; } < "$RUN_DIR/local_postgres"
  if ! as_cluster_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    echo "Cluster PostgreSQL local já estava parado ($data)."
    rm -f "$RUN_DIR/local_postgres"
  elif as_cluster_owner "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1; then
    echo "Cluster PostgreSQL local parado ($data)."
    rm -f "$RUN_DIR/local_postgres"
  else
    echo "Não foi possível parar o cluster PostgreSQL local ($data): veja $data/server.log." >&2
    FAILED=1
  fi
fi

[ "$RECORDED" -eq 1 ] || echo "Nada a parar: nenhum processo iniciado pelo start.sh está registrado em $RUN_DIR."
rm -f "$RUN_DIR/mode" "$RUN_DIR/results.url"
exit "$FAILED"
