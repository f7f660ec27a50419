"""Database and dbt helpers for the tests and the benchmark, never used by the pipeline:
dropping a scratch database and compiling a SQL snippet with the dbt project's macros."""

from __future__ import annotations

from psycopg2 import sql

from pipelines import database, dbt
from pipelines.settings import Settings


def drop_database(settings: Settings, name: str) -> None:
    """Drop a database, closing its connections (test and benchmark databases)."""
    conn = database.connect(settings, "postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        conn.close()


def compile_inline(settings: Settings, snippet: str) -> str:
    """Compile a SQL snippet that uses the project's macros (``dbt compile --inline``)."""
    result = dbt._invoke(settings, ["compile", "--inline", snippet], "inline")
    if not result.success:
        raise dbt.DbtBuildError(f"dbt compile --inline falhou: {result.exception}")
    return result.result.results[0].node.compiled_code
