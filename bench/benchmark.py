r"""Benchmark of the historic flows against the PostgreSQL floor for the same data.

Generates (and caches) a synthetic portal at the chosen scale, serves it on
127.0.0.1, then measures wall time and peak RSS (whole process tree) of:

1. historic capture   (python run/historic_capture.py) on a fresh database
2. historic materialize (python run/historic_materialize.py): the first run builds everything
3. the same two again with nothing new on the portal (the files are unchanged: nothing is
   loaded, and the incremental historic models rebuild no period)
4. the scheduled run for a new period (python run/scheduler.py --agora): capture of the
   newest period (one 75k-row XLSX) and materialization of the latest models; its time is
   the pipeline flow's run (logs.execucoes) and the process's wall time (with start-up),
   the median of several runs (--scheduled-runs, 5 by default; one run varies by up to a
   second on a shared machine), every run kept in the results
5. the floor: psql's \copy of the same parsed CSVs into an unlogged table, plus one
   CREATE TABLE AS with the same cleaning and casts (compiled from the dbt macros)
6. the strict floor: the least any loader must do to put these rows in PostgreSQL with
   their final types. The parsed rows, already in their final form (exported as text from
   the pipeline's own staging.historic_transformed, so no cleaning is left to do), are
   loaded with \copy in TEXT format (tab-separated, PostgreSQL's cheapest COPY input) into
   an unlogged table of text columns, then ONE CREATE TABLE AS casts each column to its final
   type (a plain cast list: ano::integer, ..., valor_custo_mensal::numeric(12,2)) into a
   logged table, like the pipeline's. No cleaning, no key, no test, no dbt, no Python.

Prints rows/s and the pipeline/floor ratios and writes bench/results/benchmark.json.
Targets on a 2-core machine: capture + materialize within 2x the floor and 1.5x the strict
floor, peak RSS < 1.5 GB, the re-run with nothing new and the scheduled run under 5 s.

    .venv/bin/python -m bench.benchmark                    # 21 periods x 75,000 rows
    .venv/bin/python -m bench.benchmark --periods 5 --rows 5000
    .venv/bin/python -m bench.benchmark --rerun-only       # steps 3 and 4 again, on the last run's database
    .venv/bin/python -m bench.benchmark --app-only         # the results app's timings again, on the same
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import psutil
from psycopg2 import sql

from bench.dbtools import compile_inline, drop_database
from bench.portal_generator import PortalServer, build_portal, default_periods
from pipelines import database
from pipelines.constants import CSV_DELIMITER, HISTORIC_MATERIALIZE_FLOW, PIPELINE_FLOW, RAW_COLUMNS
from pipelines.dbt import _project_fingerprint
from pipelines.demo import load_portal
from pipelines.settings import PROJECT_ROOT, load_settings

BENCH_DIR = Path(__file__).resolve().parent


def measure(command: list[str], env: dict, label: str) -> dict:
    """Run a command; wall time and peak RSS summed over its process tree (sampled every 50 ms)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
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
    psql = [
        "psql",
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        settings.postgres_host,
        "-p",
        str(settings.postgres_port),
        "-U",
        settings.postgres_user,
        "-d",
        settings.postgres_db,
    ]
    columns = ", ".join(f"{name} text" for name in RAW_COLUMNS)
    setup = (
        f"DROP SCHEMA IF EXISTS bench_floor CASCADE; CREATE SCHEMA bench_floor; "
        f"CREATE UNLOGGED TABLE bench_floor.raw ({columns});"
    )
    subprocess.run(psql + ["-c", setup], check=True, env=env)
    copy_script = BENCH_DIR / "work" / "floor_copy.sql"
    copy_script.write_text(
        "".join(
            f"\\copy bench_floor.raw FROM '{path}' WITH (FORMAT csv, HEADER true, DELIMITER '{CSV_DELIMITER}')\n"
            for path in csv_files
        )
    )
    # the casts of the real models need typed metadata: cast it as the raw table does
    cast_metadata = (
        "ALTER TABLE bench_floor.raw ALTER periodo TYPE date USING periodo::date, "
        "ALTER linha_origem TYPE integer USING linha_origem::integer, "
        "ALTER capturado_em TYPE timestamptz USING capturado_em::timestamptz;"
    )
    create = floor_sql(settings)
    script = BENCH_DIR / "work" / "floor_ctas.sql"
    script.write_text(cast_metadata + "\n" + create + ";\n")
    copy = measure(psql + ["-f", str(copy_script)], env, "piso: \\copy dos CSVs (tabela unlogged)")
    ctas = measure(psql + ["-f", str(script)], env, "piso: CREATE TABLE AS com as mesmas conversões")
    return {
        "copy": copy,
        "create_table_as": ctas,
        "wall_seconds": round(copy["wall_seconds"] + ctas["wall_seconds"], 2),
        "peak_rss_mib": max(copy["peak_rss_mib"], ctas["peak_rss_mib"]),
    }


