"""PostgreSQL: connections, the raw data model, atomic per-period COPY loads,
and the logs/runs tables. Identifiers come from ``constants`` only and are
always quoted with ``psycopg2.sql.Identifier``."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import astuple, dataclass, fields
from datetime import date, datetime
from pathlib import Path

import psycopg2
from psycopg2 import sql
from psycopg2.extras import Json, execute_values

from pipelines import constants as c
from pipelines.errors import (
    ConcurrentRunError,
    ConfigError,
    DatabaseUnavailableError,
    PipelineError,
    RawDataMissingError,
    first_line,
)
from pipelines.settings import Settings

logger = logging.getLogger("pipelines.database")


def table(schema: str, name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


RAW = table(c.RAW_SCHEMA, c.RAW_TABLE)
QUARANTINE = table(c.RAW_SCHEMA, c.QUARANTINE_TABLE)
CAPTURES = table(c.RAW_SCHEMA, c.CAPTURES_TABLE)
LOG_RECORDS = table(c.LOGS_SCHEMA, c.LOG_RECORDS_TABLE)
RUNS = table(c.LOGS_SCHEMA, c.RUNS_TABLE)

_source_columns = sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(n)) for n in c.SOURCE_COLUMNS)

DDL = [
    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(c.RAW_SCHEMA)),
    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(c.LOGS_SCHEMA)),
    sql.SQL(
        """CREATE TABLE IF NOT EXISTS {raw} (
            {source_columns},
            periodo date NOT NULL,
            arquivo_origem text NOT NULL,
            url_origem text NOT NULL,
            sha256_arquivo text NOT NULL,
            linha_origem integer NOT NULL,
            observacao_reparo text,
            capturado_em timestamptz NOT NULL
        )"""
    ).format(raw=RAW, source_columns=_source_columns),
    # The database itself refuses a second copy of a source line, whatever code path loads
    # it: (periodo, linha_origem) is unique. The B-tree also finds a period's rows for the
    # replace-by-period DELETE (it replaced a BRIN index, which could not be unique).
    sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS terceirizados_periodo_linha_key ON {} (periodo, linha_origem)").format(
        RAW
    ),
    sql.SQL("DROP INDEX IF EXISTS {}.terceirizados_periodo_brin").format(sql.Identifier(c.RAW_SCHEMA)),
    sql.SQL(
        """CREATE TABLE IF NOT EXISTS {quarantine} (
            periodo date NOT NULL,
            arquivo_origem text NOT NULL,
            url_origem text NOT NULL,
            sha256_arquivo text NOT NULL,
            linha_origem integer NOT NULL,
            motivo text NOT NULL,
            linha_bruta text NOT NULL,
            capturado_em timestamptz NOT NULL,
            PRIMARY KEY (periodo, linha_origem)
        )"""
    ).format(quarantine=QUARANTINE),
    sql.SQL(
        """CREATE TABLE IF NOT EXISTS {captures} (
            periodo date PRIMARY KEY,
            arquivo_origem text NOT NULL,
            url_origem text NOT NULL,
            formato text NOT NULL,
            codificacao text NOT NULL,
            sha256_arquivo text NOT NULL,
            etag text,
            last_modified text,
            tamanho_bytes bigint NOT NULL,
            linhas_arquivo integer NOT NULL,
            linhas_carregadas integer NOT NULL,
            linhas_reparadas integer NOT NULL,
            linhas_quarentena integer NOT NULL,
            observacoes text,
            capturado_em timestamptz NOT NULL,
            id_execucao text,
            CHECK (linhas_carregadas + linhas_quarentena = linhas_arquivo)
        )"""
    ).format(captures=CAPTURES),
    # The latest attempt at each period, loaded or refused: a refused file (no loadable row,
    # too many quarantined lines) leaves the loaded columns above, and the data, untouched.
    # A period whose first attempt was refused has a row with the loaded columns empty.
    *[
        sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(CAPTURES, sql.Identifier(name), sql.SQL(kind))
        for name, kind in (
            ("tentativa_em", "timestamptz"),
            ("tentativa_situacao", "text"),
            ("tentativa_motivo", "text"),
            ("tentativa_sha256", "text"),
            ("tentativa_linhas_arquivo", "integer"),
            ("tentativa_linhas_carregaveis", "integer"),
            ("tentativa_linhas_quarentena", "integer"),
            ("tentativa_id_execucao", "text"),
        )
    ],
    *[
        sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL").format(CAPTURES, sql.Identifier(name))
        for name in (
            "arquivo_origem",
            "url_origem",
            "formato",
            "codificacao",
            "sha256_arquivo",
            "tamanho_bytes",
            "linhas_arquivo",
            "linhas_carregadas",
            "linhas_reparadas",
            "linhas_quarentena",
            "capturado_em",
        )
    ],
    sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS capturas_carga_completa").format(CAPTURES),
    sql.SQL("""ALTER TABLE {} ADD CONSTRAINT capturas_carga_completa CHECK (
        (capturado_em IS NULL AND sha256_arquivo IS NULL AND linhas_carregadas IS NULL)
        OR (capturado_em IS NOT NULL AND sha256_arquivo IS NOT NULL AND arquivo_origem IS NOT NULL
            AND url_origem IS NOT NULL AND formato IS NOT NULL AND codificacao IS NOT NULL
            AND tamanho_bytes IS NOT NULL AND linhas_arquivo IS NOT NULL AND linhas_carregadas IS NOT NULL
            AND linhas_reparadas IS NOT NULL AND linhas_quarentena IS NOT NULL))""").format(CAPTURES),
    sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS capturas_tentativa_situacao").format(CAPTURES),
    sql.SQL(
        "ALTER TABLE {} ADD CONSTRAINT capturas_tentativa_situacao "
        "CHECK (tentativa_situacao IN ('carregada', 'recusada'))"
    ).format(CAPTURES),
    sql.SQL(
        """CREATE TABLE IF NOT EXISTS {runs} (
            id_execucao text PRIMARY KEY,
            nome_flow text NOT NULL,
            iniciado_em timestamptz NOT NULL,
            finalizado_em timestamptz,
            estado_final text NOT NULL,
            mensagem text,
            parametros jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            linhas_carregadas bigint,
            linhas_quarentena bigint,
            linhas_reparadas bigint
        )"""
    ).format(runs=RUNS),
    sql.SQL(
        """CREATE TABLE IF NOT EXISTS {records} (
            id bigserial PRIMARY KEY,
            nome_flow text NOT NULL,
            id_execucao text NOT NULL,
            registrado_em timestamptz NOT NULL,
            nivel text NOT NULL,
            nome_task text,
            logger text NOT NULL,
            mensagem text NOT NULL
        )"""
    ).format(records=LOG_RECORDS),
    sql.SQL("CREATE INDEX IF NOT EXISTS registros_id_execucao_idx ON {} (id_execucao)").format(LOG_RECORDS),
    # Where a run runs, to tell a live run from one whose process died (see mark_interrupted_runs).
    sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS host text").format(RUNS),
    sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS evento text").format(LOG_RECORDS),
    # Which machine saved a period's raw file and CSV (a Dask worker's, on a cluster).
    sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS host_arquivos text").format(CAPTURES),
    sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS pid integer").format(RUNS),
    # The facts of a structured event (evento), as JSON: e.g. a dbt warning's test and rows.
    sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS detalhe jsonb").format(LOG_RECORDS),
]

# What ensure_schema checks before running any DDL: when every relation and column is there,
# no DDL runs, so starting a flow never takes a lock that waits for another run's load.
REQUIRED_RELATIONS = (
    f"{c.RAW_SCHEMA}.{c.RAW_TABLE}",
    f"{c.RAW_SCHEMA}.terceirizados_periodo_linha_key",
    f"{c.RAW_SCHEMA}.{c.QUARANTINE_TABLE}",
    f"{c.RAW_SCHEMA}.{c.CAPTURES_TABLE}",
    f"{c.LOGS_SCHEMA}.{c.RUNS_TABLE}",
    f"{c.LOGS_SCHEMA}.{c.LOG_RECORDS_TABLE}",
    f"{c.LOGS_SCHEMA}.registros_id_execucao_idx",
)
REQUIRED_COLUMNS = (
    (c.RAW_SCHEMA, c.CAPTURES_TABLE, "tentativa_id_execucao"),
    (c.LOGS_SCHEMA, c.RUNS_TABLE, "pid"),
    (c.RAW_SCHEMA, c.CAPTURES_TABLE, "host_arquivos"),
    (c.LOGS_SCHEMA, c.LOG_RECORDS_TABLE, "evento"),
    (c.LOGS_SCHEMA, c.LOG_RECORDS_TABLE, "detalhe"),
)

# Advisory lock keys (arbitrary constants). DDL: serialises schema changes. LOAD: one
# period's load (second key: the period as yyyymm). RAW_DATA: loads hold it shared, a
# materialization exclusive, so a model never reads a half-replaced raw table.
DDL_LOCK_KEY = 7_315_020_241
LOAD_LOCK_NAMESPACE = 731_502
RAW_DATA_LOCK_KEY = 7_315_020_242
RUN_LOCK_NAMESPACE = 731_503

# Driver messages that mean "the server is not answering now" rather than a wrong setting.
_UNAVAILABLE_MARKERS = (
    "connection refused",
    "the database system is",
    "server closed the connection",
    "timeout expired",
    "terminating connection",
    "connection already closed",
    "could not receive data",
    "could not send data",
    "no connection to the server",
    "ssl syscall error",
    "server conn crashed",
    "connection timed out",
)


# What the driver's usual texts mean, for the people who read the messages.
_EXPLAINED = {
    "AdminShutdown": "o PostgreSQL foi desligado ou reiniciado, ou um administrador encerrou a conexão",
    "CrashShutdown": "o PostgreSQL caiu e está se recuperando",
    "CannotConnectNow": "o PostgreSQL está iniciando ou desligando",
    "server closed the connection unexpectedly": "o servidor encerrou a conexão inesperadamente (PostgreSQL "
    "reiniciado ou parado, ou a conexão foi terminada)",
}


def describe_database_error(error: BaseException) -> str:
    """The cause of a driver error in one line, with the SQLSTATE name when there is one
    (``AdminShutdown``: the server was shut down or restarted), looking through the chain
    of exceptions so a later "connection already closed" never hides the first cause."""
    causes, seen = [], []
    current = error
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        if isinstance(current, psycopg2.Error):
            name = type(current).__name__
            text = first_line(current)
            explained = _EXPLAINED.get(name) or next((v for k, v in _EXPLAINED.items() if k in text), None)
            generic = name in ("Error", "OperationalError", "InterfaceError", "DatabaseError")
            label = text if generic else f"{name}: {text}"
            causes.append(f"{label} — {explained}" if explained else label)
        current = current.__cause__ or current.__context__
    return "; ".join(causes) if causes else first_line(error)


def is_unavailable(error: BaseException) -> bool:
    """True for errors that mean the server is down or restarting, not misconfigured."""
    if isinstance(
        error, (psycopg2.errors.AdminShutdown, psycopg2.errors.CrashShutdown, psycopg2.errors.CannotConnectNow)
    ):
        return True
    if isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        text = str(error).lower()
        return any(marker in text for marker in _UNAVAILABLE_MARKERS)
    return False


def _coordinates(settings: Settings, database: str | None) -> str:
    return (
        f"POSTGRES_HOST={settings.postgres_host} POSTGRES_PORT={settings.postgres_port} "
        f"POSTGRES_USER={settings.postgres_user} POSTGRES_DB={database or settings.postgres_db}"
    )


def connect(settings: Settings, database: str | None = None, wait_seconds: float = 0.0):
    """Open a connection, translating failures into a message that names the variables.

    ``wait_seconds``: keep retrying that long while the server is unavailable (restarting,
    refusing connections); then ``DatabaseUnavailableError``. A wrong setting fails at once."""
    deadline = time.monotonic() + wait_seconds
    delay = 0.5
    while True:
        try:
            return psycopg2.connect(**settings.postgres_dsn(database))
        except psycopg2.OperationalError as exc:
            detail = first_line(exc)
            if not is_unavailable(exc):
                raise ConfigError(
                    f"Não foi possível conectar ao PostgreSQL em {_coordinates(settings, database)}: {detail}"
                ) from exc
            if time.monotonic() + delay > deadline:
                raise DatabaseUnavailableError(
                    f"O PostgreSQL está indisponível em {_coordinates(settings, database)}"
                    + (f" (esperados {wait_seconds:g} s)" if wait_seconds else "")
                    + f": {detail}"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


@contextmanager
def connection(settings: Settings, wait_seconds: float = 0.0):
    conn = connect(settings, wait_seconds=wait_seconds)
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def transaction(settings: Settings, what: str, wait_seconds: float = 0.0):
    """A connection inside one transaction: committed at the end, rolled back on any error.

    A server that goes away mid-transaction is reported with its real cause (for example
    ``AdminShutdown``) instead of the rollback's "connection already closed"."""
    conn = connect(settings, wait_seconds=wait_seconds)
    try:
        try:
            yield conn
            conn.commit()
        except BaseException as exc:
            try:
                conn.rollback()
            except psycopg2.Error:
                pass  # the connection is gone: the server rolls the transaction back itself
            if is_unavailable(exc):
                raise DatabaseUnavailableError(
                    f"O PostgreSQL ficou indisponível durante {what} ({describe_database_error(exc)}); "
                    "nada desta transação foi gravado."
                ) from exc
            raise
    finally:
        try:
            conn.close()
        except psycopg2.Error:
            pass


