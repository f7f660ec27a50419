"""Runs and log records: ``logs.execucoes`` (each run's row, its lease while alive, and
the runs left behind by a process that died) and ``logs.registros`` (structured log
records, loaded at the end of a run or streamed by ``LogSink``)."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from datetime import datetime

import psycopg2
from psycopg2 import sql
from psycopg2.extras import Json, execute_values

from pipelines.database import CAPTURES, LOG_RECORDS, RUN_LOCK_NAMESPACE, RUNS, connect, connection, transaction
from pipelines.settings import Settings

logger = logging.getLogger("pipelines.runs")


# run id -> the connection that holds the run's lease (see start_run), in this process
_LEASES: dict[str, object] = {}
# in a forked child: the inherited lease connections, kept referenced and never used (see below)
_INHERITED: list[object] = []
PARENT_WATCH_SECONDS = 1.0


def _watch_parent(parent: int) -> None:
    """End this forked worker as soon as the process that forked it is gone."""
    while os.getppid() == parent:
        time.sleep(PARENT_WATCH_SECONDS)
    os._exit(1)


def _after_fork_in_child() -> None:
    """A process forked by a run (the historic capture's Dask workers, a parse in a child
    process) inherits the socket of the run's lease: alive after a kill -9 of the run, it kept
    the lease held and the run Running forever, and went on working for a dead run. In the
    child, the socket's descriptor now points to /dev/null (the parent's connection is not
    touched: a close here would end its session; the descriptor's number stays taken, so the
    connection object, never used again, writes nowhere if it is ever finalized), and the child
    ends as soon as its parent is gone."""
    if not _LEASES:
        return
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for conn in _LEASES.values():
            try:
                os.dup2(devnull, conn.fileno())
            except (OSError, ValueError):
                pass
    finally:
        os.close(devnull)
    _INHERITED.extend(_LEASES.values())
    _LEASES.clear()
    # the parent's pid taken before the fork: the parent may be gone before this child runs
    threading.Thread(target=_watch_parent, args=(_forking_pid,), name="vigia-do-processo-pai", daemon=True).start()


_forking_pid = os.getpid()


def _before_fork() -> None:
    global _forking_pid
    _forking_pid = os.getpid()


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def _run_key(run_id: str) -> tuple:
    return (RUN_LOCK_NAMESPACE, run_id)


def start_run(settings: Settings, run_id: str, flow_name: str, started_at: datetime, parameters: dict) -> None:
    """Record a run as Running, with this host and pid, and hold its lease: a session-level
    advisory lock on a connection kept open until ``finish_run``. If the process dies (kill -9,
    a reboot), PostgreSQL releases the lease, and ``mark_interrupted_runs`` can tell the run
    is no longer alive. The lease is taken before the row is written, so a run is never seen
    Running without it."""
    conn = connect(settings)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", _run_key(run_id))
            cursor.execute(
                sql.SQL(
                    "INSERT INTO {} (id_execucao, nome_flow, iniciado_em, estado_final, parametros, host, pid) "
                    "VALUES (%s, %s, %s, 'Running', %s, %s, %s) ON CONFLICT (id_execucao) DO NOTHING"
                ).format(RUNS),
                (run_id, flow_name, started_at, json.dumps(parameters, default=str), socket.gethostname(), os.getpid()),
            )
    except BaseException:
        conn.close()
        raise
    _release_lease(run_id)
    _LEASES[run_id] = conn


def _release_lease(run_id: str) -> None:
    conn = _LEASES.pop(run_id, None)
    if conn is not None:
        try:
            conn.close()
        except psycopg2.Error:
            pass


def finish_run(settings: Settings, run_id: str, state: str, message: str | None, finished_at: datetime) -> None:
    """Close a run; its row totals are derived from the periods it captured. Waits briefly
    for a database that is restarting, so a run's end is not lost to a short outage."""
    try:
        with transaction(settings, "o registro do fim da execução", wait_seconds=30) as conn, conn.cursor() as cursor:
            cursor.execute(
                sql.SQL(
                    """UPDATE {runs} SET estado_final = %s, mensagem = %s, finalizado_em = %s,
                        linhas_carregadas = coalesce(totals.loaded, linhas_carregadas),
                        linhas_quarentena = coalesce(totals.quarantined, linhas_quarentena),
                        linhas_reparadas = coalesce(totals.repaired, linhas_reparadas)
                    FROM (SELECT sum(linhas_carregadas) AS loaded, sum(linhas_quarentena) AS quarantined,
                                 sum(linhas_reparadas) AS repaired
                          FROM {captures} WHERE id_execucao = %s) AS totals
                    WHERE id_execucao = %s"""
                ).format(runs=RUNS, captures=CAPTURES),
                (state, message, finished_at, run_id, run_id),
            )
    finally:
        _release_lease(run_id)


