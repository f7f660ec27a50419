"""The Dash app: layout, callbacks and the CSV export route.

``create_app`` builds it for given settings (tests, ``run/results.py``);
``create_server`` is the WSGI entry point for a production server, as the container
runs it: ``waitress-serve --call pipelines.results.app:create_server``.

Every callback and the export tell three cases apart: a request the app cannot answer
(a message in the page, or HTTP 400), the database not answering ("Banco de dados
indisponível", or HTTP 503), and a query stopped by the statement timeout."""

from __future__ import annotations

import itertools
import json
import sys

import dash_ag_grid as dag
import pandas as pd
from dash import MATCH, Dash, Input, Output, ctx, dcc, html, no_update, set_props
from flask import Flask, Response, request

from pipelines.errors import ConfigError, first_line
from pipelines.results import views
from pipelines.results.export import csv_stream
from pipelines.results.protocol import callback_request_problem
from pipelines.results.queries import (
    DATABASE_UNAVAILABLE, STATEMENT_TIMEOUT_SECONDS, InvalidRequestError, ResultsRepository, is_query_timeout,
    make_engine,
)
from pipelines.settings import Settings, load_settings

PAGES = [("/tabelas", "Tabelas"), ("/logs", "Logs"), ("/execucoes", "Execuções"), ("/graficos", "Gráficos")]
DB_DOWN = DATABASE_UNAVAILABLE
RETRY_AFTER_SECONDS = 5
TIMEOUT_MESSAGE = (f"A consulta passou do limite de {STATEMENT_TIMEOUT_SECONDS} s e foi cancelada; "
                   "refine os filtros e tente de novo.")
GRID_STYLE = {"height": "560px", "width": "100%"}
COLUMN_DEFAULTS = {"filter": True, "sortable": True, "resizable": True}  # logs and runs grids
TOOLTIPS_AT_ONCE = {"tooltipShowDelay": 0}


def _nav() -> html.Nav:
    return html.Nav([dcc.Link(label, href=path, className="nav-link", id=f"nav-{path.strip('/')}")
                     for path, label in PAGES], className="nav")


def tables_page() -> html.Div:
    return html.Div([
        html.H2("Tabelas"),
        html.Div([
            dcc.Dropdown(id="table-select", options=views.table_options(), value="staging.transformed",
                         clearable=False, style={"minWidth": "420px"}),
            html.Div(id="export-container"),
        ], className="toolbar"),
        html.Div(id="table-info", className="info"),
        html.Div(id="grid-container"),
        html.H3("Dicionário de dados"),
        dag.AgGrid(id="dictionary", columnDefs=[
            {"field": "coluna", "width": 260}, {"field": "tipo", "width": 200}, {"field": "descricao", "flex": 1}],
            rowData=[], style={"height": "320px"}, dashGridOptions=TOOLTIPS_AT_ONCE),
    ])


def logs_page() -> html.Div:
    return html.Div([
        html.H2("Logs dos flows"),
        html.Div([
            dcc.Dropdown(id="log-flow", placeholder="Flow", style={"minWidth": "320px"}),
            dcc.Dropdown(id="log-run", placeholder="Execução", style={"minWidth": "360px"}),
            dcc.Dropdown(id="log-level", placeholder="Nível", options=["INFO", "WARNING", "ERROR"],
                         style={"minWidth": "160px"}),
        ], className="toolbar"),
        html.Div(id="logs-info", className="info"),
        dag.AgGrid(id="logs-grid", columnDefs=[
            {"field": "registrado_em", "headerName": "Registrado em (Brasília)", "width": 210},
            {"field": "nome_flow", "headerName": "Flow", "width": 300},
            {"field": "nivel", "headerName": "Nível", "width": 100},
            {"field": "nome_task", "headerName": "Task", "width": 240},
            {"field": "mensagem", "headerName": "Mensagem", "flex": 1, "wrapText": False, "tooltipField": "mensagem"},
            {"field": "estado_execucao", "headerName": "Estado da execução", "width": 150},
        ], rowData=[], getRowStyle=views.FAILED_ROW_STYLE, style=GRID_STYLE,
            dashGridOptions={"pagination": True, "paginationPageSize": 100, **TOOLTIPS_AT_ONCE},
            defaultColDef=COLUMN_DEFAULTS),
    ])


