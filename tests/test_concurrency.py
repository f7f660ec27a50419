"""Concurrent runs on real PostgreSQL: loads of one period are serialized by an advisory
lock, the database itself refuses a second copy of a row, a database being created by
two processes at once is fine, and materializations wait for loads and for each other."""

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg2
import pytest

from bench.dbtools import drop_database
from pipelines import database, raw_loads
from pipelines.constants import RAW_COLUMNS
from pipelines.settings import load_settings
from tests.conftest import query

ROOT = Path(__file__).resolve().parent.parent
PERIOD = date(2031, 1, 1)  # a period no other test loads


def write_period_csv(path: Path, rows: int, tag: str, period: date = PERIOD) -> Path:
    """A local CSV as the capture writes it: RAW_COLUMNS order, ';'-separated."""
    lines = [";".join(RAW_COLUMNS)]
    for number in range(1, rows + 1):
        values = [f"{tag}{number}"] + [""] * 22
        metadata = [
            period.isoformat(),
            "t.csv",
            "http://x/t.csv",
            "abc",
            str(number + 1),
            "",
            datetime(2031, 1, 2, tzinfo=UTC).isoformat(),
        ]
        lines.append(";".join(values + metadata))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def record(rows: int, run_id: str, period: date = PERIOD, sha256: str = "abc") -> raw_loads.CaptureRecord:
    return raw_loads.CaptureRecord(
        period=period,
        file_name="t.csv",
        url="http://x/t.csv",
        file_format="csv",
        encoding="utf-8",
        sha256=sha256,
        etag=None,
        last_modified=None,
        size_bytes=1,
        data_rows=rows,
        loaded_rows=rows,
        repaired_rows=0,
        quarantined_rows=0,
        notes=None,
        captured_at=datetime.now(UTC),
        run_id=run_id,
    )


def waiting_backends(conn, pattern: str) -> int:
    """Backends of the test database waiting on a lock whose query matches ``pattern``."""
    [(count,)] = query(
        conn,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND query ILIKE %s",
        (pattern,),
    )
    return count