def ensure_database(settings: Settings) -> None:
    """Create the database named in POSTGRES_DB if it does not exist (another process
    creating it at the same moment is fine)."""
    conn = connect(settings, "postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (settings.postgres_db,))
            if cursor.fetchone() is not None:
                return
            try:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(settings.postgres_db)))
                logger.info("Banco de dados %s criado.", settings.postgres_db)
            except (psycopg2.errors.DuplicateDatabase, psycopg2.errors.UniqueViolation):
                pass  # a concurrent creator won: the database exists, which is what we need
    finally:
        conn.close()


def drop_database(settings: Settings, name: str) -> None:
    """Drop a database, closing its connections (test and benchmark databases)."""
    conn = connect(settings, "postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        conn.close()


def _schema_complete(cursor) -> bool:
    cursor.execute(
        """SELECT (SELECT count(*) FROM unnest(%s::text[]) AS r(name) WHERE to_regclass(r.name) IS NULL)
                + (SELECT count(*) FROM unnest(%s::text[], %s::text[], %s::text[]) AS t(sch, tbl, col)
                   WHERE NOT EXISTS (SELECT 1 FROM information_schema.columns i WHERE i.table_schema = t.sch
                                     AND i.table_name = t.tbl AND i.column_name = t.col))""",
        (list(REQUIRED_RELATIONS), *map(list, zip(*REQUIRED_COLUMNS))),
    )
    return cursor.fetchone()[0] == 0


def ensure_schema(settings: Settings) -> None:
    """Create the database, schemas and tables the flows write to (idempotent; no DDL,
    and so no lock, when everything is already there)."""
    ensure_database(settings)
    with connection(settings) as conn, conn:
        with conn.cursor() as cursor:
            if _schema_complete(cursor):
                return
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK_KEY,))
            try:
                for statement in DDL:
                    cursor.execute(statement)
            except psycopg2.errors.UniqueViolation as exc:
                raise PipelineError(
                    "raw.terceirizados tem linhas repetidas de (periodo, linha_origem), carregadas por duas "
                    "capturas simultâneas de uma versão anterior do pipeline: recapture os períodos afetados "
                    "(python run/historic_capture.py --forcar) depois de apagá-los, ou veja-os com "
                    "SELECT periodo, count(*) - count(DISTINCT linha_origem) FROM raw.terceirizados GROUP BY 1."
                ) from exc


