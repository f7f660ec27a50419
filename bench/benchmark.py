"""Benchmark of the historic flows against the PostgreSQL floor for the same data.

Generates (and caches) a synthetic portal at the chosen scale, serves it on
127.0.0.1, then measures wall time and peak RSS (whole process tree) of:

1. historic capture   (python run/historic_capture.py)
2. historic materialize (python run/historic_materialize.py)
3. the floor: psql's \\copy of the same parsed CSVs into an unlogged table, plus one
   CREATE TABLE AS with the same cleaning and casts (compiled from the dbt macros).

Prints rows/s and the pipeline/floor ratio and writes bench/results/benchmark.json.
Targets on a 2-core machine: capture + materialize within 2x the floor, peak RSS < 1.5 GB.

    .venv/bin/python -m bench.benchmark                    # 21 periods x 75,000 rows
    .venv/bin/python -m bench.benchmark --periods 5 --rows 5000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import psutil

from bench.portal_generator import PortalServer, build_portal, default_periods
from pipelines import database
from pipelines.constants import CSV_DELIMITER, RAW_COLUMNS
from pipelines.dbt import compile_inline
from pipelines.sample_portal import load_portal
from pipelines.settings import PROJECT_ROOT, load_settings

BENCH_DIR = Path(__file__).resolve().parent


def measure(command: list[str], env: dict, label: str) -> dict:
    """Run a command; wall time and peak RSS summed over its process tree (sampled every 50 ms)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    peak, output = 0, []
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)
    reader.start()
    root = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            tree = [root] + root.children(recursive=True)
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    reader.join()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        sys.stderr.write("".join(output[-40:]))
        raise SystemExit(f"{label} falhou (código {process.returncode}).")
    print(f"  {label}: {wall:.1f} s, pico de memória {peak / 2**20:.0f} MiB", flush=True)
    return {"wall_seconds": round(wall, 2), "peak_rss_mib": round(peak / 2**20, 1)}


def floor_sql(settings) -> str:
    """One CREATE TABLE AS with the cleaning, renaming and casts of the dbt macros."""
    inline = (
        "{{ terceirizados_transformed('(' ~ terceirizados_renamed('(' ~ "
        "terceirizados_cleaned('bench_floor.raw') ~ ') as cleaned') ~ ') as renamed') }}"
    )
    return "CREATE TABLE bench_floor.transformed AS " + compile_inline(settings, inline)


def run_floor(settings, env: dict, csv_files: list[Path]) -> dict:
    psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", settings.postgres_host, "-p",
            str(settings.postgres_port), "-U", settings.postgres_user, "-d", settings.postgres_db]
    columns = ", ".join(f"{name} text" for name in RAW_COLUMNS)
    setup = f"DROP SCHEMA IF EXISTS bench_floor CASCADE; CREATE SCHEMA bench_floor; " \
            f"CREATE UNLOGGED TABLE bench_floor.raw ({columns});"
    subprocess.run(psql + ["-c", setup], check=True, env=env)
    copy_script = BENCH_DIR / "work" / "floor_copy.sql"
    copy_script.write_text("".join(
        f"\\copy bench_floor.raw FROM '{path}' WITH (FORMAT csv, HEADER true, DELIMITER '{CSV_DELIMITER}')\n"
        for path in csv_files))
    # the casts of the real models need typed metadata: cast it as the raw table does
    cast_metadata = ("ALTER TABLE bench_floor.raw ALTER periodo TYPE date USING periodo::date, "
                     "ALTER linha_origem TYPE integer USING linha_origem::integer, "
                     "ALTER capturado_em TYPE timestamptz USING capturado_em::timestamptz;")
    create = floor_sql(settings)
    script = BENCH_DIR / "work" / "floor_ctas.sql"
    script.write_text(cast_metadata + "\n" + create + ";\n")
    copy = measure(psql + ["-f", str(copy_script)], env, "piso: \\copy dos CSVs (tabela unlogged)")
    ctas = measure(psql + ["-f", str(script)], env, "piso: CREATE TABLE AS com as mesmas conversões")
    return {"copy": copy, "create_table_as": ctas,
            "wall_seconds": round(copy["wall_seconds"] + ctas["wall_seconds"], 2),
            "peak_rss_mib": max(copy["peak_rss_mib"], ctas["peak_rss_mib"])}


