"""The "Tabelas" page: a table's rows in a paged grid (filtered and sorted in the
database), its CSV export link and its data dictionary."""

from __future__ import annotations

import dash_ag_grid as dag
from dash import MATCH, Dash, Input, Output, ctx, dcc, html, no_update, set_props

from pipelines.results import views
from pipelines.results.pages.common import DB_DOWN, GRID_OPTIONS, GRID_STYLE, unavailable
from pipelines.results.queries import InvalidRequestError, ResultsRepository

PATH = "/tabelas"


def layout() -> html.Div:
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


def register_callbacks(app: Dash, repo: ResultsRepository, *, database: str) -> None:
    """The page's callbacks on ``app``; ``database`` names the database in the messages
    ("Nada foi capturado ainda" when it does not exist)."""

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
            return None, None, unavailable(error, database), []
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
            set_props("table-info", {"children": unavailable(error, database)})
            return {"rowData": [], "rowCount": 0}, no_update
        set_props("table-info", {"children": views.table_info(key)})  # clears an earlier message
        return response, href