def runs_page() -> html.Div:
    return html.Div([
        html.H2("Execuções"),
        html.Div(id="runs-info", className="info"),
        dag.AgGrid(id="runs-grid", columnDefs=[
            {"field": "nome_flow", "headerName": "Flow", "width": 320},
            {"field": "iniciado_em", "headerName": "Início (Brasília)", "width": 170},
            {"field": "duracao", "headerName": "Duração", "width": 110},
            {"field": "estado_final", "headerName": "Estado final", "width": 130},
            {"field": "linhas_carregadas", "headerName": "Linhas carregadas", "width": 160},
            {"field": "linhas_quarentena", "headerName": "Em quarentena", "width": 140},
            {"field": "tentativas_agendadas", "headerName": "Novas tentativas", "width": 150},
            {"field": "mensagem", "headerName": "Mensagem", "flex": 1, "minWidth": 320, "tooltipField": "mensagem"},
            {"field": "id_execucao", "headerName": "Execução", "width": 300},
        ], rowData=[], getRowStyle=views.FAILED_ROW_STYLE, style=GRID_STYLE,
            defaultColDef=COLUMN_DEFAULTS, dashGridOptions=TOOLTIPS_AT_ONCE),
    ])


def charts_page() -> html.Div:
    return html.Div([
        html.H2("Gráficos"),
        html.Div(id="charts-info", className="info"),
        dcc.Graph(id="chart-totals"),
        html.Div([html.Label("Período:"), dcc.Dropdown(id="chart-period", clearable=False,
                                                       style={"minWidth": "200px"})], className="toolbar"),
        html.Div([dcc.Graph(id="chart-agencies"), dcc.Graph(id="chart-companies")], className="two-columns"),
        dcc.Graph(id="chart-salary"),
    ])


PAGE_BUILDERS = {"/tabelas": tables_page, "/logs": logs_page, "/execucoes": runs_page, "/graficos": charts_page}


def db_down_text(settings: Settings, error: Exception) -> str:
    detail = first_line(getattr(error, "orig", None) or error)
    return (f"Banco de dados indisponível em {settings.postgres_host}:{settings.postgres_port}/"
            f"{settings.postgres_db} ({detail})")


def db_down_banner(settings: Settings, error: Exception) -> html.Div:
    return html.Div(
        f"{db_down_text(settings, error)}. Os dados voltam a aparecer quando ele responder; "
        f"nova tentativa a cada {RETRY_AFTER_SECONDS} s.",
        className="banner", id="db-down")


def unavailable(error: Exception) -> str:
    """The page's message for a database error (the red banner gives the details)."""
    return TIMEOUT_MESSAGE if is_query_timeout(error) else views.DB_DOWN_MESSAGE


def _plain(text: str, status: int, **headers) -> Response:
    return Response(text + "\n", status=status, mimetype="text/plain", headers=headers)


def _json_parameter(name: str, default):
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidRequestError(f"o parâmetro {name} não é um JSON válido") from None


def _guard_callback_requests(app: Dash) -> None:
    """Malformed Dash callback requests get 400 with the reason instead of a 500."""
    dispatch_path = app.config.routes_pathname_prefix + "_dash-update-component"

    @app.server.before_request
    def check_callback_request():
        if request.path != dispatch_path or request.method != "POST":
            return None
        try:
            body = request.get_json(silent=True)
        except RecursionError:
            body = None
        problem = callback_request_problem(body, app.callback_map)
        return _plain(f"Requisição inválida: {problem}.", 400) if problem else None

    @app.server.errorhandler(InvalidRequestError)
    def invalid_request(error):  # a safety net: each callback handles its own
        return _plain(f"Requisição inválida: {error}.", 400)