def measure_results_app(settings) -> dict:
    """Server-side time of the results app's grid pages and charts on the historic table."""
    from pipelines.results.queries import ResultsRepository, make_engine

    repo = ResultsRepository(make_engine(settings))
    source = "staging.historic_transformed"
    cases = {
        "grade: 1a página": lambda: repo.page("staging", "historic_transformed", 0, 100, None, None),
        "grade: página 10.000 (offset 1.000.000)": lambda: repo.page("staging", "historic_transformed",
                                                                      1_000_000, 1_000_100, None, None),
        "grade: ordenada por custo": lambda: repo.page("staging", "historic_transformed", 0, 100,
                                                       [{"colId": "valor_custo_mensal", "sort": "desc"}], None),
        "grade: filtro de texto": lambda: repo.page("staging", "historic_transformed", 0, 100, None, {
            "razao_social_empresa": {"filterType": "text", "type": "contains", "filter": "servicos"}}),
        "gráfico: totais por período": lambda: repo.totals_by_period(source),
        "gráfico: órgãos por custo": lambda: repo.top_by_cost(source, "nome_orgao", 2024, 5),
        "gráfico: empresas por custo": lambda: repo.top_by_cost(source, "razao_social_empresa", 2024, 5),
        "gráfico: salário por escolaridade": lambda: repo.salary_by_education(source, 2024, 5),
    }
    timings = {}
    for label, call in cases.items():
        call()  # warm the cache like a second visit would
        started = time.perf_counter()
        call()
        timings[label] = round(time.perf_counter() - started, 3)
        print(f"  app de resultados, {label}: {timings[label]:.2f} s", flush=True)
    repo.engine.dispose()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--periods", type=int, default=21)
    parser.add_argument("--rows", type=int, default=75_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database", default="terceirizados_bench")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results" / "benchmark.json")
    args = parser.parse_args()

    work = BENCH_DIR / "work"
    portal_dir = work / f"portal-{args.periods}x{args.rows}-s{args.seed}"
    specs = default_periods()[: args.periods]
    started = time.perf_counter()
    if not (portal_dir / "specs.json").exists():
        print(f"Gerando portal sintético: {args.periods} períodos x {args.rows} linhas em {portal_dir}...", flush=True)
        shutil.rmtree(portal_dir, ignore_errors=True)
        portal = build_portal(portal_dir, specs, rows=args.rows, seed=args.seed, keep_rows=False)
        (portal_dir / "expectations.json").write_text(json.dumps({k: asdict(v) for k, v in portal.expectations.items()}))
        print(f"  gerado em {time.perf_counter() - started:.0f} s", flush=True)
    else:
        portal = load_portal(portal_dir)
    expectations = json.loads((portal_dir / "expectations.json").read_text())
    server = PortalServer(portal).start()

    data_dir, log_dir = work / "data", work / "logs"
    shutil.rmtree(data_dir, ignore_errors=True)
    env = {**os.environ, "POSTGRES_DB": args.database, "DATA_DIR": str(data_dir), "LOG_DIR": str(log_dir),
           "CGU_TERCEIRIZADOS_URL": server.page_url, "PGPASSWORD": os.environ.get("POSTGRES_PASSWORD", "")}
    settings = load_settings(env)
    database.drop_database(settings, args.database)
    database.ensure_database(settings)

    total_rows = sum(e["loaded_rows"] for e in expectations.values())
    print(f"Medindo com {total_rows:,} linhas ({args.periods} períodos)...", flush=True)
    python = sys.executable
    capture = measure([python, "run/historic_capture.py"], env, "captura histórica")
    materialize = measure([python, "run/historic_materialize.py"], env, "materialização histórica")
    app_timings = measure_results_app(settings)
    csv_files = sorted((data_dir / "csv").rglob("terceirizados_*.csv"))
    floor = run_floor(settings, env, csv_files)
    server.shutdown()

    pipeline_seconds = capture["wall_seconds"] + materialize["wall_seconds"]
    results = {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                    "python": platform.python_version()},
        "scale": {"periods": args.periods, "rows_per_period": args.rows, "rows_loaded": total_rows,
                  "xlsx_periods": sum(1 for s in specs if s.format == "xlsx")},
        "historic_capture": {**capture, "rows_per_second": round(total_rows / capture["wall_seconds"])},
        "historic_materialize": {**materialize, "rows_per_second": round(total_rows / materialize["wall_seconds"])},
        "floor": {**floor, "rows_per_second": round(total_rows / floor["wall_seconds"])},
        "pipeline_over_floor": round(pipeline_seconds / floor["wall_seconds"], 2),
        "peak_rss_mib": max(capture["peak_rss_mib"], materialize["peak_rss_mib"]),
        "results_app_seconds": app_timings,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(results, indent=2, ensure_ascii=False))
    print(f"\nPipeline/piso: {results['pipeline_over_floor']}x (meta <= 2x); "
          f"pico de memória {results['peak_rss_mib']:.0f} MiB (meta < 1536 MiB).")


if __name__ == "__main__":
    main()
