"""Read-only access to the pipeline's tables for the results app.

Every session is read-only (``default_transaction_read_only``); table and column
names coming from the UI are checked against the catalog and quoted by SQLAlchemy's
identifier preparer, and values always travel as bind parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from pipelines import constants as c
from pipelines.database import distinct_values_sql
from pipelines.settings import Settings

LATEST, HISTORIC = c.LATEST_MODELS[-1], c.HISTORIC_MODELS[-1]
RUNS = f"{c.LOGS_SCHEMA}.{c.RUNS_TABLE}"
LOG_RECORDS = f"{c.LOGS_SCHEMA}.{c.LOG_RECORDS_TABLE}"

# The charts' source when the analysis tables are built (see ResultsRepository.chart_source),
# the marts it reads, and the mart of each "largest cost" chart's dimension.
MARTS_SOURCE = f"{c.MARTS_SCHEMA} (tabelas de análise de {c.STAGING_SCHEMA}.{HISTORIC})"
CHART_MARTS = ("totais_por_periodo", "orgaos_por_periodo", "empresas_por_periodo", "escolaridade_por_periodo")
CHART_DIMENSIONS = {"nome_orgao": "orgaos_por_periodo", "razao_social_empresa": "empresas_por_periodo"}

# Tables the app shows, in menu order: (schema, table, label).
TABLES = [
    (c.STAGING_SCHEMA, LATEST, f"Período mais recente ({c.STAGING_SCHEMA}.{LATEST})"),
    (c.STAGING_SCHEMA, HISTORIC, f"Histórico ({c.STAGING_SCHEMA}.{HISTORIC})"),
    (c.RAW_SCHEMA, c.RAW_TABLE, f"Dados brutos ({c.RAW_SCHEMA}.{c.RAW_TABLE})"),
    (c.RAW_SCHEMA, c.QUARANTINE_TABLE, f"Quarentena ({c.RAW_SCHEMA}.{c.QUARANTINE_TABLE})"),
    (c.RAW_SCHEMA, c.CAPTURES_TABLE, f"Capturas por período ({c.RAW_SCHEMA}.{c.CAPTURES_TABLE})"),
    *(
        (c.STAGING_SCHEMA, model, f"{c.STAGING_SCHEMA}.{model}")
        for model in c.LATEST_MODELS[:-1] + c.HISTORIC_MODELS[:-1]
    ),
    # the analysis tables (each with a primary key: pages are in a total order)
    *((c.MARTS_SCHEMA, model, f"Análise: {c.MARTS_SCHEMA}.{model}") for model in c.HISTORIC_MARTS),
]
ALLOWED = {(schema, name) for schema, name, _ in TABLES}
# Row keys of the relations without a unique index (views and intermediate tables): a
# page order must be total, or LIMIT/OFFSET pages repeat and skip rows.
FALLBACK_KEYS = {
    **{
        (c.STAGING_SCHEMA, model): ("periodo", "linha_origem")
        for model in ("raw", "cleaned", "historic_raw", "historic_cleaned")
    },
    **{(c.STAGING_SCHEMA, model): ("ano", "mes", "id_terceirizado") for model in ("renamed", "historic_renamed")},
}
# Exact per-period row counts the pipeline keeps with the rows of its two large tables, written in
# the same transaction as the rows: (the table that keeps them; a query giving each period's key
# values and rows, in key order; the key's leading columns they stand for). A page of the whole table reads them instead
# of counting millions of rows, and a deep page starts at its period instead of skipping rows.
STORED_COUNTS = {
    (c.STAGING_SCHEMA, HISTORIC): (
        f"{c.STAGING_SCHEMA}.periodos_materializados",
        "SELECT extract(year FROM periodo)::integer, extract(month FROM periodo)::integer, linhas "
        f"FROM {c.STAGING_SCHEMA}.periodos_materializados WHERE modelo = '{HISTORIC}' AND linhas > 0 ORDER BY periodo",
        ("ano", "mes"),
    ),
    (c.RAW_SCHEMA, c.RAW_TABLE): (
        f"{c.RAW_SCHEMA}.{c.CAPTURES_TABLE}",
        f"SELECT periodo, linhas_carregadas FROM {c.RAW_SCHEMA}.{c.CAPTURES_TABLE} "
        "WHERE linhas_carregadas > 0 ORDER BY periodo",
        ("periodo",),
    ),
}
# Text columns of the large tables that users filter by "contains" and that have few distinct
# values (agencies, companies): each has a B-tree index (built with the table), and a text
# filter on it first finds the matching distinct values (a loose scan of the index: one probe
# per distinct value, not one per row), then reads their rows through the index.
LOOKUP_COLUMNS = {(c.STAGING_SCHEMA, HISTORIC): ("razao_social_empresa", "nome_orgao")}
# A filtered view counts its rows up to this many; past it the grid learns the end while
# scrolling (AG Grid's unknown row count), instead of a count of millions of rows per page.
FILTERED_COUNT_LIMIT = 10_000
UNKNOWN_COUNT = -1
# From this offset on, a page of a table with stored counts starts at its period's row.
SEEK_FROM_ROW = 10_000
# The table every capture writes first: without it, nothing was ever captured here.
PIPELINE_TABLE = f"{c.RAW_SCHEMA}.{c.RAW_TABLE}"
NUMERIC_TYPES = {"integer", "smallint", "bigint", "numeric", "double precision", "real"}
MAX_EXPORT_ROWS = 2_000_000
STATEMENT_TIMEOUT_SECONDS = 30
# The database cannot answer (refused or dropped connection, server shutting down,
# query cancelled by statement_timeout, pool exhausted). Errors that a request causes
# (a bad value reaching SQL) are not here: they must never read as "database down".
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeoutError)
QUERY_CANCELED = "57014"  # SQLSTATE of a statement cancelled by statement_timeout


class InvalidRequestError(ValueError):
    """A request from the page or an export link that the app cannot answer; the
    message (Portuguese) says why and is shown to the user."""


class UnknownTableError(InvalidRequestError):
    """A table or column name that is not in the catalog."""


def is_query_timeout(error: Exception) -> bool:
    """Whether a database error is a statement cancelled by statement_timeout."""
    return getattr(getattr(error, "orig", None), "pgcode", None) == QUERY_CANCELED


def is_missing_database(error: Exception, database: str) -> bool:
    """Whether a connection failed because the database itself does not exist yet (the
    server answered; the first capture creates it). psycopg2 gives no SQLSTATE for
    connection errors, so the server's message is read, in English or Portuguese."""
    text = str(getattr(error, "orig", None) or error)
    return f'"{database}"' in text and ("does not exist" in text or "não existe" in text)


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str | None

    @property
    def numeric(self) -> bool:
        return self.type in NUMERIC_TYPES