def create_app(settings: Settings, repo: ResultsRepository | None = None) -> Dash:
    repo = repo or ResultsRepository(make_engine(settings))
    app = Dash(__name__, title="Terceirizados · resultados", suppress_callback_exceptions=True)
    _guard_callback_requests(app)
    app.layout = html.Div([
        dcc.Location(id="url"),
        dcc.Interval(id="health-interval", interval=5000),
        html.Header([html.H1("Terceirizados de Órgãos Federais"), _nav()]),
        html.Div(id="db-banner"),
        html.Main(id="page"),
    ])

    @app.callback(Output("page", "children"), Input("url", "pathname"))
    def render_page(pathname):
        return PAGE_BUILDERS.get(pathname if isinstance(pathname, str) else "/", tables_page)()

    @app.callback(Output("db-banner", "children"), Input("health-interval", "n_intervals"), Input("url", "pathname"))
    def health(_n, _path):
        try:
            repo.ping()
        except DB_DOWN as error:
            return db_down_banner(settings, error)
        return None

    @app.callback(Output("grid-container", "children"), Output("export-container", "children"),
                  Output("table-info", "children"), Output("dictionary", "rowData"), Input("table-select", "value"))
    def choose_table(key):
        try:
            schema, table = views.split_key(key)
            columns = repo.columns(schema, table)
            has_rows = bool(columns) and repo.has_rows(schema, table)
        except InvalidRequestError as error:
            return None, None, views.invalid_request(error), []
        except DB_DOWN as error:
            return None, None, unavailable(error), []
        if not has_rows:
            return None, None, html.Div(views.EMPTY_TABLE_MESSAGE, className="empty", id="empty-table"), \
                views.dictionary_rows(columns)
        # ids carry the table so that a new table gets a new grid (and a fresh row cache)
        grid = dag.AgGrid(
            id={"type": "grid", "table": key}, columnDefs=views.column_defs(columns), rowModelType="infinite",
            style=GRID_STYLE, className="ag-theme-alpine data-grid",
            dashGridOptions={"pagination": True, "paginationPageSize": 100, "cacheBlockSize": 100,
                             "maxBlocksInCache": 10, "rowBuffer": 0, **TOOLTIPS_AT_ONCE},
        )
        export = html.A("Exportar CSV (linhas filtradas)", id={"type": "export", "table": key},
                        href=views.export_href(key, None, None), className="button export-link")
        return grid, export, views.table_info(key), views.dictionary_rows(columns)

    @app.callback(Output({"type": "grid", "table": MATCH}, "getRowsResponse"),
                  Output({"type": "export", "table": MATCH}, "href"),
                  Input({"type": "grid", "table": MATCH}, "getRowsRequest"), prevent_initial_call=True)
    def get_rows(grid_request):
        if not grid_request:
            return no_update, no_update
        key = ctx.inputs_list[0]["id"]["table"]  # the request checker made sure it is there
        try:
            response, href = views.rows_response(repo, key, grid_request)
        except InvalidRequestError as error:
            set_props("table-info", {"children": views.invalid_request(error)})
            return {"rowData": [], "rowCount": 0}, no_update
        except DB_DOWN as error:
            set_props("table-info", {"children": unavailable(error)})
            return {"rowData": [], "rowCount": 0}, no_update
        set_props("table-info", {"children": views.table_info(key)})  # clears an earlier message
        return response, href

    @app.callback(Output("log-flow", "options"), Output("log-run", "options"), Input("url", "pathname"))
    def log_filter_options(pathname):
        if pathname != "/logs":
            return no_update, no_update
        try:
            filters = repo.log_filters()
        except DB_DOWN:
            return [], []
        return filters["flows"], views.run_options(filters)

    @app.callback(Output("logs-grid", "rowData"), Output("logs-info", "children"),
                  Input("log-flow", "value"), Input("log-run", "value"), Input("log-level", "value"))
    def show_logs(flow, run_id, level):
        try:
            flow, run_id = views.optional_text(flow, "Flow"), views.optional_text(run_id, "Execução")
            level = views.optional_text(level, "Nível")
        except InvalidRequestError as error:
            return [], views.invalid_request(error)
        try:
            rows = views.log_rows(repo.log_records(flow, run_id, level))
        except DB_DOWN as error:
            return [], unavailable(error)
        if not rows:
            return [], html.Div("Nenhum registro de log ainda: rode um flow.", className="empty")
        return rows, f"{len(rows)} registros mais recentes (execuções com falha em vermelho)."

    @app.callback(Output("runs-grid", "rowData"), Output("runs-info", "children"), Input("url", "pathname"))
    def show_runs(pathname):
        if pathname != "/execucoes":
            return no_update, no_update
        try:
            rows = views.runs_rows(repo.runs())
        except DB_DOWN as error:
            return [], unavailable(error)
        failed = sum(1 for r in rows if r["estado_final"] == "Failed")
        if not rows:
            return [], html.Div("Nenhuma execução registrada ainda.", className="empty")
        return rows, f"{len(rows)} execuções, {failed} com falha."

    @app.callback(Output("chart-totals", "figure"), Output("chart-period", "options"), Output("chart-period", "value"),
                  Output("charts-info", "children"), Input("url", "pathname"))
    def show_totals(pathname):
        if pathname != "/graficos":
            return no_update, no_update, no_update, no_update
        try:
            source = repo.chart_source()
            if source is None:
                empty = views.totals_figure(pd.DataFrame())
                return empty, [], None, html.Div(views.EMPTY_TABLE_MESSAGE, className="empty")
            totals = repo.totals_by_period(source)
        except DB_DOWN as error:
            return no_update, [], None, unavailable(error)
        options = views.period_options(totals)
        return views.totals_figure(totals), options, options[0]["value"], f"Fonte: {source}."

    @app.callback(Output("chart-agencies", "figure"), Output("chart-companies", "figure"),
                  Output("chart-salary", "figure"), Input("chart-period", "value"), prevent_initial_call=True)
    def show_period(period):
        if not period:
            return no_update, no_update, no_update
        try:
            year, month = views.parse_period(period)
        except InvalidRequestError as error:
            set_props("charts-info", {"children": views.invalid_request(error)})
            return no_update, no_update, no_update
        try:
            source = repo.chart_source()
            if source is None:
                return no_update, no_update, no_update
            agencies = repo.top_by_cost(source, "nome_orgao", year, month)
            companies = repo.top_by_cost(source, "razao_social_empresa", year, month)
            salaries = repo.salary_by_education(source, year, month)
        except DB_DOWN as error:
            set_props("charts-info", {"children": unavailable(error)})
            return no_update, no_update, no_update
        set_props("charts-info", {"children": f"Fonte: {source}."})
        label = f"{month:02d}/{year}"
        return (views.top_figure(agencies, f"Órgãos com maior custo mensal ({label})"),
                views.top_figure(companies, f"Empresas com maior custo mensal ({label})"),
                views.salary_figure(salaries))

    @app.server.route("/exportar.csv")
    def export_csv():
        """The filtered and sorted rows of a table as CSV (text cells made formula-safe)."""
        try:
            schema, table = views.split_key(request.args.get("tabela", ""))
            rows = repo.export_rows(schema, table, _json_parameter("ordem", None), _json_parameter("filtro", None))
            header = next(rows)
            # the first row runs the query, so that an outage or timeout at the start
            # still gets its own status instead of a cut-off download
            first = list(itertools.islice(rows, 1))
        except InvalidRequestError as error:
            return _plain(f"Exportação inválida: {error}.", 400)
        except DB_DOWN as error:
            text = TIMEOUT_MESSAGE if is_query_timeout(error) else (
                f"{db_down_text(settings, error)}. Tente a exportação de novo em instantes.")
            return _plain(text, 503, **{"Retry-After": str(RETRY_AFTER_SECONDS)})
        response = Response(csv_stream(header, itertools.chain(first, rows)), mimetype="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f"attachment; filename={schema}.{table}.csv"})
        response.call_on_close(rows.close)  # an aborted download frees its connection at once
        return response

    return app


def create_server() -> Flask:
    """WSGI application for a production server, from the environment's settings
    (``waitress-serve --call pipelines.results.app:create_server``)."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"Erro de configuração: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return create_app(settings).server
