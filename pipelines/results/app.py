"""The Dash app: layout, callbacks and the CSV export route.

``create_app`` builds it for given settings (tests, ``run/results.py``);
``create_server`` is the WSGI entry point for a production server, as the container
runs it: ``waitress-serve --call pipelines.results.app:create_server``.

Every callback and the export tell four cases apart: a request the app cannot answer
(a message in the page, or HTTP 400), the database not answering ("Banco de dados
indisponível", or HTTP 503), a query stopped by the statement timeout, and a database
the pipeline never wrote to ("Nada foi capturado ainda", with the commands that capture).

Besides the Dash pages, the Flask server answers ``/exportar.csv`` (CSV export),
``/saude`` (which process serves the app: start.sh checks it is the one it started) and
``/docs/`` (the dbt documentation generated at the end of each materialization)."""

from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path

import dash_ag_grid as dag
import pandas as pd
from dash import MATCH, Dash, Input, Output, ctx, dcc, html, no_update, set_props
from flask import Flask, Response, jsonify, redirect, request, send_from_directory

from pipelines.errors import ConfigError, first_line
from pipelines.results import analyses, views
from pipelines.results.export import csv_stream
from pipelines.results.formatting import AG_GRID_LOCALE, GRAPH_CONFIG
from pipelines.results.protocol import callback_request_problem
from pipelines.results.queries import (
    DATABASE_UNAVAILABLE,
    STATEMENT_TIMEOUT_SECONDS,
    InvalidRequestError,
    ResultsRepository,
    is_missing_database,
    is_query_timeout,
    make_engine,
)
from pipelines.settings import Settings, load_settings

PAGES = [
    ("/tabelas", "Tabelas"),
    ("/logs", "Logs"),
    ("/execucoes", "Execuções"),
    ("/graficos", "Gráficos"),
    (analyses.PATH, "Análises"),
]
DB_DOWN = DATABASE_UNAVAILABLE
RETRY_AFTER_SECONDS = 5
TIMEOUT_MESSAGE = (
    f"A consulta passou do limite de {STATEMENT_TIMEOUT_SECONDS} s e foi cancelada; refine os filtros e tente de novo."
)
GRID_STYLE = {"height": "560px", "width": "100%"}
COLUMN_DEFAULTS = {
    "filter": True,
    "sortable": True,
    "resizable": True,  # logs and runs grids
    "wrapHeaderText": True,
    "autoHeaderHeight": True,
}
# Every grid: AG Grid's own texts and number formats in Portuguese, tooltips at once.
GRID_OPTIONS = {"localeText": AG_GRID_LOCALE, "tooltipShowDelay": 0}
APP_NAME = "terceirizados-resultados"  # what /saude answers, with the serving process id
DOCS_PATH = "/docs/"


def _nav() -> html.Nav:
    links = [dcc.Link(label, href=path, className="nav-link", id=f"nav-{path.strip('/')}") for path, label in PAGES]
    # the dbt documentation is a page of its own (not a Dash page): a full page load
    links.append(html.A("Documentação (dbt)", href=DOCS_PATH, className="nav-link", id="nav-docs"))
    return html.Nav(links, className="nav")


def _graph(graph_id: str) -> dcc.Graph:
    return dcc.Graph(id=graph_id, config=GRAPH_CONFIG)


def tables_page() -> html.Div:
    return html.Div(
        [
            html.H2("Tabelas"),
            html.Div(
                [
                    dcc.Dropdown(
                        id="table-select",
                        options=views.table_options(),
                        value="staging.transformed",
                        clearable=False,
                        style={"minWidth": "420px"},
                    ),
                    html.Div(id="export-container"),
                ],
                className="toolbar",
            ),
            html.Div(id="table-info", className="info"),
            html.Div(id="grid-container"),
            html.H3("Dicionário de dados"),
            dag.AgGrid(
                id="dictionary",
                columnDefs=[
                    {"field": "coluna", "headerName": "Coluna", "width": 260},
                    {"field": "tipo", "headerName": "Tipo", "width": 200},
                    {
                        "field": "descricao",
                        "headerName": "Descrição",
                        "flex": 1,
                        "wrapText": True,
                        "autoHeight": True,
                        "cellStyle": {"lineHeight": "1.5", "paddingTop": "6px", "paddingBottom": "6px"},
                    },
                ],
                rowData=[],
                style={"height": "420px"},
                dashGridOptions=GRID_OPTIONS,
            ),
        ]
    )