# The final table's columns and types (the contract of staging.historic_transformed).
FINAL_COLUMNS = (
    ("ano", "integer"),
    ("mes", "smallint"),
    ("id_terceirizado", "text"),
    ("sigla_orgao_superior_unidade_gestora", "text"),
    ("id_unidade_gestora", "text"),
    ("sigla_unidade_gestora", "text"),
    ("nome_unidade_gestora", "text"),
    ("id_orgao_siafi", "text"),
    ("id_orgao_siape", "text"),
    ("sigla_orgao", "text"),
    ("nome_orgao", "text"),
    ("nome_unidade_prestacao", "text"),
    ("id_contrato", "text"),
    ("cnpj_empresa", "text"),
    ("razao_social_empresa", "text"),
    ("cpf", "text"),
    ("nome", "text"),
    ("cbo_2002", "text"),
    ("categoria_profissional", "text"),
    ("nivel_escolaridade", "text"),
    ("quantidade_horas_semanais", "integer"),
    ("valor_salario_mensal", "numeric(12,2)"),
    ("valor_custo_mensal", "numeric(12,2)"),
    ("capturado_em", "timestamp with time zone"),
)


def run_strict_floor(settings, env: dict) -> dict:
    """COPY (TEXT format) of the rows in their final form into an unlogged table of text
    columns + ONE CREATE TABLE AS with a plain cast list into a logged table (module docstring).
    The rows are exported from staging.historic_transformed first (not timed)."""
    psql = [
        "psql",
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        settings.postgres_host,
        "-p",
        str(settings.postgres_port),
        "-U",
        settings.postgres_user,
        "-d",
        settings.postgres_db,
    ]
    tsv = BENCH_DIR / "work" / "strict_floor.tsv"
    names = ", ".join(name for name, _ in FINAL_COLUMNS)
    with database.connection(settings) as conn, conn.cursor() as cursor, tsv.open("w", encoding="utf-8") as handle:
        cursor.copy_expert(f"COPY (SELECT {names} FROM staging.historic_transformed) TO STDOUT", handle)
    text_columns = ", ".join(f"{name} text" for name, _ in FINAL_COLUMNS)
    subprocess.run(
        psql
        + [
            "-c",
            f"DROP SCHEMA IF EXISTS bench_strict CASCADE; CREATE SCHEMA bench_strict; "
            f"CREATE UNLOGGED TABLE bench_strict.raw ({text_columns});",
        ],
        check=True,
        env=env,
    )
    copy_script = BENCH_DIR / "work" / "strict_floor_copy.sql"
    copy_script.write_text(f"\\copy bench_strict.raw FROM '{tsv}' WITH (FORMAT text)\n")
    casts = ", ".join(f"{name}::{kind} AS {name}" for name, kind in FINAL_COLUMNS)
    ctas_script = BENCH_DIR / "work" / "strict_floor_ctas.sql"
    ctas_script.write_text(f"CREATE TABLE bench_strict.transformed AS SELECT {casts} FROM bench_strict.raw;\n")
    copy = measure(psql + ["-f", str(copy_script)], env, "piso estrito: \\copy TSV (tabela unlogged)")
    ctas = measure(psql + ["-f", str(ctas_script)], env, "piso estrito: CREATE TABLE AS com conversões simples")
    subprocess.run(psql + ["-c", "DROP SCHEMA bench_strict CASCADE"], check=True, env=env)
    tsv.unlink()
    return {
        "copy": copy,
        "create_table_as": ctas,
        "wall_seconds": round(copy["wall_seconds"] + ctas["wall_seconds"], 2),
        "peak_rss_mib": max(copy["peak_rss_mib"], ctas["peak_rss_mib"]),
    }


