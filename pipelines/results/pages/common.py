"""What the pages share: grid and graph settings and the message for a database error."""

from __future__ import annotations

from dash import dcc

from pipelines.results import views
from pipelines.results.formatting import AG_GRID_LOCALE, GRAPH_CONFIG
from pipelines.results.queries import (
    DATABASE_UNAVAILABLE,
    STATEMENT_TIMEOUT_SECONDS,
    is_missing_database,
    is_query_timeout,
)

DB_DOWN = DATABASE_UNAVAILABLE
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


def graph(graph_id: str) -> dcc.Graph:
    return dcc.Graph(id=graph_id, config=GRAPH_CONFIG)


def unavailable(error: Exception, database: str | None = None) -> str:
    """The page's message for a database error (the banner above gives the details)."""
    if is_query_timeout(error):
        return TIMEOUT_MESSAGE
    if database and is_missing_database(error, database):
        return views.NOTHING_CAPTURED_MESSAGE
    return views.DB_DOWN_MESSAGE