def make_engine(settings: Settings) -> Engine:
    """Connections from the same settings as the pipeline's, read-only and with short timeouts."""
    return create_engine(
        "postgresql+psycopg2://",
        pool_pre_ping=True,
        pool_size=4,
        max_overflow=4,
        connect_args={
            **settings.postgres_dsn(),
            "connect_timeout": 3,
            "application_name": "terceirizados_results",
            "options": f"-c default_transaction_read_only=on -c statement_timeout={STATEMENT_TIMEOUT_SECONDS * 1000}",
        },
    )


class ResultsRepository:
    """The app's only way to the database."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.quote = engine.dialect.identifier_preparer.quote

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def captured_anything(self) -> bool:
        """Whether the pipeline ever wrote here (its raw table exists)."""
        return self.table_exists(c.RAW_SCHEMA, c.RAW_TABLE)

    # -- catalog -----------------------------------------------------------------
    def columns(self, schema: str, table: str) -> list[Column]:
        """Columns, types and comments (dbt docs) of an allowed table; [] if it does not exist."""
        if (schema, table) not in ALLOWED:
            raise UnknownTableError(f"Tabela não permitida: {schema}.{table}")
        query = text("""
            SELECT a.attname, format_type(a.atttypid, NULL), col_description(a.attrelid, a.attnum)
            FROM pg_attribute a
            JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = :schema AND c.relname = :table AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum""")
        with self.engine.connect() as conn:
            rows = conn.execute(query, {"schema": schema, "table": table}).all()
        return [Column(name, type_, description) for name, type_, description in rows]

    def key_columns(self, schema: str, table: str) -> tuple[str, ...]:
        """Columns that identify a row of an allowed table, for a stable page order: the
        primary key, else a unique index on NOT NULL columns, else the table's known key."""
        if (schema, table) not in ALLOWED:
            raise UnknownTableError(f"Tabela não permitida: {schema}.{table}")
        query = text("""
            SELECT array_agg(a.attname ORDER BY k.position)
            FROM pg_index i
            JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, position)
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
            WHERE n.nspname = :schema AND c.relname = :table AND i.indisunique AND i.indisvalid
              AND i.indpred IS NULL AND i.indexprs IS NULL
            GROUP BY i.indexrelid, i.indisprimary
            HAVING bool_and(a.attnotnull)
            ORDER BY i.indisprimary DESC, count(*), i.indexrelid
            LIMIT 1""")
        with self.engine.connect() as conn:
            found = conn.execute(query, {"schema": schema, "table": table}).scalar()
        return tuple(found) if found else FALLBACK_KEYS.get((schema, table), ())

    def relation(self, schema: str, table: str) -> str:
        if (schema, table) not in ALLOWED:
            raise UnknownTableError(f"Tabela não permitida: {schema}.{table}")
        return f"{self.quote(schema)}.{self.quote(table)}"

    # -- grid pages ----------------------------------------------------------------
    def page(
        self, schema: str, table: str, start: int, end: int, sort_model: list | None, filter_model: dict | None
    ) -> tuple[list[dict], int]:
        """One page of rows (server-side paging, sorting and filtering) and the filtered row
        count (UNKNOWN_COUNT when a filter keeps more than FILTERED_COUNT_LIMIT rows)."""
        check_filter_model(filter_model), check_sort_model(sort_model)  # before any query
        columns = {c.name: c for c in self.columns(schema, table)}
        if not columns:
            return [], 0
        where, params = filter_sql(filter_model, columns, self.quote, self._lookups(schema, table))
        key = self._page_key(schema, table, columns)
        order = order_sql(sort_model, columns, self.quote, key)
        relation = self.relation(schema, table)
        limit = max(min(end - start, 1000), 0)
        start = max(start, 0)
        # one snapshot for the counts, the seek and the rows: a load committing in between
        # cannot shift the page
        with self.engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            params = resolve_lookups(conn, params)
            counts = None if where else self._stored_counts(conn, schema, table)
            if counts:
                total = sum(rows for *_, rows in counts)
                if start >= total:  # past the end (a grid that kept an older count): no skip
                    return [], total
            elif where:
                total = conn.execute(
                    text(f"SELECT count(*) FROM (SELECT 1 FROM {relation}{where} LIMIT :cap) AS filtradas"),
                    {**params, "cap": FILTERED_COUNT_LIMIT + 1},
                ).scalar_one()
                total = UNKNOWN_COUNT if total > FILTERED_COUNT_LIMIT else total
            else:
                total = conn.execute(text(f"SELECT count(*) FROM {relation}")).scalar_one()
            seek = None
            if counts and not sort_model and start >= SEEK_FROM_ROW:
                seek = self._seek(conn, relation, key, STORED_COUNTS[(schema, table)][2], counts, start)
            if seek is not None:
                statement = f"SELECT * FROM {relation} WHERE {seek[0]}{order} LIMIT :limit"
            else:
                statement = f"SELECT * FROM {relation}{where}{order} LIMIT :limit OFFSET :offset"
            page_params = seek[1] if seek is not None else {**params, "offset": start}
            result = conn.execute(text(statement), {**page_params, "limit": limit})
            rows = [jsonable(dict(row._mapping)) for row in result]
            if total == UNKNOWN_COUNT and len(rows) < limit:  # the last page of a large filtered view
                # (asked past its end: the grid needs the real count, taken once)
                total = start + len(rows) if rows else self._count(conn, relation, where, params)
        return rows, total

    def _lookups(self, schema: str, table: str) -> dict[str, str]:
        """For the LOOKUP_COLUMNS of a table that have their index: column -> a query of its
        distinct non-null values (``v``), read from the index."""
        wanted = LOOKUP_COLUMNS.get((schema, table), ())
        if not wanted:
            return {}
        with self.engine.connect() as conn:
            indexed = set(
                conn.execute(
                    text("""
                        SELECT a.attname FROM pg_index i
                        JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
                        JOIN pg_am am ON am.oid = (SELECT relam FROM pg_class WHERE oid = i.indexrelid)
                        WHERE n.nspname = :schema AND c.relname = :table AND am.amname = 'btree'
                          AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL""").bindparams(
                        schema=schema, table=table
                    )
                ).scalars()
            )
        relation = self.relation(schema, table)
        return {column: distinct_values_sql(relation, self.quote(column)) for column in wanted if column in indexed}

    @staticmethod
    def _count(conn, relation: str, where: str, params: dict) -> int:
        """Every row of a filtered view (a page asked past its end: rare, and then the grid needs it)."""
        return conn.execute(text(f"SELECT count(*) FROM {relation}{where}"), params).scalar_one()

    def _stored_counts(self, conn, schema: str, table: str) -> list[tuple] | None:
        """The per-period counts kept with the table (STORED_COUNTS), or None when it has none."""
        if (schema, table) not in STORED_COUNTS:
            return None
        registry, statement, _ = STORED_COUNTS[(schema, table)]
        if not conn.execute(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": registry}).scalar_one():
            return None
        return [tuple(row) for row in conn.execute(text(statement))]

    def _seek(self, conn, relation: str, key: tuple[str, ...], prefix: tuple[str, ...], counts, start: int):
        """A WHERE clause that starts the key-ordered table at row ``start``: the period holding
        that row, from the per-period counts, then the row at that offset inside the period (one
        short skip through the key's index instead of ``start`` rows). None when the key does
        not start with the counts' columns or the row is past the end."""
        if key[: len(prefix)] != prefix or len(key) == len(prefix):
            return None
        before, period = 0, None
        for *values, rows in counts:
            if start < before + rows:
                period = values
                break
            before += rows
        if period is None:
            return None
        inside = ", ".join(self.quote(name) for name in key[len(prefix) :])
        same_period = " AND ".join(f"{self.quote(name)} = :s{i}" for i, name in enumerate(prefix))
        bounds = {f"s{i}": value for i, value in enumerate(period)}
        first = conn.execute(
            text(f"SELECT {inside} FROM {relation} WHERE {same_period} ORDER BY {inside} OFFSET :inside LIMIT 1"),
            {**bounds, "inside": start - before},
        ).first()
        if first is None:
            return None
        values = [*period, *first]
        names = ", ".join(self.quote(name) for name in key)
        marks = ", ".join(f":k{i}" for i in range(len(key)))
        return f"({names}) >= ({marks})", {f"k{i}": value for i, value in enumerate(values)}

    def export_rows(self, schema: str, table: str, sort_model: list | None, filter_model: dict | None):
        """Column names, then every filtered row, streamed with a server-side cursor."""
        check_filter_model(filter_model), check_sort_model(sort_model)  # before any query
        columns = {c.name: c for c in self.columns(schema, table)}
        if not columns:
            raise UnknownTableError(f"Tabela vazia ou inexistente: {schema}.{table}")
        where, params = filter_sql(filter_model, columns, self.quote, self._lookups(schema, table))
        order = order_sql(sort_model, columns, self.quote, self._page_key(schema, table, columns))
        statement = text(f"SELECT * FROM {self.relation(schema, table)}{where}{order} LIMIT {MAX_EXPORT_ROWS}")
        yield list(columns)
        with self.engine.connect().execution_options(
            stream_results=True, max_row_buffer=5000, isolation_level="REPEATABLE READ"
        ) as conn:
            for row in conn.execute(statement, resolve_lookups(conn, params)):
                yield list(row)

    def _page_key(self, schema: str, table: str, columns: dict[str, Column]) -> tuple[str, ...]:
        """The key that makes the page order total (every column when a table has none)."""
        key = tuple(name for name in self.key_columns(schema, table) if name in columns)
        return key or tuple(columns)

    # -- logs and runs ---------------------------------------------------------------
    def frame(self, query: str, params: dict | None = None) -> pd.DataFrame:
        with self.engine.connect() as conn:
            return pd.read_sql(text(query), conn, params=params or {})

    def has_rows(self, schema: str, table: str) -> bool:
        """Whether an allowed table exists and has at least one row (no full count)."""
        if not self.table_exists(schema, table):
            return False
        with self.engine.connect() as conn:
            return conn.execute(text(f"SELECT EXISTS (SELECT 1 FROM {self.relation(schema, table)})")).scalar_one()

    def table_exists(self, schema: str, table: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(
                text("SELECT to_regclass(:name) IS NOT NULL"), {"name": f"{schema}.{table}"}
            ).scalar_one()

    def runs(self) -> pd.DataFrame:
        if not self.table_exists(c.LOGS_SCHEMA, c.RUNS_TABLE):
            return pd.DataFrame()
        return self.frame(f"""
            SELECT e.nome_flow, e.id_execucao, e.iniciado_em, e.finalizado_em, e.estado_final, e.mensagem,
                   e.linhas_carregadas, e.linhas_quarentena,
                   (SELECT count(*) FROM {LOG_RECORDS} r WHERE r.id_execucao = e.id_execucao
                      AND r.evento = '{c.EVENT_RETRY}') AS tentativas_agendadas
            FROM {RUNS} e ORDER BY e.iniciado_em DESC LIMIT 500""")

    def log_records(self, flow: str | None, run_id: str | None, level: str | None, limit: int = 2000) -> pd.DataFrame:
        if not self.table_exists(c.LOGS_SCHEMA, c.LOG_RECORDS_TABLE):
            return pd.DataFrame()
        return self.frame(
            f"""
            SELECT r.registrado_em, r.nome_flow, r.id_execucao, r.nivel, r.nome_task, r.mensagem,
                   coalesce(e.estado_final, '') AS estado_execucao
            FROM {LOG_RECORDS} r LEFT JOIN {RUNS} e USING (id_execucao)
            WHERE (CAST(:flow AS text) IS NULL OR r.nome_flow = :flow)
              AND (CAST(:run AS text) IS NULL OR r.id_execucao = :run)
              AND (CAST(:level AS text) IS NULL OR r.nivel = :level)
            ORDER BY r.registrado_em DESC, r.id DESC LIMIT :limit""",
            {"flow": flow, "run": run_id, "level": level, "limit": limit},
        )

    def log_filters(self) -> dict:
        if not self.table_exists(c.LOGS_SCHEMA, c.RUNS_TABLE):
            return {"flows": [], "runs": []}
        runs = self.frame(
            f"SELECT nome_flow, id_execucao, iniciado_em, estado_final FROM {RUNS} ORDER BY iniciado_em DESC LIMIT 200"
        )
        return {"flows": sorted(runs["nome_flow"].unique().tolist()), "runs": runs.to_dict("records")}

    # -- charts ---------------------------------------------------------------------
    def chart_source(self) -> str | None:
        """What the charts read: the analysis tables (schema marts, small aggregates built with
        the historic models) when they are built, else the historic table, else the latest period."""
        if all(self.has_rows(c.MARTS_SCHEMA, table) for table in CHART_MARTS) and self._marts_current():
            return MARTS_SOURCE
        for table in (HISTORIC, LATEST):
            if self.has_rows(c.STAGING_SCHEMA, table):
                return f"{c.STAGING_SCHEMA}.{table}"
        return None

    def _marts_current(self) -> bool:
        return marts_current(self.engine, CHART_MARTS)

    def totals_by_period(self, source: str) -> pd.DataFrame:
        if source == MARTS_SOURCE:
            return self.frame(f"""SELECT ano, mes, quantidade_terceirizados AS terceirizados,
                                         valor_custo_mensal_total AS custo_total
                                  FROM {c.MARTS_SCHEMA}.totais_por_periodo ORDER BY ano, mes""")
        return self.frame(f"""SELECT ano, mes, count(*) AS terceirizados,
                                     coalesce(sum(valor_custo_mensal), 0) AS custo_total
                              FROM {self._chart_table(source)} GROUP BY ano, mes ORDER BY ano, mes""")

    def top_by_cost(self, source: str, dimension: str, year: int, month: int, limit: int = 10) -> pd.DataFrame:
        """The organs (by name) or companies (by corporate name) with the largest monthly cost."""
        if dimension not in CHART_DIMENSIONS:
            raise UnknownTableError(f"Dimensão não permitida: {dimension}")
        if source == MARTS_SOURCE:
            # the same sums from the period's aggregates (a company's name: as published in the period)
            relation = f"{c.MARTS_SCHEMA}.{CHART_DIMENSIONS[dimension]}"
            count, cost = "sum(quantidade_terceirizados)", "sum(valor_custo_mensal_total)"
        else:
            relation, count, cost = self._chart_table(source), "count(*)", "coalesce(sum(valor_custo_mensal), 0)"
        return self.frame(
            f"""
            SELECT coalesce({dimension}, '(não informado)') AS nome, {count} AS terceirizados, {cost} AS custo_total
            FROM {relation} WHERE ano = :year AND mes = :month
            GROUP BY 1 ORDER BY custo_total DESC NULLS LAST, nome LIMIT :limit""",
            {"year": year, "month": month, "limit": limit},
        )

    def salary_by_education(self, source: str, year: int, month: int) -> pd.DataFrame:
        if source == MARTS_SOURCE:
            return self.frame(
                f"""
                SELECT coalesce(nivel_escolaridade, '(não informado)') AS nivel,
                       quantidade_com_salario AS terceirizados, valor_salario_minimo AS minimo,
                       valor_salario_primeiro_quartil AS q1, valor_salario_mediano AS mediana,
                       valor_salario_terceiro_quartil AS q3, valor_salario_percentil_95 AS p95
                FROM {c.MARTS_SCHEMA}.escolaridade_por_periodo
                WHERE ano = :year AND mes = :month AND quantidade_com_salario > 0
                ORDER BY mediana, nivel""",
                {"year": year, "month": month},
            )
        return self.frame(
            f"""
            SELECT coalesce(nivel_escolaridade, '(não informado)') AS nivel, count(*) AS terceirizados,
                   min(valor_salario_mensal) AS minimo,
                   round(percentile_cont(0.25) WITHIN GROUP (ORDER BY valor_salario_mensal)::numeric, 2) AS q1,
                   round(percentile_cont(0.5) WITHIN GROUP (ORDER BY valor_salario_mensal)::numeric, 2) AS mediana,
                   round(percentile_cont(0.75) WITHIN GROUP (ORDER BY valor_salario_mensal)::numeric, 2) AS q3,
                   round(percentile_cont(0.95) WITHIN GROUP (ORDER BY valor_salario_mensal)::numeric, 2) AS p95
            FROM {self._chart_table(source)} WHERE ano = :year AND mes = :month AND valor_salario_mensal IS NOT NULL
            GROUP BY 1 ORDER BY mediana, nivel""",
            {"year": year, "month": month},
        )

    def _chart_table(self, source: str) -> str:
        schema, table = source.split(".")
        return self.relation(schema, table)


def jsonable(row: dict) -> dict:
    """Values the browser can show: dates and decimals as text, numbers as numbers."""
    out = {}
    for key, value in row.items():
        if value is None or isinstance(value, (str, int, float, bool)):
            out[key] = value
        elif hasattr(value, "isoformat"):
            out[key] = value.isoformat()
        else:
            out[key] = float(value) if value.__class__.__name__ == "Decimal" else str(value)
    return out


TEXT_OPERATORS = {
    "contains": ("ILIKE", "%{}%"),
    "notContains": ("NOT ILIKE", "%{}%"),
    "equals": ("=", "{}"),
    "notEqual": ("<>", "{}"),
    "startsWith": ("ILIKE", "{}%"),
    "endsWith": ("ILIKE", "%{}"),
}
NUMBER_OPERATORS = {
    "equals": "=",
    "notEqual": "<>",
    "lessThan": "<",
    "lessThanOrEqual": "<=",
    "greaterThan": ">",
    "greaterThanOrEqual": ">=",
}


def text_value(value, what: str) -> str:
    """A filter value sent as text (numbers are accepted as their text)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidRequestError(f"{what} deve ser um texto")
    value = str(value)
    if "\x00" in value:
        raise InvalidRequestError(f"{what} contém um caractere nulo")
    return value


def number_value(value, what: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequestError(f"{what} deve ser um número")
    return value


def _check_condition(column: str, spec) -> None:
    if not isinstance(spec, dict):
        raise InvalidRequestError(f"o filtro da coluna {column} deve ser um objeto")
    kind = spec.get("type", "contains")
    if not isinstance(kind, str):
        raise InvalidRequestError(f"o tipo do filtro da coluna {column} deve ser um texto")
    if kind in ("blank", "notBlank"):
        return
    what = f"o valor do filtro da coluna {column}"
    if spec.get("filterType") == "number":
        if kind not in NUMBER_OPERATORS and kind != "inRange":
            raise InvalidRequestError(f"Filtro numérico não suportado: {kind}")
        number_value(spec.get("filter"), what)
        if kind == "inRange":
            number_value(spec.get("filterTo"), what)
    else:
        if kind not in TEXT_OPERATORS:
            raise InvalidRequestError(f"Filtro de texto não suportado: {kind}")
        text_value(spec.get("filter", ""), what)


def check_filter_model(filter_model) -> dict:
    """The shape of an AG Grid filterModel (None for none), checked before any query so
    that a malformed one is reported as such, even with the database down."""
    if filter_model is None:
        return {}
    if not isinstance(filter_model, dict):
        raise InvalidRequestError("o filtro (filterModel) deve ser um objeto JSON")
    for column, spec in filter_model.items():
        if not isinstance(spec, dict):
            raise InvalidRequestError(f"o filtro da coluna {column} deve ser um objeto")
        if "conditions" in spec or "operator" in spec:
            conditions = spec.get("conditions")
            if not isinstance(conditions, list) or not conditions:
                raise InvalidRequestError(f"o filtro da coluna {column} deve ter uma lista de condições")
            if spec.get("operator", "AND") not in ("AND", "OR"):
                raise InvalidRequestError(f"o operador do filtro da coluna {column} deve ser AND ou OR")
            for condition in conditions:
                _check_condition(column, condition)
        else:
            _check_condition(column, spec)
    return filter_model


def check_sort_model(sort_model) -> list:
    """The shape of an AG Grid sortModel (None for none)."""
    if sort_model is None:
        return []
    if not isinstance(sort_model, list) or not all(isinstance(item, dict) for item in sort_model):
        raise InvalidRequestError("a ordenação (sortModel) deve ser uma lista de objetos")
    for item in sort_model:
        if not isinstance(item.get("colId"), str) or item.get("sort") not in ("asc", "desc", None):
            raise InvalidRequestError("cada item da ordenação (sortModel) deve ter colId e sort asc ou desc")
    return sort_model


@dataclass(frozen=True)
class DistinctMatches:
    """A filter parameter still to be read: the distinct values of a column that match a pattern
    (``query`` takes it as :p). resolve_lookups replaces it with the list of values."""

    query: str
    pattern: str


def resolve_lookups(conn, params: dict) -> dict:
    """The bind parameters with every DistinctMatches read into its list of values."""
    return {
        key: [row[0] for row in conn.execute(text(value.query), {"p": value.pattern})]
        if isinstance(value, DistinctMatches)
        else value
        for key, value in params.items()
    }


def _condition(column: str, quoted: str, numeric: bool, spec: dict, params: dict, lookup: str | None = None) -> str:
    _check_condition(column, spec)
    kind = spec.get("type", "contains")
    key = f"p{len(params)}"
    if kind == "blank":
        return f"{quoted} IS NULL"
    if kind == "notBlank":
        return f"{quoted} IS NOT NULL"
    if numeric and spec.get("filterType") == "number":
        if kind == "inRange":
            params[key], params[key + "b"] = spec.get("filter"), spec.get("filterTo")
            return f"{quoted} BETWEEN :{key} AND :{key}b"
        if kind not in NUMBER_OPERATORS:
            raise InvalidRequestError(f"Filtro numérico não suportado: {kind}")
        params[key] = spec.get("filter")
        return f"{quoted} {NUMBER_OPERATORS[kind]} :{key}"
    if kind not in TEXT_OPERATORS:
        raise InvalidRequestError(f"Filtro de texto não suportado: {kind}")
    operator, pattern = TEXT_OPERATORS[kind]
    value = text_value(spec.get("filter", ""), f"o valor do filtro da coluna {column}")
    if "LIKE" in operator:
        value = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    if lookup is not None and operator != "=":
        # the matching distinct values are read first (resolve_lookups), then their rows: the
        # planner sees the actual values (none: no row is read)
        matching = f"SELECT v FROM ({lookup}) AS valores WHERE v {operator} :p"
        params[key] = DistinctMatches(matching, pattern.format(value))
        return f"{quoted} = ANY(:{key})"
    params[key] = pattern.format(value)
    return f"CAST({quoted} AS text) {operator} :{key}"


def filter_sql(
    filter_model: dict | None, columns: dict[str, Column], quote, lookups: dict[str, str] | None = None
) -> tuple[str, dict]:
    """AG Grid filterModel -> (' WHERE ...', bind parameters); unknown columns and
    malformed filters are rejected (InvalidRequestError). ``lookups``: column -> query of its
    distinct values, for the text columns whose filters match those values first."""
    clauses, params = [], {}
    lookups = lookups or {}
    for name, spec in check_filter_model(filter_model).items():
        if name not in columns:
            raise UnknownTableError(f"Coluna desconhecida: {name}")
        quoted, numeric, lookup = quote(name), columns[name].numeric, lookups.get(name)
        if "conditions" in spec or "operator" in spec:
            parts = [_condition(name, quoted, numeric, c, params, lookup) for c in spec.get("conditions", [])]
            joiner = " OR " if spec.get("operator") == "OR" else " AND "
            clauses.append("(" + joiner.join(parts) + ")")
        else:
            clauses.append(_condition(name, quoted, numeric, spec, params, lookup))
    return (" WHERE " + " AND ".join(clauses), params) if clauses else ("", params)


def order_sql(sort_model: list | None, columns: dict[str, Column], quote, key: tuple[str, ...] = ()) -> str:
    """AG Grid sortModel -> ' ORDER BY ...', then the row ``key`` as the tie-breaker: pages
    taken with LIMIT/OFFSET only follow each other when the order is total."""
    parts, sorted_by = [], set()
    for item in check_sort_model(sort_model):
        name = item.get("colId")
        if name not in columns:
            raise UnknownTableError(f"Coluna desconhecida: {name}")
        direction = "DESC" if item.get("sort") == "desc" else "ASC"
        parts.append(f"{quote(name)} {direction} NULLS LAST")
        sorted_by.add(name)
    parts += [quote(name) for name in key if name not in sorted_by]
    return " ORDER BY " + ", ".join(parts) if parts else ""


# The marts built from other marts (queries/models/marts/*.sql, meta.marts.fontes).
MART_SOURCES = {
    "orgaos_por_periodo": ("contratos_por_periodo",),
    "empresas_por_periodo": ("contratos_por_periodo",),
    "contratos": ("contratos_por_periodo", "empresas_por_periodo"),
    "variacao_entre_periodos": ("totais_por_periodo", "orgaos_por_periodo", "empresas_por_periodo"),
}
HISTORIC_SOURCED = ("totais_por_periodo", "escolaridade_por_periodo", "contratos_por_periodo", "empresas_por_periodo")


def marts_current(engine: Engine, marts: tuple[str, ...]) -> bool:
    """Whether the marts ``marts`` (and the marts they are built from) were built from the
    historic table as it is now. A marts build that failed or was killed after the historic
    models changed, or after some marts took a new period and before the others did, leaves
    them behind: the readers then must not show them as the data.

    marts.periodos_construidos records, per mart and period, the version of its source the rows
    were built from (queries/macros/marts_incremental.sql): for a mart built from the historic
    table, 'historic_transformed@' and the transaction that wrote the period's rows (the xmin of
    its first row by key; the models rewrite a period whole); a mart built from other marts must
    have been built, for each of their periods, after them."""
    needed, pending = set(), list(marts)
    while pending:
        mart = pending.pop()
        if mart not in needed:
            needed.add(mart)
            pending.extend(MART_SOURCES.get(mart, ()))
    direct = [mart for mart in HISTORIC_SOURCED if mart in needed]
    pairs = [(mart, source) for mart in sorted(needed) for source in MART_SOURCES.get(mart, ())]
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        records = conn.execute(
            text(
                f"SELECT to_regclass('{c.STAGING_SCHEMA}.periodos_materializados') IS NOT NULL "
                f"AND to_regclass('{c.MARTS_SCHEMA}.periodos_construidos') IS NOT NULL"
            )
        ).scalar_one()
        if not records:  # what the marts were built from is unknown: not current
            return False
        return conn.execute(
            text(f"""
                WITH atual AS (
                    SELECT p.ano, p.mes, '{HISTORIC}@' || (
                        SELECT h.xmin::text FROM {c.STAGING_SCHEMA}.{HISTORIC} AS h
                        WHERE h.ano = p.ano AND h.mes = p.mes ORDER BY h.id_terceirizado LIMIT 1
                    ) AS versao
                    FROM (SELECT extract(year FROM periodo)::integer AS ano,
                                 extract(month FROM periodo)::integer AS mes
                          FROM {c.STAGING_SCHEMA}.periodos_materializados
                          WHERE modelo = :historic AND linhas > 0) AS p
                ),
                registro AS (
                    SELECT modelo, ano, mes, versao_fonte, construido_em
                    FROM {c.MARTS_SCHEMA}.periodos_construidos
                ),
                diretos AS (SELECT unnest(CAST(:direct AS text[])) AS modelo),
                dependencias AS (
                    SELECT * FROM unnest(CAST(:models AS text[]), CAST(:sources AS text[])) AS d(modelo, fonte)
                )
                SELECT NOT EXISTS (  -- a period of the table missing or of another version in a mart
                    SELECT 1 FROM atual AS a CROSS JOIN diretos AS d
                    LEFT JOIN registro AS r ON r.modelo = d.modelo AND r.ano = a.ano AND r.mes = a.mes
                    WHERE r.versao_fonte IS NULL OR a.versao <> ALL(string_to_array(r.versao_fonte, ' '))
                ) AND NOT EXISTS (  -- a period in a mart that the table no longer has
                    SELECT 1 FROM registro AS r
                    WHERE r.modelo = ANY(CAST(:all AS text[]))
                      AND NOT EXISTS (SELECT 1 FROM atual AS a WHERE a.ano = r.ano AND a.mes = r.mes)
                ) AND NOT EXISTS (  -- a mart without a period of a mart it is built from, or built before it
                    SELECT 1 FROM dependencias AS d JOIN registro AS fonte ON fonte.modelo = d.fonte
                    WHERE NOT EXISTS (
                        SELECT 1 FROM registro AS r WHERE r.modelo = d.modelo AND r.ano = fonte.ano
                          AND r.mes = fonte.mes AND r.construido_em >= fonte.construido_em)
                ) AND NOT EXISTS (  -- the periods' rows: the same in the table and in the totals
                    SELECT ano, mes, quantidade_terceirizados FROM {c.MARTS_SCHEMA}.totais_por_periodo
                    EXCEPT
                    SELECT extract(year FROM periodo)::integer, extract(month FROM periodo)::integer, linhas
                    FROM {c.STAGING_SCHEMA}.periodos_materializados WHERE modelo = :historic AND linhas > 0
                )"""),
            {
                "historic": HISTORIC,
                "direct": direct,
                "all": sorted(needed),
                "models": [mart for mart, _ in pairs],
                "sources": [source for _, source in pairs],
            },
        ).scalar_one()