def last_flow_seconds(settings, flow_name: str) -> float:
    """Duration of the flow's latest run, as recorded in logs.execucoes (no process start-up)."""
    with database.connection(settings) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT extract(epoch FROM finalizado_em - iniciado_em), estado_final FROM logs.execucoes "
            "WHERE nome_flow = %s ORDER BY iniciado_em DESC LIMIT 1",
            (flow_name,),
        )
        seconds, state = cursor.fetchone()
    if state != "Success":
        raise SystemExit(f"{flow_name} terminou como {state}.")
    return round(float(seconds), 2)


def database_now(settings) -> datetime:
    with database.connection(settings) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def periods_built_since(settings, moment: datetime) -> int:
    """Periods of staging.historic_transformed built after ``moment`` (its incremental record)."""
    with database.connection(settings) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM staging.periodos_materializados WHERE modelo = 'historic_transformed' "
            "AND construido_em > %s",
            (moment,),
        )
        return cursor.fetchone()[0]


def measure_rerun(settings, env: dict, python: str) -> dict:
    """Historic capture + materialization again, with nothing new on the portal."""
    started = database_now(settings)
    capture = measure([python, "run/historic_capture.py"], env, "sem novidades: captura histórica")
    materialize = measure([python, "run/historic_materialize.py"], env, "sem novidades: materialização histórica")
    return {
        "historic_capture": capture,
        "historic_materialize": materialize,
        "historic_materialize_flow_seconds": last_flow_seconds(settings, HISTORIC_MATERIALIZE_FLOW),
        "periods_rebuilt": periods_built_since(settings, started),
        "wall_seconds": round(capture["wall_seconds"] + materialize["wall_seconds"], 2),
    }


def median_of_runs(runs: list[dict]) -> dict:
    """Several measurements of the same run -> the median wall and flow seconds, the peak
    memory of all, the range, and every run as measured."""
    walls = sorted(run["wall_seconds"] for run in runs)
    flows = sorted(run["flow_seconds"] for run in runs)
    return {
        "wall_seconds": round(statistics.median(walls), 2),
        "flow_seconds": round(statistics.median(flows), 2),
        "peak_rss_mib": max(run["peak_rss_mib"] for run in runs),
        "wall_seconds_range": [walls[0], walls[-1]],
        "runs": runs,
    }