def _lock_wait(cursor, settings: Settings, statement: str, params: tuple, what: str, holder_kind: str) -> None:
    """Take an advisory lock, waiting at most LOCK_WAIT_SECONDS; past that, fail naming the holder."""
    cursor.execute("SET LOCAL lock_timeout = %s", (f"{int(settings.lock_wait_seconds * 1000)}ms",))
    try:
        cursor.execute(statement, params)
    except psycopg2.errors.LockNotAvailable as exc:
        raise ConcurrentRunError(
            f"Outra execução ({holder_kind}) está em andamento com os mesmos dados e não terminou em "
            f"LOCK_WAIT_SECONDS={settings.lock_wait_seconds:g} s: {what} não foi feita; os dados anteriores "
            "estão intactos. Tente de novo quando a outra execução terminar."
        ) from exc
    cursor.execute("SET LOCAL lock_timeout = 0")


def hold_raw_data(settings: Settings, name: str):
    """Hold the raw data for a materialization and return the connection that holds it:
    waits for loads in progress (and another materialization) and makes new loads wait
    until ``release_raw_data``. Released by PostgreSQL when the connection closes, so a
    crashed run never leaves it behind."""
    conn = connect(settings)
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", (RAW_DATA_LOCK_KEY,))
            if not cursor.fetchone()[0]:
                logger.info(
                    "Materialização %s aguardando outra execução terminar (captura ou materialização em andamento).",
                    name,
                )
                conn.autocommit = False
                _lock_wait(
                    cursor,
                    settings,
                    "SELECT pg_advisory_lock(%s)",
                    (RAW_DATA_LOCK_KEY,),
                    f"a materialização {name}",
                    "captura ou materialização",
                )
                conn.commit()  # the session-level lock outlives the transaction
                conn.autocommit = True
    except BaseException:
        release_raw_data(conn)
        raise
    return conn


