r"""The results app at N times today's data.

Copies the benchmark's database (``bench/benchmark.py`` must have run: it holds the
historic tables of 21 periods x 75,000 rows), multiplies ``staging.historic_transformed``
by N inside the copy (every row N times, the copies with distinct keys: id_terceirizado
prefixed with the copy's number; every other value, so every distribution, unchanged),
records the new per-period counts the way the historic models do, rebuilds the analysis
tables (schema marts) from the multiplied table with dbt, and times the app's queries:
the same grid pages and charts as the benchmark (the deep page at N x 1,000,000 rows) and
the "Análises" page's views. Writes them under ``results_app_at_scale`` in
bench/results/benchmark.json.

    .venv/bin/python -m bench.scale                 # 10 x
    .venv/bin/python -m bench.scale --scale 2 --keep
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from psycopg2 import sql

from bench.benchmark import measure_app
from bench.dbtools import drop_database
from pipelines import constants, database
from pipelines.dbt import run_dbt
from pipelines.settings import load_settings

BENCH_DIR = Path(__file__).resolve().parent
HISTORIC = f"{constants.STAGING_SCHEMA}.{constants.HISTORIC_MODELS[-1]}"
REGISTRY = f"{constants.STAGING_SCHEMA}.periodos_materializados"


def copy_database(settings, source: str, target: str) -> None:
    """CREATE DATABASE target TEMPLATE source (a file copy: no other session may use source)."""
    drop_database(settings, target)
    conn = database.connect(settings, "postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (source,),
            )
            cursor.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(target), sql.Identifier(source))
            )
    finally:
        conn.close()


def multiply_historic(settings, scale: int) -> int:
    """Every row of the historic table ``scale`` times (distinct keys), and its per-period
    counts in the models' registry; returns the rows."""
    with database.connection(settings) as conn, conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
            "ORDER BY ordinal_position",
            (constants.STAGING_SCHEMA, constants.HISTORIC_MODELS[-1]),
        )
        columns = [name for (name,) in cursor.fetchall()]
        copy_key = "'c' || copia || '-' || id_terceirizado"  # distinct from every original key
        values = [copy_key if name == "id_terceirizado" else sql.Identifier(name).as_string(conn) for name in columns]
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
        cursor.execute(
            f"INSERT INTO {HISTORIC} ({', '.join(columns)}) SELECT {', '.join(values)} "
            f"FROM {HISTORIC} CROSS JOIN generate_series(1, %s) AS copia",
            (scale - 1,),
        )
        cursor.execute(
            f"""UPDATE {REGISTRY} AS r SET linhas = c.linhas
                FROM (SELECT make_date(ano, mes, 1) AS periodo, count(*) AS linhas FROM {HISTORIC} GROUP BY 1) AS c
                WHERE r.modelo = %s AND r.periodo = c.periodo""",
            (constants.HISTORIC_MODELS[-1],),
        )
        cursor.execute(f"SELECT count(*) FROM {HISTORIC}")
        rows = cursor.fetchone()[0]
    with database.connection(settings) as conn:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {HISTORIC}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--database", default="terceirizados_bench", help="the benchmark's database (the source)")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results" / "benchmark.json")
    parser.add_argument("--keep", action="store_true", help="keep the multiplied database")
    parser.add_argument("--reuse", action="store_true", help="measure the multiplied database kept by --keep")
    args = parser.parse_args()

    target = f"{args.database}_x{args.scale}"
    base = load_settings({**os.environ, "POSTGRES_DB": args.database})
    settings = load_settings(
        {**os.environ, "POSTGRES_DB": target, "DATA_DIR": str(BENCH_DIR / "work" / f"data_x{args.scale}")}
    )
    started = time.perf_counter()
    if not args.reuse:
        print(f"Copiando {args.database} para {target}...", flush=True)
        copy_database(base, args.database, target)
        print(f"Multiplicando {HISTORIC} por {args.scale}...", flush=True)
        rows = multiply_historic(settings, args.scale)
        print(f"  {rows:,} linhas em {time.perf_counter() - started:.0f} s", flush=True)
        print("Reconstruindo as tabelas de análise (dbt, marts)...", flush=True)
        marts_started = time.perf_counter()
        outcome = run_dbt(settings, "build", constants.HISTORIC_MARTS_SELECTOR, constants.DBT_HISTORIC, True)
        assert outcome.success, outcome.failures
        marts_seconds = round(time.perf_counter() - marts_started, 1)
    else:
        with database.connection(settings) as conn, conn.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {HISTORIC}")
            rows = cursor.fetchone()[0]
        marts_seconds = None
    timings = measure_app(settings, deep_offset=1_000_000 * args.scale)
    if not args.keep and not args.reuse:
        drop_database(base, target)
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    results["results_app_at_scale"] = {
        "scale": args.scale,
        "rows": rows,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "marts_full_build_seconds": marts_seconds,
        "seconds": timings,
        "slowest_seconds": max(timings.values()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(results["results_app_at_scale"], indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
