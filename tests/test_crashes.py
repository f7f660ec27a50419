"""Runs that crash, a database that goes away, folders that cannot be written: each is
named, leaves the previous data intact, and never ends as Success."""

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import pytest

from pipelines import database, logs, raw_loads, runs
from pipelines.errors import DatabaseUnavailableError, StorageError
from pipelines.flows import capture_flow
from pipelines.settings import load_settings
from tests.conftest import query, run_flow
from tests.netproxy import Proxy
from tests.test_concurrency import PERIOD, record, wait_until, waiting_backends, write_period_csv

ROOT = Path(__file__).resolve().parent.parent


def test_a_killed_run_is_marked_interrupted_and_its_logs_are_loaded(db, fresh_portal, settings):
    """kill -9 in the middle of a download: the next flow to start marks the run
    'Interrompida' and loads the records the killed run had written."""
    path = fresh_portal.file_path("terceirizados202405.xlsx")
    fresh_portal.faults[path] = "timeout"  # the server hangs: the run is still downloading when killed
    process = subprocess.Popen(
        [sys.executable, "run/capture.py", "--url", fresh_portal.page_url],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: fresh_portal.hits.get(path, 0) >= 1, 60)
        [(killed_id, pid, host)] = query(
            db, "SELECT id_execucao, pid, host FROM logs.execucoes WHERE estado_final = 'Running'"
        )
        assert pid == process.pid and host
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
    fresh_portal.faults.clear()
    state, next_id = run_flow(capture_flow, url=fresh_portal.page_url)
    assert state.is_successful(), state.message
    [(status, message, finished)] = query(
        db, "SELECT estado_final, mensagem, finalizado_em FROM logs.execucoes WHERE id_execucao = %s", (killed_id,)
    )
    assert status == "Interrompida" and f"pid {process.pid}" in message and finished is not None
    killed_messages = [
        m for (m,) in query(db, "SELECT mensagem FROM logs.registros WHERE id_execucao = %s", (killed_id,))
    ]
    assert any("Realizando o download" in m for m in killed_messages)
    # the next run's log is its own, complete, and the killed run's file is gone once loaded
    assert query(db, "SELECT count(*) > 0 FROM logs.registros WHERE id_execucao = %s", (next_id,)) == [(True,)]
    assert not logs.pending_path(settings.log_dir, capture_flow.name, killed_id).exists()