def logs_page() -> html.Div:
    return html.Div(
        [
            html.H2("Logs dos flows"),
            html.Div(
                [
                    dcc.Dropdown(id="log-flow", placeholder="Flow", style={"minWidth": "320px"}),
                    dcc.Dropdown(id="log-run", placeholder="Execução", style={"minWidth": "360px"}),
                    dcc.Dropdown(
                        id="log-level",
                        placeholder="Nível",
                        options=["INFO", "WARNING", "ERROR"],
                        style={"minWidth": "160px"},
                    ),
                ],
                className="toolbar",
            ),
            html.Div(id="logs-info", className="info"),
            dag.AgGrid(
                id="logs-grid",
                columnDefs=[
                    {"field": "registrado_em", "headerName": "Registrado em (Brasília)", "width": 210},
                    {"field": "nome_flow", "headerName": "Flow", "width": 300},
                    {"field": "nivel", "headerName": "Nível", "width": 130},
                    {"field": "nome_task", "headerName": "Task", "width": 240},
                    {
                        "field": "mensagem",
                        "headerName": "Mensagem",
                        "flex": 1,
                        "wrapText": False,
                        "tooltipField": "mensagem",
                    },
                    {"field": "estado_execucao", "headerName": "Estado da execução", "width": 150},
                ],
                rowData=[],
                getRowStyle=views.FAILED_ROW_STYLE,
                style=GRID_STYLE,
                dashGridOptions={"pagination": True, "paginationPageSize": 100, **GRID_OPTIONS},
                defaultColDef=COLUMN_DEFAULTS,
            ),
        ]
    )


def runs_page() -> html.Div:
    return html.Div(
        [
            html.H2("Execuções"),
            html.Div(id="runs-info", className="info"),
            # fits 1400 px without cutting the message: the numeric headers wrap, and the message,
            # the only long text, wraps inside its own width (the row grows)
            dag.AgGrid(
                id="runs-grid",
                columnDefs=[
                    {"field": "nome_flow", "headerName": "Flow", "width": 305, "tooltipField": "id_execucao"},
                    {"field": "iniciado_em", "headerName": "Início (Brasília)", "width": 160},
                    {"field": "duracao", "headerName": "Duração", "width": 100},
                    {"field": "estado_final", "headerName": "Estado final", "width": 105},
                    {
                        "field": "linhas_carregadas",
                        "headerName": "Linhas carregadas",
                        "width": 115,
                        "type": "rightAligned",
                    },
                    {"field": "linhas_quarentena", "headerName": "Em quarentena", "width": 120, "type": "rightAligned"},
                    {
                        "field": "tentativas_agendadas",
                        "headerName": "Novas tentativas",
                        "width": 110,
                        "type": "rightAligned",
                    },
                    {
                        "field": "mensagem",
                        "headerName": "Mensagem",
                        "flex": 1,
                        "minWidth": 320,
                        "wrapText": True,
                        "autoHeight": True,
                        "cellStyle": {
                            "lineHeight": "1.5",
                            "paddingTop": "6px",
                            "paddingBottom": "6px",
                            "wordBreak": "break-word",
                        },
                    },
                    {"field": "id_execucao", "headerName": "Execução", "width": 300},
                ],
                rowData=[],
                getRowStyle=views.FAILED_ROW_STYLE,
                style=GRID_STYLE,
                defaultColDef=COLUMN_DEFAULTS,
                dashGridOptions=GRID_OPTIONS,
            ),
        ]
    )


def charts_page() -> html.Div:
    return html.Div(
        [
            html.H2("Gráficos"),
            html.Div(id="charts-info", className="info"),
            _graph("chart-totals"),
            html.Div(
                [
                    html.Label("Período:"),
                    dcc.Dropdown(
                        id="chart-period", clearable=False, placeholder="Período", style={"minWidth": "200px"}
                    ),
                ],
                className="toolbar",
            ),
            html.Div([_graph("chart-agencies"), _graph("chart-companies")], className="two-columns"),
            _graph("chart-salary"),
        ]
    )


PAGE_BUILDERS = {
    "/tabelas": tables_page,
    "/logs": logs_page,
    "/execucoes": runs_page,
    "/graficos": charts_page,
    analyses.PATH: analyses.layout,
}


def db_down_text(settings: Settings, error: Exception) -> str:
    detail = first_line(getattr(error, "orig", None) or error)
    return (
        f"Banco de dados indisponível em {settings.postgres_host}:{settings.postgres_port}/"
        f"{settings.postgres_db} ({detail})"
    )


def db_down_banner(settings: Settings, error: Exception) -> html.Div:
    return html.Div(
        f"{db_down_text(settings, error)}. Os dados voltam a aparecer quando ele responder; "
        f"nova tentativa a cada {RETRY_AFTER_SECONDS} s.",
        className="banner",
        id="db-down",
    )


def unavailable(error: Exception, database: str | None = None) -> str:
    """The page's message for a database error (the banner above gives the details)."""
    if is_query_timeout(error):
        return TIMEOUT_MESSAGE
    if database and is_missing_database(error, database):
        return views.NOTHING_CAPTURED_MESSAGE
    return views.DB_DOWN_MESSAGE