def release_raw_data(conn) -> None:
    try:
        conn.close()
    except psycopg2.Error:
        pass


@contextmanager
def materialization_lock(settings: Settings, name: str):
    """``hold_raw_data`` for the duration of a ``with`` block."""
    conn = hold_raw_data(settings, name)
    try:
        yield
    finally:
        release_raw_data(conn)


@dataclass(frozen=True)
class CaptureRecord:
    """What one period's capture loaded; one row of ``raw.capturas``."""

    period: date
    file_name: str
    url: str
    file_format: str
    encoding: str
    sha256: str
    etag: str | None
    last_modified: str | None
    size_bytes: int
    data_rows: int
    loaded_rows: int
    repaired_rows: int
    quarantined_rows: int
    notes: str | None
    captured_at: datetime
    run_id: str | None
    files_host: str | None = None


def load_period(settings: Settings, csv_file: Path, quarantine: list, record: CaptureRecord) -> int:
    """Replace one period in ``raw.terceirizados`` (and its quarantine and capture
    record) in a single transaction. On any error nothing changes.

    Loads of the same period are serialized by a transaction-level advisory lock taken
    before the DELETE, so two concurrent captures end with exactly one copy (the last);
    the unique index on (periodo, linha_origem) refuses a second copy even without it."""
    columns = sql.SQL(", ").join(sql.Identifier(n) for n in c.RAW_COLUMNS)
    copy = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true, DELIMITER {}, ENCODING 'UTF8')").format(
        RAW, columns, sql.Literal(c.CSV_DELIMITER)
    )
    label = record.period.strftime("%Y-%m")
    with transaction(settings, f"a carga do período {label}") as conn:
        with conn.cursor() as cursor:
            _lock_wait(
                cursor,
                settings,
                "SELECT pg_advisory_xact_lock_shared(%s)",
                (RAW_DATA_LOCK_KEY,),
                f"a carga do período {label}",
                "materialização",
            )
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", (LOAD_LOCK_NAMESPACE, period_key(record.period)))
            if not cursor.fetchone()[0]:
                logger.info("Período %s: aguardando outra carga do mesmo período terminar.", label)
                _lock_wait(
                    cursor,
                    settings,
                    "SELECT pg_advisory_xact_lock(%s, %s)",
                    (LOAD_LOCK_NAMESPACE, period_key(record.period)),
                    f"a carga do período {label}",
                    f"carga do período {label}",
                )
            cursor.execute(sql.SQL("DELETE FROM {} WHERE periodo = %s").format(RAW), (record.period,))
            replaced = cursor.rowcount
            # newline="": a carriage return inside a quoted value must reach COPY unchanged
            with csv_file.open("r", encoding="utf-8", newline="") as handle:
                cursor.copy_expert(copy.as_string(conn), handle)
            copied = cursor.rowcount
            if copied != record.loaded_rows:
                raise RuntimeError(
                    f"COPY carregou {copied} linhas de {csv_file}, esperadas {record.loaded_rows}: carga desfeita."
                )
            cursor.execute(sql.SQL("DELETE FROM {} WHERE periodo = %s").format(QUARANTINE), (record.period,))
            execute_values(
                cursor,
                sql.SQL(
                    "INSERT INTO {} (periodo, arquivo_origem, url_origem, sha256_arquivo, linha_origem, "
                    "motivo, linha_bruta, capturado_em) VALUES %s"
                )
                .format(QUARANTINE)
                .as_string(conn),
                [
                    (
                        record.period,
                        record.file_name,
                        record.url,
                        record.sha256,
                        q.line_number,
                        q.reason,
                        q.raw_line,
                        record.captured_at,
                    )
                    for q in quarantine
                ],
            )
            _upsert_capture(cursor, record)
    logger.info(
        "Período %s: %d linhas carregadas em raw.terceirizados (%d substituídas), %d em quarentena.",
        label,
        copied,
        replaced,
        len(quarantine),
    )
    return copied