def test_a_live_run_is_never_marked_interrupted(db, settings):
    runs.start_run(settings, "viva", "teste", datetime.now(UTC), {})
    try:
        assert runs.mark_interrupted_runs(load_settings()) == []
        # even seen from another process (the lease, not this process's memory, proves it alive)
        script = (
            "from pipelines import runs; from pipelines.settings import load_settings; "
            "print(runs.mark_interrupted_runs(load_settings()))"
        )
        assert (
            subprocess.run(
                [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
            ).stdout.strip()
            == "[]"
        )
        assert query(db, "SELECT estado_final FROM logs.execucoes WHERE id_execucao = 'viva'") == [("Running",)]
    finally:
        runs.finish_run(settings, "viva", "Success", None, datetime.now(UTC))


def test_a_server_shutdown_during_a_load_is_named_and_changes_nothing(db, settings, tmp_path):
    """pg_terminate_backend gives the loader the same AdminShutdown a restart does."""
    csv_file = write_period_csv(tmp_path / "a.csv", 20, "A")
    blocker = psycopg2.connect(**settings.postgres_dsn())
    with blocker.cursor() as cursor:
        cursor.execute("LOCK TABLE raw.terceirizados_quarentena IN ACCESS EXCLUSIVE MODE")
    errors = []
    loader = threading.Thread(
        target=lambda: _capture(errors, raw_loads.load_period, settings, csv_file, [], record(20, "r"))
    )
    loader.start()
    wait_until(lambda: waiting_backends(db, "%terceirizados_quarentena%") == 1)
    query(
        db,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND query ILIKE '%terceirizados_quarentena%'",
    )
    loader.join(30)
    blocker.rollback()
    blocker.close()
    [error] = errors
    assert isinstance(error, DatabaseUnavailableError)
    assert "ficou indisponível durante a carga do período 2031-01" in str(error)
    # the driver reports the terminated backend as AdminShutdown or as a closed connection
    assert "AdminShutdown" in str(error) or "o servidor encerrou a conexão inesperadamente" in str(error)
    assert "connection already closed" not in str(error)
    assert query(db, "SELECT count(*) FROM raw.terceirizados WHERE periodo = %s", (PERIOD,)) == [(0,)]


def test_admin_shutdown_is_named(db, settings):
    """A connection idle in a transaction when the server shuts down sees AdminShutdown itself."""
    conn = psycopg2.connect(**settings.postgres_dsn())
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [pid] = cursor.fetchone()
    query(db, "SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.2)
    with pytest.raises(psycopg2.Error) as raised, conn.cursor() as cursor:
        cursor.execute("SELECT 1")
    conn.close()
    described = database.describe_database_error(raised.value)
    assert database.is_unavailable(raised.value)
    assert "AdminShutdown" in described or "encerrou a conexão" in described


def _capture(errors, function, *args):
    try:
        function(*args)
    except Exception as exc:  # checked by the test
        errors.append(exc)


def test_log_upload_waits_out_a_short_outage(settings):
    proxy = Proxy(settings.postgres_port)
    proxied = load_settings({**os.environ, "POSTGRES_PORT": str(proxy.port)})
    proxy.cut()
    records = [
        {
            "nome_flow": "teste",
            "id_execucao": "queda-curta",
            "registrado_em": "2026-01-01T00:00:00+00:00",
            "nivel": "INFO",
            "nome_task": None,
            "logger": "pipelines",
            "mensagem": "depois da queda",
        }
    ]
    threading.Timer(1.5, lambda: setattr(proxy, "enabled", True)).start()
    assert runs.insert_log_records(proxied, records, wait_seconds=20) == 1


def test_a_long_outage_is_reported_as_unavailable_not_as_configuration(settings):
    proxy = Proxy(settings.postgres_port)
    proxied = load_settings({**os.environ, "POSTGRES_PORT": str(proxy.port)})
    proxy.cut()
    with pytest.raises(DatabaseUnavailableError, match="O PostgreSQL está indisponível .*esperados 1 s"):
        runs.insert_log_records(proxied, [{"id_execucao": "x"}], wait_seconds=1)


def test_the_command_line_says_unavailable_not_configuration(settings):
    proxy = Proxy(settings.postgres_port)
    proxy.cut()
    done = subprocess.run(
        [sys.executable, "run/materialize.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "POSTGRES_PORT": str(proxy.port)},
        timeout=120,
    )
    assert done.returncode == 2
    assert "PostgreSQL indisponível" in done.stderr and "Erro de configuração" not in done.stderr


# -- folders that cannot be written (a real tmpfs; skipped where mounting is not allowed) ---------


@contextmanager
def tiny_filesystem(tmp_path: Path, size: str = "256k", read_only: bool = False):
    target = tmp_path / "pequeno"
    target.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"não foi possível montar um tmpfs aqui: {mounted.stderr.strip()}")
    try:
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True)
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_a_full_data_dir_fails_naming_it_and_keeps_the_data(db, fresh_portal, tmp_path, monkeypatch):
    good, _ = run_flow(capture_flow, url=fresh_portal.page_url)
    assert good.is_successful()
    before = query(db, "SELECT count(*), min(capturado_em) FROM raw.terceirizados")
    with tiny_filesystem(tmp_path, "16k") as full:
        monkeypatch.setenv("DATA_DIR", str(full))
        state, run_id = run_flow(capture_flow, url=fresh_portal.page_url)
        leftovers = [p.name for p in full.rglob("*.tmp")]
    assert state.is_failed()
    [(message,)] = query(db, "SELECT mensagem FROM logs.execucoes WHERE id_execucao = %s", (run_id,))
    assert "pasta de DATA_DIR" in message and "disco cheio" in message and str(full) in message
    assert leftovers == []
    assert query(db, "SELECT count(*), min(capturado_em) FROM raw.terceirizados") == before


def test_a_read_only_data_dir_fails_naming_it(db, fresh_portal, tmp_path, monkeypatch):
    with tiny_filesystem(tmp_path, read_only=True) as frozen:
        monkeypatch.setenv("DATA_DIR", str(frozen / "dados"))
        state, run_id = run_flow(capture_flow, url=fresh_portal.page_url)
    assert state.is_failed()
    [(message,)] = query(db, "SELECT mensagem FROM logs.execucoes WHERE id_execucao = %s", (run_id,))
    assert "pasta de DATA_DIR" in message and "somente leitura" in message


def test_a_full_log_dir_never_ends_as_success(db, fresh_portal, tmp_path, monkeypatch):
    with tiny_filesystem(tmp_path, "8k") as full:
        (full / "enche").write_bytes(b"x" * 4096)  # leaves room for the files, not for the records
        monkeypatch.setenv("LOG_DIR", str(full))
        state, run_id = run_flow(capture_flow, url=fresh_portal.page_url)
    assert state.is_failed()
    [(status, message)] = query(
        db, "SELECT estado_final, mensagem FROM logs.execucoes WHERE id_execucao = %s", (run_id,)
    )
    assert status == "Failed"
    assert "upload_logs_to_database" in message and "pasta de LOG_DIR" in message and "disco cheio" in message


def test_a_read_only_log_dir_fails_at_set_up_naming_it(db, fresh_portal, tmp_path, monkeypatch):
    with tiny_filesystem(tmp_path, read_only=True) as frozen:
        monkeypatch.setenv("LOG_DIR", str(frozen))
        with pytest.raises(StorageError, match="pasta de LOG_DIR.*somente leitura"):
            logs.setup_log_file(load_settings().log_dir, "teste", "r1")
        state, _ = run_flow(capture_flow, url=fresh_portal.page_url)
    assert state.is_failed()


CHILD_OF_A_RUN = """
import multiprocessing, os, sys, time
from datetime import UTC, datetime
from pipelines import runs
from pipelines.settings import load_settings

runs.start_run(load_settings(), sys.argv[1], "adm_cgu_terceirizados__historic_capture", datetime.now(UTC), {})
worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(120,))
worker.start()
print(worker.pid, flush=True)
time.sleep(120)
"""


def test_workers_of_a_killed_run_neither_outlive_it_nor_keep_it_running(db, settings):
    """kill -9 of a historic capture left its forked Dask workers alive (parent: init), and
    they held the inherited connection that keeps the run's lease: the run stayed Running
    after every later start."""
    run_id = "teste-workers-orfaos"
    parent = subprocess.Popen(
        [sys.executable, "-c", CHILD_OF_A_RUN, run_id],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    worker = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)

    def gone() -> bool:
        try:
            return Path(f"/proc/{worker}/stat").read_text().split()[2] == "Z"  # a zombie is gone too
        except FileNotFoundError:
            return True

    wait_until(gone, 15)
    assert runs.mark_interrupted_runs(settings) == [(run_id, "adm_cgu_terceirizados__historic_capture")]
    assert query(db, "SELECT estado_final FROM logs.execucoes WHERE id_execucao = %s", (run_id,)) == [("Interrompida",)]