INTERRUPTED = "Interrompida"


def interrupt_own_runs(settings: Settings, message: str, lock_timeout: str = "1s") -> list[str]:
    """Close as ``Interrompida``, with ``message``, every run whose lease this process holds and
    that is still Running (one that finished keeps its state): a process stopped by a signal
    says why, instead of leaving its runs to be found dead by the next start
    (``mark_interrupted_runs``, which can only guess the cause). Call it after the interrupted
    code has unwound (its transactions closed), never from the signal handler itself. Never
    raises, and waits at most ``lock_timeout`` for a row: what it cannot write, that next start
    still marks. Returns the runs it closed."""
    run_ids = list(_LEASES)
    if not run_ids:
        return []
    try:
        with connection(settings) as conn, conn, conn.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", (lock_timeout,))
            cursor.execute(
                sql.SQL(
                    "UPDATE {} SET estado_final = %s, mensagem = %s, finalizado_em = now() "
                    "WHERE id_execucao = ANY(%s) AND estado_final = 'Running' RETURNING id_execucao"
                ).format(RUNS),
                (INTERRUPTED, message, run_ids),
            )
            stopped = sorted(run_id for (run_id,) in cursor.fetchall())
    except Exception as exc:  # noqa: BLE001 - left to mark_interrupted_runs
        logger.warning("Fim das execuções interrompidas não registrado: %s", exc)
        return []
    for run_id in run_ids:
        _release_lease(run_id)
    return stopped


def _alive_here(host: str | None, pid: int | None) -> bool:
    """True when the run's process is alive on this machine (its lease may have been lost
    to a database restart while the run goes on)."""
    if host != socket.gethostname() or not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_interrupted_runs(settings: Settings) -> list[tuple[str, str]]:
    """Mark as ``Interrompida`` every run left Running by a process that is gone (its lease
    is free). Returns (run id, flow name) of each run marked."""
    marked = []
    conn = connect(settings)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                sql.SQL(
                    "SELECT id_execucao, nome_flow, host, pid FROM {} WHERE estado_final = 'Running' "
                    "AND NOT (id_execucao = ANY(%s))"
                ).format(RUNS),
                (list(_LEASES),),
            )
            for run_id, flow_name, host, pid in cursor.fetchall():
                cursor.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", _run_key(run_id))
                if not cursor.fetchone()[0]:
                    continue  # its process holds the lease: alive
                try:
                    if _alive_here(host, pid):
                        continue
                    where = f"host {host}, pid {pid}" if host else "processo desconhecido"
                    cursor.execute(
                        sql.SQL(
                            "UPDATE {} SET estado_final = %s, finalizado_em = now(), mensagem = %s "
                            "WHERE id_execucao = %s AND estado_final = 'Running'"
                        ).format(RUNS),
                        (
                            INTERRUPTED,
                            f"Interrompida: o processo da execução ({where}) terminou sem registrar o fim "
                            "(kill -9, queda da máquina ou do PostgreSQL). Conta como falha.",
                            run_id,
                        ),
                    )
                    if cursor.rowcount:
                        marked.append((run_id, flow_name))
                        logger.warning("Execução %s de %s marcada como interrompida (%s).", run_id, flow_name, where)
                finally:
                    cursor.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", _run_key(run_id))
    finally:
        conn.close()
    return marked


def run_states(settings: Settings, run_ids: list[str]) -> dict[str, str]:
    """Final state of each of the given runs that is recorded."""
    with connection(settings) as conn, conn.cursor() as cursor:
        cursor.execute(
            sql.SQL("SELECT id_execucao, estado_final FROM {} WHERE id_execucao = ANY(%s)").format(RUNS), (run_ids,)
        )
        return dict(cursor.fetchall())