def period_key(period: date) -> int:
    return period.year * 100 + period.month


def record_refused_capture(settings: Settings, record: CaptureRecord, reason: str) -> None:
    """Note a refused attempt in ``raw.capturas`` without touching the period's data or
    the columns that describe its last good load."""
    with transaction(settings, "o registro da tentativa recusada") as conn, conn.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                """INSERT INTO {} (periodo, tentativa_em, tentativa_situacao, tentativa_motivo, tentativa_sha256,
                       tentativa_linhas_arquivo, tentativa_linhas_carregaveis, tentativa_linhas_quarentena,
                       tentativa_id_execucao)
                   VALUES (%s, %s, 'recusada', %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (periodo) DO UPDATE SET tentativa_em = EXCLUDED.tentativa_em,
                       tentativa_situacao = EXCLUDED.tentativa_situacao, tentativa_motivo = EXCLUDED.tentativa_motivo,
                       tentativa_sha256 = EXCLUDED.tentativa_sha256,
                       tentativa_linhas_arquivo = EXCLUDED.tentativa_linhas_arquivo,
                       tentativa_linhas_carregaveis = EXCLUDED.tentativa_linhas_carregaveis,
                       tentativa_linhas_quarentena = EXCLUDED.tentativa_linhas_quarentena,
                       tentativa_id_execucao = EXCLUDED.tentativa_id_execucao"""
            ).format(CAPTURES),
            (
                record.period,
                record.captured_at,
                reason,
                record.sha256,
                record.data_rows,
                record.loaded_rows,
                record.quarantined_rows,
                record.run_id,
            ),
        )


