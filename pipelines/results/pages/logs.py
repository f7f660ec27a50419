"""The "Logs" page: the flows' log records, filtered by flow, run and level."""

from __future__ import annotations

import dash_ag_grid as dag
from dash import Dash, Input, Output, dcc, html, no_update

from pipelines.results import views
from pipelines.results.pages.common import COLUMN_DEFAULTS, DB_DOWN, GRID_OPTIONS, GRID_STYLE, unavailable
from pipelines.results.queries import InvalidRequestError, ResultsRepository

PATH = "/logs"


def layout() -> html.Div:
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


def register_callbacks(app: Dash, repo: ResultsRepository, *, database: str) -> None:
    """The page's callbacks on ``app``; ``database`` names the database in the messages
    ("Nada foi capturado ainda" when it does not exist)."""

    @app.callback(Output("log-flow", "options"), Output("log-run", "options"), Input("url", "pathname"))
    def log_filter_options(pathname):
        if pathname != PATH:
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
            return [], unavailable(error, database)
        if not rows:
            return [], html.Div("Nenhum registro de log ainda: rode um flow.", className="empty")
        return rows, views.logs_info(rows)
