"""Pure functions behind the app's callbacks: repository data in, Dash/AG Grid/plotly
structures out. Tested without a browser."""

from __future__ import annotations

import json
import math
import re
from urllib.parse import urlencode

import pandas as pd
import plotly.graph_objects as go
from dash import html

from pipelines.results.formatting import PLOTLY_SEPARATORS, brl, duration, integer, period_label
from pipelines.results.queries import (
    TABLES, Column, InvalidRequestError, ResultsRepository, check_filter_model, check_sort_model, text_value,
)

LOCAL_TIMEZONE = "America/Sao_Paulo"  # times are shown in Brasília time
EMPTY_TABLE_MESSAGE = "Dados para esta tabela ainda não foram capturados."
DB_DOWN_MESSAGE = "Banco de dados indisponível."
MAX_ROW_INDEX = 2**31  # far beyond any table here; keeps OFFSET a plain integer
PERIOD = re.compile(r"(\d{4})-(\d{2})")
FAILED_ROW_STYLE = {"styleConditions": [
    {"condition": "params.data && params.data.estado_final === 'Failed'",
     "style": {"backgroundColor": "#fde2e1", "color": "#8a1c1c"}},
    {"condition": "params.data && params.data.estado_execucao === 'Failed'",
     "style": {"backgroundColor": "#fde2e1"}},
    {"condition": "params.data && params.data.nivel === 'ERROR'",
     "style": {"color": "#b00020", "fontWeight": "bold"}},
]}


def table_key(schema: str, table: str) -> str:
    return f"{schema}.{table}"


def split_key(key: str | None) -> tuple[str, str]:
    if key is not None and not isinstance(key, str):
        raise InvalidRequestError("o nome da tabela deve ser um texto")
    schema, _, table = (key or "").partition(".")
    return schema, table


def table_info(key: str) -> str:
    return f"Tabela {key}: paginação, ordenação e filtros no servidor."


def invalid_request(error: Exception) -> html.Div:
    """What the page shows for a request it cannot answer (never "database down")."""
    return html.Div(f"Pedido inválido: {error}.", className="error")


def optional_text(value, label: str) -> str | None:
    """A dropdown filter: one text value, or None (no filter)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequestError(f"o filtro {label} deve ser um único valor de texto")
    return text_value(value, f"o filtro {label}")


def parse_period(value) -> tuple[int, int]:
    """'2024-05' -> (2024, 5)."""
    match = PERIOD.fullmatch(value) if isinstance(value, str) else None
    if not match or not 1 <= int(match[2]) <= 12:
        raise InvalidRequestError(f"o período deve ter a forma AAAA-MM (recebido: {json.dumps(value)[:40]})")
    return int(match[1]), int(match[2])


def row_index(value, name: str) -> int:
    """startRow/endRow of a grid request: a whole number from 0 to MAX_ROW_INDEX."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value) or not 0 <= value <= MAX_ROW_INDEX:
        raise InvalidRequestError(f"{name} deve ser um número inteiro entre 0 e {MAX_ROW_INDEX}")
    return int(value)


def table_options() -> list[dict]:
    return [{"label": label, "value": table_key(schema, table)} for schema, table, label in TABLES]


def column_defs(columns: list[Column]) -> list[dict]:
    """Headers show the column type; the tooltip adds the Portuguese description (dbt docs)."""
    defs = []
    for column in columns:
        defs.append({
            "field": column.name,
            "headerName": f"{column.name} ({column.type})",
            "headerTooltip": f"{column.type} — {column.description or 'sem descrição'}",
            "filter": "agNumberColumnFilter" if column.numeric else "agTextColumnFilter",
            "filterParams": {"buttons": ["apply", "reset"], "maxNumConditions": 2},
            "sortable": True,
            "resizable": True,
        })
    return defs


def dictionary_rows(columns: list[Column]) -> list[dict]:
    return [{"coluna": c.name, "tipo": c.type, "descricao": c.description or ""} for c in columns]


def export_href(key: str, sort_model: list | None, filter_model: dict | None) -> str:
    query = {"tabela": key}
    if filter_model:
        query["filtro"] = json.dumps(filter_model, ensure_ascii=False)
    if sort_model:
        query["ordem"] = json.dumps(sort_model, ensure_ascii=False)
    return "/exportar.csv?" + urlencode(query)


def rows_response(repo: ResultsRepository, key: str, request: dict | None) -> tuple[dict, str]:
    """AG Grid infinite-model response for a getRowsRequest, and the export link of that view.
    A malformed request raises InvalidRequestError before any query."""
    request = {} if request is None else request
    if not isinstance(request, dict):
        raise InvalidRequestError("o pedido da grade deve ser um objeto")
    schema, table = split_key(key)
    start, end = row_index(request.get("startRow", 0), "startRow"), row_index(request.get("endRow", 100), "endRow")
    sort_model = check_sort_model(request.get("sortModel"))
    filter_model = check_filter_model(request.get("filterModel"))
    rows, total = repo.page(schema, table, start, end, sort_model, filter_model)
    return {"rowData": rows, "rowCount": total}, export_href(key, sort_model, filter_model)


