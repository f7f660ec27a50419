"""The "Execuções" page: every registered flow run, its final state, rows and message."""

from __future__ import annotations

import dash_ag_grid as dag
from dash import Dash, Input, Output, html, no_update

from pipelines.results import views
from pipelines.results.pages.common import COLUMN_DEFAULTS, DB_DOWN, GRID_OPTIONS, GRID_STYLE, unavailable
from pipelines.results.queries import ResultsRepository

PATH = "/execucoes"


def layout() -> html.Div:
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


def register_callbacks(app: Dash, repo: ResultsRepository, *, database: str) -> None:
    """The page's callbacks on ``app``; ``database`` names the database in the messages
    ("Nada foi capturado ainda" when it does not exist)."""

    @app.callback(Output("runs-grid", "rowData"), Output("runs-info", "children"), Input("url", "pathname"))
    def show_runs(pathname):
        if pathname != PATH:
            return no_update, no_update
        try:
            rows = views.runs_rows(repo.runs())
        except DB_DOWN as error:
            return [], unavailable(error, database)
        if not rows:
            return [], html.Div("Nenhuma execução registrada ainda.", className="empty")
        return rows, views.runs_info(rows)