# raw.capturas columns, in the order of a CaptureRecord's fields
CAPTURE_COLUMNS = (
    "periodo",
    "arquivo_origem",
    "url_origem",
    "formato",
    "codificacao",
    "sha256_arquivo",
    "etag",
    "last_modified",
    "tamanho_bytes",
    "linhas_arquivo",
    "linhas_carregadas",
    "linhas_reparadas",
    "linhas_quarentena",
    "observacoes",
    "capturado_em",
    "id_execucao",
    "host_arquivos",
)


# the latest-attempt columns, set from the same record when a load succeeds
ATTEMPT_COLUMNS = (
    ("tentativa_em", "capturado_em"),
    ("tentativa_sha256", "sha256_arquivo"),
    ("tentativa_linhas_arquivo", "linhas_arquivo"),
    ("tentativa_linhas_carregaveis", "linhas_carregadas"),
    ("tentativa_linhas_quarentena", "linhas_quarentena"),
    ("tentativa_id_execucao", "id_execucao"),
)


# CaptureRecord field of each raw.capturas column
CAPTURE_FIELDS = dict(zip(CAPTURE_COLUMNS, (f.name for f in fields(CaptureRecord))))


def _upsert_capture(cursor, record: CaptureRecord) -> None:
    assignments = [sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name)) for name in CAPTURE_COLUMNS[1:]]
    assignments += [
        sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(attempt), sql.Identifier(loaded))
        for attempt, loaded in ATTEMPT_COLUMNS
    ]
    assignments += [sql.SQL("tentativa_situacao = 'carregada'"), sql.SQL("tentativa_motivo = NULL")]
    cursor.execute(
        sql.SQL(
            "INSERT INTO {} ({}, {}, tentativa_situacao) VALUES ({}, 'carregada') "
            "ON CONFLICT (periodo) DO UPDATE SET {}"
        ).format(
            CAPTURES,
            sql.SQL(", ").join(map(sql.Identifier, CAPTURE_COLUMNS)),
            sql.SQL(", ").join(sql.Identifier(attempt) for attempt, _ in ATTEMPT_COLUMNS),
            sql.SQL(", ").join(sql.Placeholder() * (len(CAPTURE_COLUMNS) + len(ATTEMPT_COLUMNS))),
            sql.SQL(", ").join(assignments),
        ),
        astuple(record) + tuple(getattr(record, CAPTURE_FIELDS[loaded]) for _, loaded in ATTEMPT_COLUMNS),
    )


