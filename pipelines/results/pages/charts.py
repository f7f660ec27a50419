"""The "Gráficos" page: totals per period, and for a chosen period the organs and companies
with the largest monthly cost and the salary by education."""

from __future__ import annotations

import pandas as pd
from dash import Dash, Input, Output, dcc, html, no_update, set_props

from pipelines.results import views
from pipelines.results.pages.common import DB_DOWN, graph, unavailable
from pipelines.results.queries import InvalidRequestError, ResultsRepository

PATH = "/graficos"
PERIOD_CHARTS = ("chart-agencies", "chart-companies", "chart-salary")


def layout() -> html.Div:
    return html.Div(
        [
            html.H2("Gráficos"),
            html.Div(id="charts-info", className="info"),
            graph("chart-totals"),
            html.Div(
                [
                    html.Label("Período:"),
                    dcc.Dropdown(
                        id="chart-period", clearable=False, placeholder="Período", style={"minWidth": "200px"}
                    ),
                ],
                className="toolbar",
            ),
            html.Div([graph("chart-agencies"), graph("chart-companies")], className="two-columns"),
            graph("chart-salary"),
        ]
    )


def register_callbacks(app: Dash, repo: ResultsRepository, *, database: str) -> None:
    """The page's callbacks on ``app``; ``database`` names the database in the messages
    ("Nada foi capturado ainda" when it does not exist)."""

    @app.callback(
        Output("chart-totals", "figure"),
        Output("chart-period", "options"),
        Output("chart-period", "value"),
        Output("charts-info", "children"),
        Input("url", "pathname"),
    )
    def show_totals(pathname):
        if pathname != PATH:
            return no_update, no_update, no_update, no_update
        try:
            source = repo.chart_source()
            if source is None:
                # no period to choose: the per-period charts say so too, instead of empty axes
                for chart in PERIOD_CHARTS:
                    set_props(chart, {"figure": views.empty_figure(views.EMPTY_TABLE_MESSAGE)})
                empty = views.totals_figure(pd.DataFrame())
                return empty, [], None, html.Div(views.EMPTY_TABLE_MESSAGE, className="empty")
            totals = repo.totals_by_period(source)
        except DB_DOWN as error:
            for chart in PERIOD_CHARTS:
                set_props(chart, {"figure": views.empty_figure(unavailable(error, database))})
            return views.empty_figure(unavailable(error, database)), [], None, unavailable(error, database)
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
            set_props("charts-info", {"children": unavailable(error, database)})
            return no_update, no_update, no_update
        set_props("charts-info", {"children": f"Fonte: {source}."})
        label = f"{month:02d}/{year}"
        return (
            views.top_figure(agencies, f"Órgãos com maior custo mensal ({label})"),
            views.top_figure(companies, f"Empresas com maior custo mensal ({label})"),
            views.salary_figure(salaries),
        )