def runs_rows(frame: pd.DataFrame) -> list[dict]:
    if frame.empty:
        return []
    rows = []
    for record in frame.to_dict("records"):
        start, end = record["iniciado_em"], record["finalizado_em"]
        rows.append({
            "nome_flow": record["nome_flow"],
            "id_execucao": record["id_execucao"],
            "iniciado_em": start.tz_convert(LOCAL_TIMEZONE).strftime("%d/%m/%Y %H:%M:%S") if pd.notna(start) else "—",
            "duracao": duration(start, end if pd.notna(end) else None),
            "estado_final": record["estado_final"],
            "linhas_carregadas": integer(record["linhas_carregadas"]) if pd.notna(record["linhas_carregadas"]) else "—",
            "linhas_quarentena": integer(record["linhas_quarentena"]) if pd.notna(record["linhas_quarentena"]) else "—",
            "tentativas_agendadas": int(record["tentativas_agendadas"]),
            "mensagem": record["mensagem"] or "",
        })
    return rows


def log_rows(frame: pd.DataFrame) -> list[dict]:
    if frame.empty:
        return []
    frame = frame.copy()
    local = frame["registrado_em"].dt.tz_convert(LOCAL_TIMEZONE)
    frame["registrado_em"] = local.dt.strftime("%d/%m/%Y %H:%M:%S,%f").str[:-3]
    return frame.fillna("").to_dict("records")


def run_options(filters: dict) -> list[dict]:
    options = []
    for run in filters["runs"]:
        started = run["iniciado_em"].tz_convert(LOCAL_TIMEZONE).strftime("%d/%m %H:%M")
        marker = " ✗" if run["estado_final"] == "Failed" else ""
        options.append({"label": f"{run['nome_flow'].split('__')[-1]} {started} {run['estado_final']}{marker}",
                        "value": run["id_execucao"]})
    return options


def _empty_figure(message: str) -> go.Figure:
    figure = go.Figure()
    figure.add_annotation(text=message, showarrow=False, font={"size": 16})
    figure.update_layout(xaxis={"visible": False}, yaxis={"visible": False}, height=320)
    return figure


def totals_figure(frame: pd.DataFrame) -> go.Figure:
    """Workers (bars) and total monthly cost (line, BRL) per published period."""
    if frame.empty:
        return _empty_figure(EMPTY_TABLE_MESSAGE)
    labels = [period_label(a, m) for a, m in zip(frame["ano"], frame["mes"])]
    costs = frame["custo_total"].astype(float)
    figure = go.Figure()
    figure.add_bar(x=labels, y=frame["terceirizados"], name="Terceirizados", marker_color="#1f4e79",
                   hovertemplate="%{x}: %{y:,.0f} terceirizados<extra></extra>")
    figure.add_scatter(x=labels, y=costs, name="Custo mensal total", yaxis="y2", mode="lines+markers",
                       line={"color": "#c55a11"}, customdata=[brl(v) for v in frame["custo_total"]],
                       hovertemplate="%{x}: %{customdata}<extra></extra>")
    figure.update_layout(
        title="Terceirizados e custo mensal total por período", separators=PLOTLY_SEPARATORS, height=420,
        yaxis={"title": "terceirizados", "tickformat": ",.0f"},
        yaxis2={"title": "custo mensal (R$)", "overlaying": "y", "side": "right", "tickprefix": "R$ ",
                "tickformat": ",.0f"},
        legend={"orientation": "h", "y": -0.2},
    )
    return figure


def top_figure(frame: pd.DataFrame, title: str) -> go.Figure:
    if frame.empty:
        return _empty_figure(EMPTY_TABLE_MESSAGE)
    frame = frame.iloc[::-1]
    figure = go.Figure(go.Bar(
        x=frame["custo_total"].astype(float), y=frame["nome"], orientation="h", marker_color="#1f4e79",
        customdata=[[brl(c), integer(n)] for c, n in zip(frame["custo_total"], frame["terceirizados"])],
        hovertemplate="%{y}<br>%{customdata[0]} · %{customdata[1]} terceirizados<extra></extra>",
        text=[brl(c) for c in frame["custo_total"]], textposition="auto",
    ))
    figure.update_layout(title=title, separators=PLOTLY_SEPARATORS, height=460, margin={"l": 320},
                         xaxis={"tickprefix": "R$ ", "tickformat": ",.0f"})
    return figure


def salary_figure(frame: pd.DataFrame) -> go.Figure:
    """Salary distribution by education level from precomputed quartiles (no raw points sent)."""
    if frame.empty:
        return _empty_figure(EMPTY_TABLE_MESSAGE)
    figure = go.Figure()
    for row in frame.to_dict("records"):
        figure.add_trace(go.Box(
            name=row["nivel"], x=[row["nivel"]],
            q1=[float(row["q1"])], median=[float(row["mediana"])], q3=[float(row["q3"])],
            lowerfence=[float(row["minimo"])], upperfence=[float(row["p95"])], marker_color="#1f4e79",
            showlegend=False, hoverinfo="name+y",
        ))
    figure.update_layout(title="Salário mensal por nível de escolaridade (mínimo, quartis e percentil 95)",
                         separators=PLOTLY_SEPARATORS, height=480, yaxis={"tickprefix": "R$ ", "tickformat": ",.2f"},
                         margin={"b": 160})
    return figure


def period_options(frame: pd.DataFrame) -> list[dict]:
    return [{"label": period_label(a, m), "value": f"{a}-{m:02d}"} for a, m in zip(frame["ano"], frame["mes"])][::-1]