def set_run_rows(settings: Settings, run_id: str, rows: int) -> None:
    """Record how many rows a run produced (materialize flows: rows of the final table)."""
    with connection(settings) as conn, conn, conn.cursor() as cursor:
        cursor.execute(
            sql.SQL("UPDATE {} SET linhas_carregadas = %s WHERE id_execucao = %s").format(RUNS), (rows, run_id)
        )


def scheduler_attempts(settings: Settings, flow_name: str) -> list[tuple[str, datetime, str]]:
    """(cycle, started at, final state) of every attempt the scheduler recorded."""
    with connection(settings) as conn, conn.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                "SELECT parametros->>'ciclo', iniciado_em, estado_final FROM {} WHERE nome_flow = %s "
                "AND parametros ? 'ciclo' ORDER BY iniciado_em"
            ).format(RUNS),
            (flow_name,),
        )
        return cursor.fetchall()


def insert_log_records(settings: Settings, records: list[dict], wait_seconds: float = 0.0, replace: bool = True) -> int:
    """Load structured log records. ``replace``: a run's records are replaced if loaded
    twice; otherwise only records not in the table yet are added (recovery of a file that
    may be partly loaded). ``wait_seconds``: how long to retry while the database is down."""
    if not records:
        return 0
    with transaction(settings, "a carga dos registros de log", wait_seconds) as conn, conn.cursor() as cursor:
        run_ids = sorted({r["id_execucao"] for r in records})
        target = LOG_RECORDS
        if replace:
            cursor.execute(sql.SQL("DELETE FROM {} WHERE id_execucao = ANY(%s)").format(LOG_RECORDS), (run_ids,))
        else:
            cursor.execute(
                sql.SQL(
                    "CREATE TEMPORARY TABLE registros_recuperados ON COMMIT DROP AS SELECT nome_flow, "
                    "id_execucao, registrado_em, nivel, nome_task, logger, mensagem, evento, detalhe FROM {} "
                    "WITH NO DATA"
                ).format(LOG_RECORDS)
            )
            # the file's order, kept through the anti-join below (which may sort)
            cursor.execute("ALTER TABLE registros_recuperados ADD COLUMN ordem bigserial")
            target = sql.Identifier("registros_recuperados")
        _append_log_rows(cursor, target, records)
        if not replace:
            cursor.execute(
                sql.SQL(
                    """INSERT INTO {records} (nome_flow, id_execucao, registrado_em, nivel, nome_task, logger, mensagem,
                                         evento, detalhe)
                   SELECT n.nome_flow, n.id_execucao, n.registrado_em, n.nivel, n.nome_task, n.logger, n.mensagem,
                          n.evento, n.detalhe
                   FROM registros_recuperados n WHERE NOT EXISTS (
                       SELECT 1 FROM {records} o WHERE o.id_execucao = n.id_execucao
                       AND o.registrado_em = n.registrado_em AND o.mensagem = n.mensagem)
                   ORDER BY n.ordem"""
                ).format(records=LOG_RECORDS)
            )
            return cursor.rowcount
    return len(records)


LOG_COLUMNS = (
    "nome_flow",
    "id_execucao",
    "registrado_em",
    "nivel",
    "nome_task",
    "logger",
    "mensagem",
    "evento",
    "detalhe",
)


def _log_value(value):
    return Json(value) if isinstance(value, dict) else value


def _append_log_rows(cursor, target, records: list[dict]) -> None:
    """One multi-row INSERT of structured log records into ``target`` (the table or a staging copy)."""
    execute_values(
        cursor,
        sql.SQL("INSERT INTO {} ({}) VALUES %s")
        .format(target, sql.SQL(", ").join(map(sql.Identifier, LOG_COLUMNS)))
        .as_string(cursor.connection),
        [tuple(_log_value(r.get(name)) for name in LOG_COLUMNS) for r in records],
        page_size=1000,
    )


class LogSink:
    """Appends log rows to ``logs.registros`` over one kept connection (reopened after an
    error): what a task running on another process or machine sends its records through."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.conn = None

    def __call__(self, records: list[dict]) -> None:
        for attempt in (1, 2):
            try:
                if self.conn is None or self.conn.closed:
                    self.conn = connect(self.settings)
                    self.conn.autocommit = True
                with self.conn.cursor() as cursor:
                    _append_log_rows(cursor, LOG_RECORDS, records)
                return
            except psycopg2.Error:
                self.conn = None
                if attempt == 2:
                    raise

    def __reduce__(self):  # a sink travels without its connection
        return (LogSink, (self.settings,))