def docs_missing_page(folder: Path) -> Response:
    """/docs/ before the first materialization generated the documentation."""
    body = f"""<!doctype html><html lang="pt-BR"><head><meta charset="utf-8">
<title>Documentação do dbt · Terceirizados</title><link rel="stylesheet" href="/assets/style.css"></head>
<body><header><h1>Terceirizados de Órgãos Federais</h1><nav class="nav"><a class="nav-link" href="/tabelas">Voltar
aos resultados</a></nav></header><main><div class="empty" id="docs-missing">
<p><strong>A documentação do dbt ainda não foi gerada.</strong></p>
<p>Ela é gerada ao fim de cada materialização. Para gerá-la, rode:</p>
<pre>.venv/bin/python run/materialize.py</pre>
<p>(ou <code>./start.sh</code>, que captura e materializa o período mais recente). Os arquivos ficam em
<code>{folder}</code>.</p></div></main></body></html>"""
    return Response(body, status=404, mimetype="text/html")


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


def _serve_docs(app: Dash, settings: Settings) -> None:
    """The dbt documentation (index.html, manifest.json, catalog.json) under /docs/. The
    page fetches manifest.json and catalog.json relative to itself, so /docs redirects to
    /docs/."""

    @app.server.route("/docs")
    def docs_without_slash():
        return redirect(DOCS_PATH, code=308)

    @app.server.route(DOCS_PATH, defaults={"name": "index.html"})
    @app.server.route(DOCS_PATH + "<name>")
    def docs(name):
        from pipelines.dbt import DOCS_FILES, docs_path  # on first use: pipelines.dbt brings in prefect

        if name not in DOCS_FILES:
            return _plain("Arquivo inexistente na documentação do dbt.", 404)
        where = docs_path(settings)
        if not (where / "index.html").is_file():
            return docs_missing_page(where)
        response = send_from_directory(where, name, max_age=0)
        response.headers["Cache-Control"] = "no-cache"  # a new materialization regenerates them
        return response