def wait_until(condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condição não atingida a tempo")
        time.sleep(0.05)


def two_loads_in_flight(db, settings, first, second) -> None:
    """Run the loads ``first`` and ``second`` (callables) so that both start before either
    commits: the test holds the first at the quarantine table until the second waits too."""
    blocker = psycopg2.connect(**settings.postgres_dsn())
    blocker.autocommit = False
    with blocker.cursor() as cursor:
        cursor.execute("LOCK TABLE raw.terceirizados_quarentena IN ACCESS EXCLUSIVE MODE")
    threads = [threading.Thread(target=first)]
    threads[0].start()
    wait_until(lambda: waiting_backends(db, "%terceirizados_quarentena%") == 1)
    threads.append(threading.Thread(target=second))
    threads[1].start()
    # the second load waits for the first: on a lock of the load (or, without it, on the quarantine table)
    wait_until(lambda: waiting_backends(db, "%") == 2)
    blocker.rollback()
    blocker.close()
    for thread in threads:
        thread.join(60)


def test_two_loads_of_one_period_at_once_leave_exactly_one_copy(db, settings, tmp_path):
    """Both loads start before either commits (held at the quarantine table by the test):
    without serialization both DELETEs see nothing and both COPYs land."""
    first = write_period_csv(tmp_path / "a.csv", 300, "A")
    second = write_period_csv(tmp_path / "b.csv", 300, "B")
    errors = []

    def load(csv_file, run_id):
        try:
            raw_loads.load_period(settings, csv_file, [], record(300, run_id))
        except Exception as exc:  # collected and checked below
            errors.append(exc)

    two_loads_in_flight(db, settings, lambda: load(first, "run-a"), lambda: load(second, "run-b"))
    assert errors == []
    rows = query(
        db,
        "SELECT left(id_terc, 1), count(*), count(DISTINCT linha_origem) FROM raw.terceirizados "
        "WHERE periodo = %s GROUP BY 1",
        (PERIOD,),
    )
    assert rows == [("B", 300, 300)]  # the second load replaced the first, whole
    assert query(db, "SELECT id_execucao, linhas_carregadas FROM raw.capturas WHERE periodo = %s", (PERIOD,)) == [
        ("run-b", 300)
    ]


def test_one_file_loaded_under_two_periods_at_once_is_loaded_once(db, settings, tmp_path):
    """Two links of the page point to one file: its loads under two periods run at once (the
    historic capture loads periods in parallel). Both start before either commits; the second
    waits for the first on the file's lock, then finds the file loaded for the other period
    and is refused. Checked before the transaction, both would have found nothing and loaded."""
    periods = [date(2031, 5, 1), date(2031, 9, 1)]
    files = [write_period_csv(tmp_path / f"{p:%Y%m}.csv", 30, f"P{p.month}", p) for p in periods]
    outcomes = {}

    def load(period, csv_file):
        try:
            outcomes[period] = raw_loads.load_period(settings, csv_file, [], record(30, "r", period, "mesmo-arquivo"))
        except Exception as exc:  # collected and checked below
            outcomes[period] = exc

    two_loads_in_flight(db, settings, lambda: load(periods[0], files[0]), lambda: load(periods[1], files[1]))
    assert outcomes[periods[0]] == 30
    assert isinstance(outcomes[periods[1]], raw_loads.FileOfAnotherPeriodError)
    assert outcomes[periods[1]].periods == ["2031-05"]
    assert query(
        db,
        "SELECT to_char(periodo, 'YYYY-MM'), count(*) FROM raw.terceirizados WHERE periodo = ANY(%s) GROUP BY 1",
        (periods,),
    ) == [("2031-05", 30)]
    assert query(db, "SELECT to_char(periodo, 'YYYY-MM') FROM raw.capturas WHERE periodo = ANY(%s)", (periods,)) == [
        ("2031-05",)
    ]


def test_the_database_refuses_a_second_copy_of_a_row(db):
    """Even a code path that forgets the lock cannot duplicate (periodo, linha_origem)."""
    insert = (
        "INSERT INTO raw.terceirizados (periodo, arquivo_origem, url_origem, sha256_arquivo, linha_origem, "
        "capturado_em) VALUES (%s, 'f', 'u', 's', 2, now())"
    )
    with db.cursor() as cursor:
        cursor.execute(insert, (PERIOD,))
        with pytest.raises(psycopg2.errors.UniqueViolation):
            cursor.execute(insert, (PERIOD,))


def test_a_database_created_by_many_processes_at_once(settings):
    """CREATE DATABASE by concurrent creators: nobody dies with 'already exists'."""
    name = "terceirizados_test_concorrente"
    script = (
        "import sys; from pipelines import database; from pipelines.settings import load_settings\n"
        "database.ensure_schema(load_settings())\n"
    )
    env = {**os.environ, "POSTGRES_DB": name}
    try:
        for _ in range(4):
            drop_database(settings, name)
            processes = [
                subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
                for _ in range(6)
            ]
            failures = [(p.wait(60), p.stderr.read()) for p in processes]
            assert [f for f in failures if f[0] != 0] == []
    finally:
        drop_database(settings, name)


def test_a_load_waits_while_a_materialization_holds_the_raw_data(db, settings, tmp_path):
    csv_file = write_period_csv(tmp_path / "a.csv", 10, "A")
    done = threading.Event()
    with database.materialization_lock(settings, "teste"):
        loader = threading.Thread(
            target=lambda: (raw_loads.load_period(settings, csv_file, [], record(10, "r")), done.set())
        )
        loader.start()
        wait_until(lambda: waiting_backends(db, "%pg_advisory_xact_lock_shared%") == 1)
        assert not done.is_set()
        assert query(db, "SELECT count(*) FROM raw.terceirizados WHERE periodo = %s", (PERIOD,)) == [(0,)]
    loader.join(30)
    assert done.is_set()
    assert query(db, "SELECT count(*) FROM raw.terceirizados WHERE periodo = %s", (PERIOD,)) == [(10,)]


def test_a_second_materialization_waits_then_fails_clearly_past_the_limit(db, settings, monkeypatch):
    monkeypatch.setenv("LOCK_WAIT_SECONDS", "1")
    impatient = load_settings()
    with database.materialization_lock(settings, "primeira"):
        started = time.monotonic()
        with pytest.raises(database.ConcurrentRunError, match="Outra execução .*materialização.*em andamento"):
            with database.materialization_lock(impatient, "segunda"):
                pass
        assert time.monotonic() - started < 15
    with database.materialization_lock(impatient, "terceira"):  # free again once the first ended
        pass


def run_processes(commands: list[list[str]], timeout: float = 240) -> list[tuple[int, str]]:
    """Start every command at once (real processes), wait for all; (exit code, output) each."""
    processes = [
        subprocess.Popen(
            [sys.executable, *command],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for command in commands
    ]
    return [(p.wait(timeout), p.stdout.read()) for p in processes]


def test_captures_and_a_forced_historic_capture_at_once(db, fresh_portal):
    """Two run/capture.py and one run/historic_capture.py --forcar started together: every
    period ends with exactly one copy, and raw.capturas agrees with the table."""
    url = fresh_portal.page_url
    outcomes = run_processes(
        [
            ["run/capture.py", "--url", url],
            ["run/capture.py", "--url", url],
            ["run/historic_capture.py", "--url", url, "--forcar"],
        ]
    )
    assert [code for code, _ in outcomes] == [0, 0, 0], outcomes
    expectations = fresh_portal.portal.expectations
    loaded = query(
        db,
        "SELECT to_char(periodo, 'YYYY-MM'), count(*), count(DISTINCT linha_origem), "
        "count(DISTINCT capturado_em) FROM raw.terceirizados GROUP BY 1 ORDER BY 1",
    )
    assert loaded == [(label, e.loaded_rows, e.loaded_rows, 1) for label, e in sorted(expectations.items())]
    assert query(
        db,
        "SELECT to_char(c.periodo, 'YYYY-MM'), c.linhas_carregadas, "
        "(SELECT count(*) FROM raw.terceirizados t WHERE t.periodo = c.periodo "
        " AND t.capturado_em = c.capturado_em) FROM raw.capturas c ORDER BY 1",
    ) == [(label, e.loaded_rows, e.loaded_rows) for label, e in sorted(expectations.items())]


def test_two_materializations_at_once_both_succeed_one_after_the_other(db, fresh_portal):
    from pipelines.flows import capture_flow
    from tests.conftest import run_flow

    state, _ = run_flow(capture_flow, url=fresh_portal.page_url)
    assert state.is_successful()
    outcomes = run_processes([["run/materialize.py"], ["run/materialize.py"]])
    assert [code for code, _ in outcomes] == [0, 0], outcomes
    expected = fresh_portal.portal.expectations["2024-05"].loaded_rows
    assert query(db, "SELECT count(*), count(DISTINCT id_terceirizado) FROM staging.transformed") == [
        (expected, expected)
    ]
    assert (
        query(
            db,
            "SELECT estado_final, linhas_carregadas FROM logs.execucoes "
            "WHERE nome_flow = 'adm_cgu_terceirizados__materialize'",
        )
        == [("Success", expected)] * 2
    )


def test_every_advisory_lock_namespace_and_key_is_distinct():
    """Two-key locks (namespace, hashtext(text)) of different kinds must never share a
    namespace: a file's sha256 and a run id hashing alike would make a load wait for a run's
    lease (its own run's: until the lock timeout)."""
    from pipelines import constants

    locks = {
        name: value
        for module in (database, constants)
        for name, value in vars(module).items()
        if name.endswith(("_NAMESPACE", "_LOCK_KEY")) and isinstance(value, int)
    }
    assert {"LOAD_LOCK_NAMESPACE", "FILE_LOCK_NAMESPACE", "RUN_LOCK_NAMESPACE", "RAW_DATA_LOCK_KEY"} <= set(locks)
    assert len(set(locks.values())) == len(locks), locks


def test_a_materialization_behind_an_idle_reader_fails_clearly_instead_of_waiting_forever(
    db, fresh_portal, settings, monkeypatch
):
    """A session left 'idle in transaction' after reading staging.transformed (psql, a BI tool)
    holds a lock that replacing the table must wait for: the materialization waited forever,
    silent, holding the raw data (captures then failed saying another run was in progress)."""
    import psycopg2

    from pipelines.flows import capture_flow
    from tests.conftest import run_flow

    state, _ = run_flow(capture_flow, url=fresh_portal.page_url)
    assert state.is_successful()
    [(first, _)] = run_processes([["run/materialize.py"]])
    assert first == 0
    before = query(db, "SELECT count(*), sum(valor_custo_mensal) FROM staging.transformed")
    reader = psycopg2.connect(**settings.postgres_dsn())
    with reader.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM staging.transformed")  # and the transaction stays open
    monkeypatch.setenv("LOCK_WAIT_SECONDS", "2")
    started = time.monotonic()
    try:
        [(code, output)] = run_processes([["run/materialize.py"]], timeout=180)
    finally:
        reader.rollback()
        reader.close()
    assert time.monotonic() - started < 150
    assert code != 0
    [(message,)] = query(
        db,
        "SELECT mensagem FROM logs.execucoes WHERE nome_flow = 'adm_cgu_terceirizados__materialize' "
        "ORDER BY iniciado_em DESC LIMIT 1",
    )
    assert "esperou mais de LOCK_WAIT_SECONDS=2 s por uma trava" in message, message
    assert "idle in transaction" in message
    assert query(db, "SELECT count(*), sum(valor_custo_mensal) FROM staging.transformed") == before
    [(again, _)] = run_processes([["run/materialize.py"]])
    assert again == 0
