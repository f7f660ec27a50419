"""PostgreSQL: connections (with the cause of an outage named), the schema (DDL), the
advisory locks that serialize loads and materializations, and row counts. Identifiers
come from ``constants`` only and are always quoted with ``psycopg2.sql.Identifier``."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

import psycopg2
from psycopg2 import sql

from pipelines import constants as c
from pipelines.errors import (
    ConcurrentRunError,
    ConfigError,
    DatabaseUnavailableError,
    PipelineError,
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
    # Where a run runs, to tell a live run from one whose process died (see runs.mark_interrupted_runs).
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
FILE_LOCK_NAMESPACE = 731_504  # with hashtext(sha256): loads of one file, under any period
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


def distinct_values_sql(relation: str, column: str, descending: bool = False) -> str:
    """The distinct non-null values of ``column`` (as ``v``, in its order, or the reverse with
    ``descending``) by a loose scan of a B-tree index that starts with it: each step jumps to the
    next value, so the cost follows the distinct values, not the rows. ``relation`` and
    ``column`` go into the SQL as given (quoted where needed)."""
    order, step = (" DESC", "<") if descending else ("", ">")
    return f"""WITH RECURSIVE valores(v) AS (
        (SELECT {column} FROM {relation} WHERE {column} IS NOT NULL ORDER BY {column}{order} LIMIT 1)
        UNION ALL
        SELECT (SELECT {column} FROM {relation} WHERE {column} {step} valores.v ORDER BY {column}{order} LIMIT 1)
        FROM valores WHERE valores.v IS NOT NULL
    ) SELECT v FROM valores WHERE v IS NOT NULL"""


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


def wait_for_lock(cursor, settings: Settings, statement: str, params: tuple, what: str, holder_kind: str) -> None:
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
                wait_for_lock(
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


def count_rows(settings: Settings, schema: str, name: str) -> int:
    with connection(settings) as conn, conn.cursor() as cursor:
        cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(table(schema, name)))
        return cursor.fetchone()[0]