def last_capture(settings: Settings, period: date) -> dict | None:
    """The capture record of a period, or None if it was never captured."""
    with connection(settings) as conn, conn.cursor() as cursor:
        cursor.execute(
            sql.SQL("SELECT sha256_arquivo, etag, last_modified, url_origem FROM {} WHERE periodo = %s").format(
                CAPTURES
            ),
            (period,),
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip(("sha256", "etag", "last_modified", "url"), row))


# run id -> the connection that holds the run's lease (see start_run), in this process
_LEASES: dict[str, object] = {}


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


def count_rows(settings: Settings, schema: str, name: str) -> int:
    with connection(settings) as conn, conn.cursor() as cursor:
        cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(table(schema, name)))
        return cursor.fetchone()[0]


def captured_periods(settings: Settings) -> list[date]:
    """Periods present in raw.terceirizados, newest first; fails clearly when there are none."""
    with connection(settings) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", (f"{c.RAW_SCHEMA}.{c.RAW_TABLE}",))
        if cursor.fetchone()[0] is None:
            raise RawDataMissingError(
                "A tabela raw.terceirizados não existe: rode antes a captura (python run/capture.py)."
            )
        cursor.execute(sql.SQL("SELECT DISTINCT periodo FROM {} ORDER BY periodo DESC").format(RAW))
        periods = [row[0] for row in cursor.fetchall()]
    if not periods:
        raise RawDataMissingError(
            "A tabela raw.terceirizados está vazia: rode antes a captura (python run/capture.py)."
        )
    return periods


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


def newest_period_materialized(settings: Settings, period: date) -> bool:
    """True when ``period`` is captured and staging.transformed was built from that capture."""
    with connection(settings) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{c.STAGING_SCHEMA}.{c.LATEST_MODELS[-1]}",))
        if not cursor.fetchone()[0]:
            return False
        cursor.execute(
            sql.SQL("""SELECT EXISTS (
                SELECT 1 FROM {captures} c
                WHERE c.periodo = %s AND EXISTS (
                    SELECT 1 FROM {transformed} t
                    WHERE t.ano = extract(year FROM c.periodo) AND t.mes = extract(month FROM c.periodo)
                      AND t.capturado_em = c.capturado_em))""").format(
                captures=CAPTURES, transformed=table(c.STAGING_SCHEMA, c.LATEST_MODELS[-1])
            ),
            (period,),
        )
        return cursor.fetchone()[0]


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
