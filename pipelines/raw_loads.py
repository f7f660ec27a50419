"""Raw loads: atomic, per-period COPY loads into ``raw.terceirizados`` (with the
quarantine and the capture record in ``raw.capturas``), refused attempts, and what was
captured."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import astuple, dataclass, fields
from datetime import date, datetime
from pathlib import Path

from psycopg2 import sql
from psycopg2.extras import execute_values

from pipelines import constants as c
from pipelines.database import (
    CAPTURES,
    FILE_LOCK_NAMESPACE,
    LOAD_LOCK_NAMESPACE,
    QUARANTINE,
    RAW,
    RAW_DATA_LOCK_KEY,
    connection,
    distinct_values_sql,
    transaction,
    wait_for_lock,
)
from pipelines.errors import PipelineError, RawDataMissingError
from pipelines.settings import Settings

logger = logging.getLogger("pipelines.raw_loads")

COPY_BLOCK_SIZE = 1 << 20  # characters per read of the CSV sent to COPY


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


class LoadRefusedError(PipelineError):
    """``refuse_if`` found a reason not to publish the rows just copied: the load was undone."""


# What ``load_period`` asks of the rows it copied, before the commit: how many rows carry each
# (num_mes_carga, mes_carga, ano_carga) as loaded ('' for an empty value) -> a reason to refuse, or None.
LoadFieldsCheck = Callable[[Counter], "str | None"]


class FileOfAnotherPeriodError(PipelineError):
    """The file being loaded is the one (same sha256) already loaded for other periods."""

    def __init__(self, periods: list[str]):
        super().__init__(", ".join(periods))
        self.periods = periods


def load_period(
    settings: Settings,
    csv_file: Path,
    quarantine: list,
    record: CaptureRecord,
    refuse_if: LoadFieldsCheck | None = None,
    before_commit: Callable[[], object] | None = None,
) -> int:
    """Replace one period in ``raw.terceirizados`` (and its quarantine and capture
    record) in a single transaction. On any error nothing changes.

    Loads of the same period are serialized by a transaction-level advisory lock taken
    before the DELETE, so two concurrent captures end with exactly one copy (the last);
    the unique index on (periodo, linha_origem) refuses a second copy even without it.
    A file already loaded for another period (the same sha256: a link pointing to the wrong
    file) is refused with ``FileOfAnotherPeriodError``; loads of the same file under two
    periods at once are serialized by a second lock, so the second one sees the first.
    ``refuse_if`` sees the load fields of the copied rows, counted by PostgreSQL (one scan of
    the period's rows, in the transaction); a reason it returns undoes the load and is raised
    as ``LoadRefusedError``. ``before_commit`` runs last in the transaction, under the period's
    lock (the capture publishes its local files there: in the order the loads commit)."""
    columns = sql.SQL(", ").join(sql.Identifier(n) for n in c.RAW_COLUMNS)
    copy = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true, DELIMITER {}, ENCODING 'UTF8')").format(
        RAW, columns, sql.Literal(c.CSV_DELIMITER)
    )
    label = record.period.strftime("%Y-%m")
    with transaction(settings, f"a carga do período {label}") as conn:
        with conn.cursor() as cursor:
            wait_for_lock(
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
                wait_for_lock(
                    cursor,
                    settings,
                    "SELECT pg_advisory_xact_lock(%s, %s)",
                    (LOAD_LOCK_NAMESPACE, period_key(record.period)),
                    f"a carga do período {label}",
                    f"carga do período {label}",
                )
            cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (FILE_LOCK_NAMESPACE, record.sha256))
            others = _periods_with_file(cursor, record.sha256, record.period)
            if others:
                raise FileOfAnotherPeriodError(others)
            cursor.execute(sql.SQL("DELETE FROM {} WHERE periodo = %s").format(RAW), (record.period,))
            replaced = cursor.rowcount
            # newline="": a carriage return inside a quoted value must reach COPY unchanged
            with csv_file.open("r", encoding="utf-8", newline="") as handle:
                # read in large blocks: the default 8 KiB means thousands of Python calls per file
                cursor.copy_expert(copy.as_string(conn), handle, size=COPY_BLOCK_SIZE)
            copied = cursor.rowcount
            if copied != record.loaded_rows:
                raise RuntimeError(
                    f"COPY carregou {copied} linhas de {csv_file}, esperadas {record.loaded_rows}: carga desfeita."
                )
            if refuse_if is not None:
                reason = refuse_if(_load_field_counts(cursor, record.period))
                if reason:
                    raise LoadRefusedError(reason)
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
            if before_commit is not None:
                before_commit()
    logger.info(
        "Período %s: %d linhas carregadas em raw.terceirizados (%d substituídas), %d em quarentena.",
        label,
        copied,
        replaced,
        len(quarantine),
    )
    return copied


def _load_field_counts(cursor, period: date) -> Counter:
    """How many rows of the period carry each (num_mes_carga, mes_carga, ano_carga)."""
    cursor.execute(
        sql.SQL(
            "SELECT coalesce(num_mes_carga, ''), coalesce(mes_carga, ''), coalesce(ano_carga, ''), count(*) "
            "FROM {} WHERE periodo = %s GROUP BY 1, 2, 3"
        ).format(RAW),
        (period,),
    )
    return Counter({(number, name, year): rows for number, name, year, rows in cursor.fetchall()})


def _periods_with_file(cursor, sha256: str, period: date) -> list[str]:
    """The periods other than ``period`` whose last load was the file with this sha256."""
    cursor.execute(
        sql.SQL(
            "SELECT to_char(periodo, 'YYYY-MM') FROM {} WHERE sha256_arquivo = %s AND periodo <> %s ORDER BY 1"
        ).format(CAPTURES),
        (sha256, period),
    )
    return [row[0] for row in cursor.fetchall()]


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
            sql.SQL(
                "SELECT sha256_arquivo, etag, last_modified, url_origem, linhas_carregadas, tentativa_situacao "
                "FROM {} WHERE periodo = %s"
            ).format(CAPTURES),
            (period,),
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip(("sha256", "etag", "last_modified", "url", "loaded_rows", "attempt"), row))


def record_unchanged_attempt(settings: Settings, period: date, run_id: str | None) -> None:
    """The period's file is again the one of its last load (after a refused attempt): the
    latest attempt is that file, loaded, no longer the refusal."""
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(attempt), sql.Identifier(loaded))
        for attempt, loaded in ATTEMPT_COLUMNS
        if attempt not in ("tentativa_em", "tentativa_id_execucao")
    )
    with transaction(settings, "o registro da tentativa") as conn, conn.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                "UPDATE {} SET {}, tentativa_em = now(), tentativa_id_execucao = %s, tentativa_situacao = 'carregada', "
                "tentativa_motivo = NULL WHERE periodo = %s AND sha256_arquivo IS NOT NULL"
            ).format(CAPTURES, assignments),
            (run_id, period),
        )


def newest_loaded_period(settings: Settings) -> date | None:
    """The newest period in raw.terceirizados (the one staging.raw reads), or None when the
    table is missing or empty (nothing captured yet)."""
    with connection(settings) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", (f"{c.RAW_SCHEMA}.{c.RAW_TABLE}",))
        if cursor.fetchone()[0] is None:
            return None
        # the last entry of the (periodo, linha_origem) key
        cursor.execute(sql.SQL("SELECT max(periodo) FROM {}").format(RAW))
        return cursor.fetchone()[0]


def captured_periods(settings: Settings) -> list[date]:
    """Periods present in raw.terceirizados, newest first; fails clearly when there are none."""
    with connection(settings) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", (f"{c.RAW_SCHEMA}.{c.RAW_TABLE}",))
        if cursor.fetchone()[0] is None:
            raise RawDataMissingError(
                "A tabela raw.terceirizados não existe: rode antes a captura (python run/capture.py)."
            )
        # a loose scan of the (periodo, linha_origem) key: one probe per period, instead of a
        # DISTINCT over every row (0.3-0.6 s on 1.6 million rows at every materialization)
        cursor.execute(distinct_values_sql(f"{c.RAW_SCHEMA}.{c.RAW_TABLE}", "periodo", descending=True))
        periods = [row[0] for row in cursor.fetchall()]
    if not periods:
        raise RawDataMissingError(
            "A tabela raw.terceirizados está vazia: rode antes a captura (python run/capture.py)."
        )
    return periods