def create_app(settings: Settings, repo: ResultsRepository | None = None) -> Dash:
    repo = repo or ResultsRepository(make_engine(settings))
    app = Dash(
        __name__, title="Terceirizados · resultados", update_title="Atualizando...", suppress_callback_exceptions=True
    )
    _guard_callback_requests(app)
    _serve_docs(app, settings)
    where = f"{settings.postgres_db} em {settings.postgres_host}:{settings.postgres_port}"

    def unavailable_here(error: Exception) -> str:
        return unavailable(error, settings.postgres_db)

    @app.server.route("/saude")
    def health_check():
        """Which process serves the app (start.sh checks that it is the one it started)."""
        return jsonify(app=APP_NAME, pid=os.getpid())

    app.layout = html.Div(
        [
            dcc.Location(id="url"),
            dcc.Interval(id="health-interval", interval=5000),
            html.Header([html.H1("Terceirizados de Órgãos Federais"), _nav()]),
            html.Div(id="db-banner"),
            html.Main(id="page"),
        ]
    )

    @app.callback(Output("page", "children"), Input("url", "pathname"))
    def render_page(pathname):
        return PAGE_BUILDERS.get(pathname if isinstance(pathname, str) else "/", tables_page)()

    @app.callback(Output("db-banner", "children"), Input("health-interval", "n_intervals"), Input("url", "pathname"))
    def health(_n, _path):
        try:
            captured = repo.captured_anything()
        except DB_DOWN as error:
            if is_missing_database(error, settings.postgres_db):
                return views.nothing_captured(where)
            return db_down_banner(settings, error)
        return None if captured else views.nothing_captured(where)

    @app.callback(
        Output("grid-container", "children"),
        Output("export-container", "children"),
        Output("table-info", "children"),
        Output("dictionary", "rowData"),
        Input("table-select", "value"),
    )
    def choose_table(key):
        try:
            schema, table = views.split_key(key)
            columns = repo.columns(schema, table)
            has_rows = bool(columns) and repo.has_rows(schema, table)
        except InvalidRequestError as error:
            return None, None, views.invalid_request(error), []
        except DB_DOWN as error:
            return None, None, unavailable_here(error), []
        if not has_rows:
            return (
                None,
                None,
                html.Div(views.EMPTY_TABLE_MESSAGE, className="empty", id="empty-table"),
                views.dictionary_rows(columns),
            )
        # ids carry the table so that a new table gets a new grid (and a fresh row cache)
        grid = dag.AgGrid(
            id={"type": "grid", "table": key},
            columnDefs=views.column_defs(columns),
            rowModelType="infinite",
            style=GRID_STYLE,
            className="ag-theme-alpine data-grid",
            dashGridOptions={
                "pagination": True,
                "paginationPageSize": 100,
                "cacheBlockSize": 100,
                "maxBlocksInCache": 10,
                "rowBuffer": 0,
                # ~25 columns: render them all (cheap), so every cell is in the page
                "suppressColumnVirtualisation": True,
                **GRID_OPTIONS,
            },
        )
        export = html.A(
            "Exportar CSV (linhas filtradas)",
            id={"type": "export", "table": key},
            href=views.export_href(key, None, None),
            className="button export-link",
        )
        return grid, export, views.table_info(key), views.dictionary_rows(columns)

    @app.callback(
        Output({"type": "grid", "table": MATCH}, "getRowsResponse"),
        Output({"type": "export", "table": MATCH}, "href"),
        Input({"type": "grid", "table": MATCH}, "getRowsRequest"),
        prevent_initial_call=True,
    )
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
            set_props("table-info", {"children": unavailable_here(error)})
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

    @app.callback(
        Output("logs-grid", "rowData"),
        Output("logs-info", "children"),
        Input("log-flow", "value"),
        Input("log-run", "value"),
        Input("log-level", "value"),
    )
    def show_logs(flow, run_id, level):
        try:
            flow, run_id = views.optional_text(flow, "Flow"), views.optional_text(run_id, "Execução")
            level = views.optional_text(level, "Nível")
        except InvalidRequestError as error:
            return [], views.invalid_request(error)
        try:
            rows = views.log_rows(repo.log_records(flow, run_id, level))
        except DB_DOWN as error:
            return [], unavailable_here(error)
        if not rows:
            return [], html.Div("Nenhum registro de log ainda: rode um flow.", className="empty")
        return rows, views.logs_info(rows)

    @app.callback(Output("runs-grid", "rowData"), Output("runs-info", "children"), Input("url", "pathname"))
    def show_runs(pathname):
        if pathname != "/execucoes":
            return no_update, no_update
        try:
            rows = views.runs_rows(repo.runs())
        except DB_DOWN as error:
            return [], unavailable_here(error)
        if not rows:
            return [], html.Div("Nenhuma execução registrada ainda.", className="empty")
        return rows, views.runs_info(rows)

    @app.callback(
        Output("chart-totals", "figure"),
        Output("chart-period", "options"),
        Output("chart-period", "value"),
        Output("charts-info", "children"),
        Input("url", "pathname"),
    )
    def show_totals(pathname):
        if pathname != "/graficos":
            return no_update, no_update, no_update, no_update
        try:
            source = repo.chart_source()
            if source is None:
                # no period to choose: the per-period charts say so too, instead of empty axes
                for chart in ("chart-agencies", "chart-companies", "chart-salary"):
                    set_props(chart, {"figure": views.empty_figure(views.EMPTY_TABLE_MESSAGE)})
                empty = views.totals_figure(pd.DataFrame())
                return empty, [], None, html.Div(views.EMPTY_TABLE_MESSAGE, className="empty")
            totals = repo.totals_by_period(source)
        except DB_DOWN as error:
            for chart in ("chart-agencies", "chart-companies", "chart-salary"):
                set_props(chart, {"figure": views.empty_figure(unavailable_here(error))})
            return views.empty_figure(unavailable_here(error)), [], None, unavailable_here(error)
        options = views.period_options(totals)
        return views.totals_figure(totals), options, options[0]["value"], f"Fonte: {source}."

    @app.callback(
        Output("chart-agencies", "figure"),
        Output("chart-companies", "figure"),
        Output("chart-salary", "figure"),
        Input("chart-period", "value"),
        prevent_initial_call=True,
    )
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
            set_props("charts-info", {"children": unavailable_here(error)})
            return no_update, no_update, no_update
        set_props("charts-info", {"children": f"Fonte: {source}."})
        label = f"{month:02d}/{year}"
        return (
            views.top_figure(agencies, f"Órgãos com maior custo mensal ({label})"),
            views.top_figure(companies, f"Empresas com maior custo mensal ({label})"),
            views.salary_figure(salaries),
        )

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
            if is_missing_database(error, settings.postgres_db):
                return _plain(views.nothing_captured_text(where), 404)
            text = (
                TIMEOUT_MESSAGE
                if is_query_timeout(error)
                else (f"{db_down_text(settings, error)}. Tente a exportação de novo em instantes.")
            )
            return _plain(text, 503, **{"Retry-After": str(RETRY_AFTER_SECONDS)})
        response = Response(
            csv_stream(header, itertools.chain(first, rows)),
            mimetype="text/csv; charset=utf-8",
            headers={"Content-Disposition": f"attachment; filename={schema}.{table}.csv"},
        )
        response.call_on_close(rows.close)  # an aborted download frees its connection at once
        return response

    analyses.register_callbacks(app, repo)
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