def measure_scheduled_run(settings, env: dict, python: str, runs: int = 1) -> dict:
    """The scheduled run of a newly published period, as on 1 January, May and September: the
    previous run left the latest models built and their dbt documentation generated, and the
    newest file is not captured yet. The run downloads, parses and loads that file (an XLSX of
    75,000 rows at full scale) and builds the latest models (nothing in the project or the
    tables' columns changed, so the documentation is not generated again). ``runs``: that many
    times, each from the same state (the period it loaded taken out again): ``median_of_runs``."""
    # untimed: what the previous scheduled run leaves (the latest models and the documentation)
    subprocess.run([python, "run/materialize.py"], cwd=PROJECT_ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    with database.connection(settings) as conn, conn.cursor() as cursor:
        cursor.execute(sql.SQL("SELECT max(periodo) FROM {}").format(database.CAPTURES))
        [newest] = cursor.fetchone()
    measured = []
    for run in range(1, runs + 1):
        with database.connection(settings) as conn, conn, conn.cursor() as cursor:
            # the newest period, not published yet when that run happened: not captured
            for table in (database.RAW, database.QUARANTINE, database.CAPTURES):
                cursor.execute(sql.SQL("DELETE FROM {} WHERE periodo = %s").format(table), (newest,))
        label = "execução agendada (período novo)" + (f", {run} de {runs}" if runs > 1 else "")
        scheduled = measure([python, "run/scheduler.py", "--agora"], env, label)
        scheduled["flow_seconds"] = last_flow_seconds(settings, PIPELINE_FLOW)
        measured.append(scheduled)
    return median_of_runs(measured)


def cpu_calibration_seconds() -> float:
    """Seconds of a fixed pure-Python loop (10 million additions), best of three: how fast this
    machine's CPU is at the time of the measurement, next to the floors (which say the same of
    the disk and PostgreSQL), so measurements of different days can be compared."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for number in range(10_000_000):
            total += number
        best = min(best, time.perf_counter() - started)
    return round(best, 2)


def time_app_calls(cases: dict) -> dict:
    """Server-side seconds of each call, the second of two (the cache warm, like a second visit)."""
    timings = {}
    for label, call in cases.items():
        call()
        started = time.perf_counter()
        call()
        timings[label] = round(time.perf_counter() - started, 3)
        print(f"  app de resultados, {label}: {timings[label]:.2f} s", flush=True)
    return timings


def measure_results_app(settings, deep_offset: int = 1_000_000) -> dict:
    """Server-side time of the results app's grid pages and charts on the historic table
    (the deep page starts at row ``deep_offset``)."""
    from pipelines.results.queries import ResultsRepository, make_engine

    repo = ResultsRepository(make_engine(settings))
    source = repo.chart_source()  # what the charts read: the analysis tables (marts) once built

    def grid(start=0, sort=None, filters=None):
        return lambda: repo.page("staging", "historic_transformed", start, start + 100, sort, filters)

    def contains(column, text):
        return grid(filters={column: {"filterType": "text", "type": "contains", "filter": text}})

    deep_page = f"grade: página {deep_offset // 100 + 1:,} (offset {deep_offset:,})".replace(",", ".")
    cases = {
        "grade: 1a página": grid(),
        deep_page: grid(start=deep_offset),
        "grade: ordenada por custo": grid(sort=[{"colId": "valor_custo_mensal", "sort": "desc"}]),
        "grade: filtro de texto": contains("razao_social_empresa", "servicos"),
        "grade: filtro de texto sem resultado (empresa)": contains("razao_social_empresa", "nenhuma empresa assim"),
        "grade: filtro de texto raro (órgão)": contains("nome_orgao", "juiz de fora"),
        "grade: filtro por nome de pessoa (trigramas)": contains("nome", "nenhuma pessoa assim"),
        "gráfico: totais por período": lambda: repo.totals_by_period(source),
        "gráfico: órgãos por custo": lambda: repo.top_by_cost(source, "nome_orgao", 2024, 5),
        "gráfico: empresas por custo": lambda: repo.top_by_cost(source, "razao_social_empresa", 2024, 5),
        "gráfico: salário por escolaridade": lambda: repo.salary_by_education(source, 2024, 5),
    }
    timings = time_app_calls(cases)
    repo.engine.dispose()
    return timings


def measure_analyses_page(settings) -> dict:
    """Server-side time of the "Análises" page's views (marts only) for the largest organ and
    company of the newest period: options, series, contracts, partners and the largest changes."""
    from pipelines.results import analyses
    from pipelines.results.queries import make_engine

    repo = analyses.AnalysesRepository(make_engine(settings))
    comparison = repo.comparison()
    if comparison is None:
        print("  página Análises: tabelas de análise vazias, nada medido", flush=True)
        return {}
    cases: dict[str, object] = {}
    for kind, label in (("orgao", "órgão"), ("empresa", "empresa")):
        [option] = repo.entity_options(kind, limit=1)
        _, key = analyses.parse_option(option["value"])
        latest = analyses.latest_present(repo.series(kind, key)) or {"ano": comparison.year, "mes": comparison.month}
        year, month = latest["ano"], latest["mes"]
        cases[f"análises: opções de {label}"] = lambda kind=kind: repo.entity_options(kind)
        cases[f"análises: busca de {label}"] = lambda kind=kind: repo.entity_options(kind, search="servi")
        cases[f"análises: série de {label}"] = lambda kind=kind, key=key: repo.series(kind, key)
        cases[f"análises: contratos de {label}"] = lambda kind=kind, key=key, y=year, m=month: repo.contracts(
            kind, key, y, m
        )
        cases[f"análises: parceiros de {label}"] = lambda kind=kind, key=key, y=year, m=month: repo.partners(
            kind, key, y, m
        )
        cases[f"análises: maiores variações de {label}"] = lambda kind=kind: repo.changes(
            kind, "custo", "aumentos", comparison
        )
    timings = time_app_calls(cases)
    repo.engine.dispose()
    return timings


def measure_app(settings, deep_offset: int = 1_000_000) -> dict:
    """The results app's grid pages and charts, then the Análises page's views."""
    return {**measure_results_app(settings, deep_offset), **measure_analyses_page(settings)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--periods", type=int, default=21)
    parser.add_argument("--rows", type=int, default=75_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database", default="terceirizados_bench")
    parser.add_argument(
        "--scheduled-runs",
        type=int,
        default=5,
        help="how many times the scheduled run is measured (the median is reported)",
    )
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results" / "benchmark.json")
    parser.add_argument(
        "--rerun-only",
        action="store_true",
        help="only the run with nothing new and the scheduled run, again, on the database and "
        "DATA_DIR of the last full run (when the project changed during it); updates those "
        "keys of --output",
    )
    parser.add_argument(
        "--app-only",
        action="store_true",
        help="only the results app's timings, again, on the database of the last full run (after a "
        "change to the app's queries); updates that key of --output",
    )
    args = parser.parse_args()

    work = BENCH_DIR / "work"
    portal_dir = work / f"portal-{args.periods}x{args.rows}-s{args.seed}"
    specs = default_periods()[: args.periods]
    started = time.perf_counter()
    if not (portal_dir / "specs.json").exists():
        print(f"Gerando portal sintético: {args.periods} períodos x {args.rows} linhas em {portal_dir}...", flush=True)
        shutil.rmtree(portal_dir, ignore_errors=True)
        portal = build_portal(portal_dir, specs, rows=args.rows, seed=args.seed, keep_rows=False)
        (portal_dir / "expectations.json").write_text(
            json.dumps({k: asdict(v) for k, v in portal.expectations.items()})
        )
        print(f"  gerado em {time.perf_counter() - started:.0f} s", flush=True)
    else:
        portal = load_portal(portal_dir)
    expectations = json.loads((portal_dir / "expectations.json").read_text())
    server = PortalServer(portal).start()

    data_dir, log_dir = work / "data", work / "logs"
    env = {
        **os.environ,
        "POSTGRES_DB": args.database,
        "DATA_DIR": str(data_dir),
        "LOG_DIR": str(log_dir),
        "CGU_TERCEIRIZADOS_URL": server.page_url,
        "PGPASSWORD": os.environ.get("POSTGRES_PASSWORD", ""),
    }
    settings = load_settings(env)
    project = _project_fingerprint()
    if args.rerun_only:
        rerun_only(args, settings, env, server, project)
        return
    if args.app_only:
        server.shutdown()
        timings = measure_app(settings)
        results = json.loads(args.output.read_text())
        results["results_app_seconds"] = timings
        results["results_app_measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        args.output.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        return
    shutil.rmtree(data_dir, ignore_errors=True)
    drop_database(settings, args.database)
    database.ensure_database(settings)

    calibration = cpu_calibration_seconds()
    total_rows = sum(e["loaded_rows"] for e in expectations.values())
    print(f"Medindo com {total_rows:,} linhas ({args.periods} períodos)...", flush=True)
    python = sys.executable
    capture = measure([python, "run/historic_capture.py"], env, "captura histórica")
    materialize = measure([python, "run/historic_materialize.py"], env, "materialização histórica")
    materialize["flow_seconds"] = last_flow_seconds(settings, HISTORIC_MATERIALIZE_FLOW)
    # nothing new on the portal: every file is unchanged, no period is rebuilt
    rerun = measure_rerun(settings, env, python)
    # the scheduled run: capture of the newest period (an XLSX) and the latest models
    scheduled = measure_scheduled_run(settings, env, python, args.scheduled_runs)
    app_timings = measure_app(settings)
    csv_files = sorted((data_dir / "csv").rglob("terceirizados_*.csv"))
    floor = run_floor(settings, env, csv_files)
    strict_floor = run_strict_floor(settings, env)
    server.shutdown()

    pipeline_seconds = capture["wall_seconds"] + materialize["wall_seconds"]
    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "cpu_calibration_seconds": calibration,
        },
        "scale": {
            "periods": args.periods,
            "rows_per_period": args.rows,
            "rows_loaded": total_rows,
            "xlsx_periods": sum(1 for s in specs if s.format == "xlsx"),
        },
        "historic_capture": {**capture, "rows_per_second": round(total_rows / capture["wall_seconds"])},
        "historic_materialize": {**materialize, "rows_per_second": round(total_rows / materialize["wall_seconds"])},
        "rerun_nothing_new": rerun,
        "scheduled_run_new_period": scheduled,
        "floor": {**floor, "rows_per_second": round(total_rows / floor["wall_seconds"])},
        "strict_floor": {**strict_floor, "rows_per_second": round(total_rows / strict_floor["wall_seconds"])},
        "pipeline_over_floor": round(pipeline_seconds / floor["wall_seconds"], 2),
        "pipeline_over_strict_floor": round(pipeline_seconds / strict_floor["wall_seconds"], 2),
        "peak_rss_mib": max(capture["peak_rss_mib"], materialize["peak_rss_mib"]),
        "results_app_seconds": app_timings,
        # the dbt project (queries/) changed while measuring: the run with nothing new found
        # another project and ran dbt (measure it again with --rerun-only)
        "project_changed_during_run": _project_fingerprint() != project,
    }
    results.update(carried_over(args.output))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(results, indent=2, ensure_ascii=False))
    print(
        f"\nPipeline/piso: {results['pipeline_over_floor']}x (meta <= 2x); pipeline/piso estrito: "
        f"{results['pipeline_over_strict_floor']}x (meta <= 1,5x); sem novidades: {rerun['wall_seconds']} s; "
        f"execução agendada: {scheduled['wall_seconds']} s (flow {scheduled['flow_seconds']} s; mediana de "
        f"{len(scheduled['runs'])}, de {scheduled['wall_seconds_range'][0]} a {scheduled['wall_seconds_range'][1]} s) "
        "(metas < 5 s); "
        f"pico de memória {results['peak_rss_mib']:.0f} MiB (meta < 1536 MiB)."
    )


EARLIER_KEPT = 5


def headline(results: dict) -> dict:
    """The numbers of a measurement the README compares with the next one."""
    scheduled = results.get("scheduled_run_new_period", {})
    return {
        "measured_at": results.get("measured_at"),
        "cpu_calibration_seconds": results.get("machine", {}).get("cpu_calibration_seconds"),
        "historic_capture_wall_seconds": results.get("historic_capture", {}).get("wall_seconds"),
        "historic_materialize_wall_seconds": results.get("historic_materialize", {}).get("wall_seconds"),
        "strict_floor_wall_seconds": results.get("strict_floor", {}).get("wall_seconds"),
        "pipeline_over_strict_floor": results.get("pipeline_over_strict_floor"),
        "rerun_nothing_new_wall_seconds": results.get("rerun_nothing_new", {}).get("wall_seconds"),
        "scheduled_run_new_period_wall_seconds": scheduled.get("wall_seconds"),
        "scheduled_run_new_period_flow_seconds": scheduled.get("flow_seconds"),
    }


def carried_over(output: Path) -> dict:
    """What a full measurement keeps of the file it replaces: the headline of that measurement
    (``previous_measurement``) and of the ones before it (``earlier_measurements``, newest
    first), and the 10x measurement of the app (``results_app_at_scale``, written by
    bench/scale.py)."""
    try:
        previous = json.loads(output.read_text())
    except (OSError, ValueError):
        return {}
    kept = {"previous_measurement": headline(previous)} if "measured_at" in previous else {}
    earlier = [previous["previous_measurement"]] if "previous_measurement" in previous else []
    earlier += previous.get("earlier_measurements", [])
    if kept and earlier:  # the older headlines, newest first
        kept["earlier_measurements"] = earlier[:EARLIER_KEPT]
    if "results_app_at_scale" in previous:
        kept["results_app_at_scale"] = previous["results_app_at_scale"]
    return kept


def rerun_only(args, settings, env: dict, server, project: str) -> None:
    """--rerun-only: the run with nothing new (after making sure it is so) and the scheduled run."""
    python = sys.executable
    print("Garantindo que não há novidades (captura e materialização históricas)...", flush=True)
    for command in ("run/historic_capture.py", "run/historic_materialize.py"):
        subprocess.run(
            [python, command],
            cwd=PROJECT_ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    rerun = measure_rerun(settings, env, python)
    scheduled = measure_scheduled_run(settings, env, python, args.scheduled_runs)
    server.shutdown()
    results = json.loads(args.output.read_text())
    results.update(
        {
            "rerun_nothing_new": rerun,
            "scheduled_run_new_period": scheduled,
            "rerun_measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "rerun_load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "rerun_cpu_calibration_seconds": cpu_calibration_seconds(),
            "project_changed_during_rerun": _project_fingerprint() != project,
        }
    )
    args.output.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({key: results[key] for key in ("rerun_nothing_new", "scheduled_run_new_period")}, indent=2))


if __name__ == "__main__":
    main()
