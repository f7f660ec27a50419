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

from pipelines.results.formatting import PLOTLY_SEPARATORS, brl, duration, integer, period_label, plural
from pipelines.results.queries import (
    TABLES,
    Column,
    InvalidRequestError,
    ResultsRepository,
    check_filter_model,
    check_sort_model,
    text_value,
)

LOCAL_TIMEZONE = "America/Sao_Paulo"  # times are shown in Brasília time
EMPTY_TABLE_MESSAGE = "Dados para esta tabela ainda não foram capturados."
DB_DOWN_MESSAGE = "Banco de dados indisponível."
CAPTURE_COMMANDS = ("./start.sh --amostra", ".venv/bin/python run/capture.py")
NOTHING_CAPTURED_MESSAGE = "Nada foi capturado ainda."
HISTORIC_COMMANDS = (".venv/bin/python run/historic_capture.py", ".venv/bin/python run/historic_materialize.py")
# Integer columns that are codes or years, shown without a thousands separator (2024, not 2.024).
UNGROUPED_COLUMNS = {"ano", "mes"}
MAX_ROW_INDEX = 2**31  # far beyond any table here; keeps OFFSET a plain integer
PERIOD = re.compile(r"(\d{4})-(\d{2})")
FAILED_ROW_STYLE = {
    "styleConditions": [
        {
            "condition": "params.data && params.data.estado_final === 'Failed'",
            "style": {"backgroundColor": "#fde2e1", "color": "#8a1c1c"},
        },
        {
            "condition": "params.data && params.data.estado_execucao === 'Failed'",
            "style": {"backgroundColor": "#fde2e1"},
        },
        {
            "condition": "params.data && params.data.nivel === 'ERROR'",
            "style": {"color": "#b00020", "fontWeight": "bold"},
        },
    ]
}


def table_key(schema: str, table: str) -> str:
    return f"{schema}.{table}"


def split_key(key: str | None) -> tuple[str, str]:
    if key is not None and not isinstance(key, str):
        raise InvalidRequestError("o nome da tabela deve ser um texto")
    schema, _, table = (key or "").partition(".")
    return schema, table


def table_info(key: str) -> str:
    return f"Tabela {key}: paginação, ordenação e filtros no servidor."


def nothing_captured_text(where: str) -> str:
    sample, capture = CAPTURE_COMMANDS
    return (
        f"{NOTHING_CAPTURED_MESSAGE} O banco {where} ainda não tem os dados do pipeline. Para capturar: "
        f"{sample} (dados de exemplo, sem internet) ou {capture} (período mais recente do portal da CGU)."
    )


def nothing_captured(where: str) -> html.Div:
    """The notice for a database the pipeline never wrote to (missing, or without its
    tables): waiting will not help, a capture will."""
    sample, capture = CAPTURE_COMMANDS
    return html.Div(
        [
            html.Strong(f"{NOTHING_CAPTURED_MESSAGE} "),
            f"O banco {where} ainda não tem os dados do pipeline. Para capturar: ",
            html.Code(sample),
            " (dados de exemplo, sem internet) ou ",
            html.Code(capture),
            " (período mais recente do portal da CGU).",
        ],
        className="notice",
        id="nothing-captured",
    )


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
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value != int(value)
        or not 0 <= value <= MAX_ROW_INDEX
    ):
        raise InvalidRequestError(f"{name} deve ser um número inteiro entre 0 e {MAX_ROW_INDEX}")
    return int(value)


def table_options() -> list[dict]:
    return [{"label": label, "value": table_key(schema, table)} for schema, table, label in TABLES]


def number_formatter(column: Column) -> dict | None:
    """Brazilian number format of a numeric column (assets/dashAgGridFunctions.js):
    1.234.567 and 1.234,50; years and months without a thousands separator."""
    if not column.numeric:
        return None
    if column.type in ("numeric", "double precision", "real"):
        return {"function": "numeroBR(params.value, 2, true)"}
    return {"function": f"numeroBR(params.value, 0, {'false' if column.name in UNGROUPED_COLUMNS else 'true'})"}


def column_defs(columns: list[Column]) -> list[dict]:
    """Headers show the column type; the tooltip adds the Portuguese description (dbt docs)."""
    defs = []
    for column in columns:
        definition = {
            "field": column.name,
            "headerName": f"{column.name} ({column.type})",
            "headerTooltip": f"{column.type} — {column.description or 'sem descrição'}",
            "filter": "agNumberColumnFilter" if column.numeric else "agTextColumnFilter",
            "filterParams": {"buttons": ["apply", "reset"], "maxNumConditions": 2},
            "sortable": True,
            "resizable": True,
        }
        if formatter := number_formatter(column):
            definition.update(valueFormatter=formatter, type="rightAligned")
        defs.append(definition)
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


def runs_info(rows: list[dict]) -> str:
    """'1 execução, nenhuma com falha', '5 execuções, 1 com falha'."""
    failed = sum(1 for r in rows if r["estado_final"] == "Failed")
    return f"{plural(len(rows), 'execução', 'execuções')}, {integer(failed) if failed else 'nenhuma'} com falha."


def logs_info(rows: list[dict]) -> str:
    return f"{plural(len(rows), 'registro mais recente', 'registros mais recentes')} (execuções com falha em vermelho)."


def runs_rows(frame: pd.DataFrame) -> list[dict]:
    if frame.empty:
        return []
    rows = []
    for record in frame.to_dict("records"):
        start, end = record["iniciado_em"], record["finalizado_em"]
        rows.append(
            {
                "nome_flow": record["nome_flow"],
                "id_execucao": record["id_execucao"],
                "iniciado_em": start.tz_convert(LOCAL_TIMEZONE).strftime("%d/%m/%Y %H:%M:%S")
                if pd.notna(start)
                else "—",
                "duracao": duration(start, end if pd.notna(end) else None),
                "estado_final": record["estado_final"],
                "linhas_carregadas": integer(record["linhas_carregadas"])
                if pd.notna(record["linhas_carregadas"])
                else "—",
                "linhas_quarentena": integer(record["linhas_quarentena"])
                if pd.notna(record["linhas_quarentena"])
                else "—",
                "tentativas_agendadas": int(record["tentativas_agendadas"]),
                "mensagem": record["mensagem"] or "",
            }
        )
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
        options.append(
            {
                "label": f"{run['nome_flow'].split('__')[-1]} {started} {run['estado_final']}{marker}",
                "value": run["id_execucao"],
            }
        )
    return options


def empty_figure(message: str, height: int = 320) -> go.Figure:
    """A chart without data: the message, and no axes."""
    figure = go.Figure()
    figure.add_annotation(text=message, showarrow=False, font={"size": 16}, xref="paper", yref="paper", x=0.5, y=0.5)
    figure.update_layout(xaxis={"visible": False}, yaxis={"visible": False}, height=height)
    return figure


def axis_from_zero(top: float, minimum_step: float = 1.0, ticks: int = 5) -> dict:
    """A linear axis from 0 with a round tick step of at least ``minimum_step`` (1, 2 or 5
    times a power of ten), so that whole-number labels never repeat: plotly's automatic
    ticks on a short range (one period) are fractions that ",.0f" rounds to the same text."""
    top = max(float(top), 0.0)
    wanted = max(top / ticks, minimum_step)
    power = 10 ** math.floor(math.log10(wanted))
    step = next(f * power for f in (1, 2, 5, 10) if f * power >= wanted)
    return {"range": [0, math.ceil(top * 1.05 / step) * step or step], "tick0": 0, "dtick": step, "tickformat": ",.0f"}


def single_period_note(label: str) -> str:
    capture, materialize = HISTORIC_COMMANDS
    return (
        f"Só um período capturado ({label}). A captura histórica preenche este gráfico com todos "
        f"os períodos publicados:<br>{capture} e depois {materialize}"
    )


def totals_figure(frame: pd.DataFrame) -> go.Figure:
    """Workers (bars) and total monthly cost (line, BRL) per published period."""
    if frame.empty:
        return empty_figure(EMPTY_TABLE_MESSAGE)
    labels = [period_label(a, m) for a, m in zip(frame["ano"], frame["mes"])]
    costs = frame["custo_total"].astype(float).fillna(0)
    single = len(frame) == 1
    figure = go.Figure()
    figure.add_bar(
        x=labels,
        y=frame["terceirizados"],
        name="Terceirizados",
        marker_color="#1f4e79",
        width=0.3 if single else None,
        customdata=[integer(n) for n in frame["terceirizados"]],
        hovertemplate="%{x}: %{customdata} terceirizados<extra></extra>",
    )
    figure.add_scatter(
        x=labels,
        y=costs,
        name="Custo mensal total",
        yaxis="y2",
        mode="lines+markers",
        line={"color": "#c55a11"},
        customdata=[brl(v) for v in frame["custo_total"]],
        hovertemplate="%{x}: %{customdata}<extra></extra>",
    )
    figure.update_layout(
        title="Terceirizados e custo mensal total por período",
        separators=PLOTLY_SEPARATORS,
        height=420,
        yaxis={"title": "terceirizados", **axis_from_zero(frame["terceirizados"].max())},
        yaxis2={
            "title": "custo mensal (R$)",
            "overlaying": "y",
            "side": "right",
            "tickprefix": "R$ ",
            "showgrid": False,
            **axis_from_zero(costs.max()),
        },
        legend={"orientation": "h", "y": -0.2},
    )
    if single:
        figure.add_annotation(
            text=single_period_note(labels[0]),
            showarrow=False,
            xref="paper",
            yref="paper",
            x=0.5,
            y=1.0,
            yanchor="bottom",
            font={"size": 13, "color": "#8a5a00"},
            bgcolor="#fff7e6",
            bordercolor="#f0c36d",
            borderpad=6,
        )
        figure.update_layout(margin={"t": 110})
    return figure


def top_figure(frame: pd.DataFrame, title: str) -> go.Figure:
    if frame.empty:
        return empty_figure(EMPTY_TABLE_MESSAGE)
    frame = frame.iloc[::-1]
    figure = go.Figure(
        go.Bar(
            x=frame["custo_total"].astype(float),
            y=frame["nome"],
            orientation="h",
            marker_color="#1f4e79",
            customdata=[[brl(c), integer(n)] for c, n in zip(frame["custo_total"], frame["terceirizados"])],
            hovertemplate="%{y}<br>%{customdata[0]} · %{customdata[1]} terceirizados<extra></extra>",
            text=[brl(c) for c in frame["custo_total"]],
            textposition="auto",
        )
    )
    axis = axis_from_zero(frame["custo_total"].astype(float).max(), ticks=3)  # a narrow chart: few ticks
    figure.update_layout(
        title=title, separators=PLOTLY_SEPARATORS, height=460, margin={"l": 320}, xaxis={"tickprefix": "R$ ", **axis}
    )
    return figure


def salary_figure(frame: pd.DataFrame) -> go.Figure:
    """Salary distribution by education level from precomputed quartiles (no raw points sent)."""
    if frame.empty:
        return empty_figure(EMPTY_TABLE_MESSAGE)
    figure = go.Figure()
    for row in frame.to_dict("records"):
        figure.add_trace(
            go.Box(
                name=row["nivel"],
                x=[row["nivel"]],
                q1=[float(row["q1"])],
                median=[float(row["mediana"])],
                q3=[float(row["q3"])],
                lowerfence=[float(row["minimo"])],
                upperfence=[float(row["p95"])],
                marker_color="#1f4e79",
                showlegend=False,
                hoverinfo="name+y",
            )
        )
    figure.update_layout(
        title="Salário mensal por nível de escolaridade (mínimo, quartis e percentil 95)",
        separators=PLOTLY_SEPARATORS,
        height=480,
        yaxis={"tickprefix": "R$ ", "tickformat": ",.2f"},
        margin={"b": 160},
    )
    return figure


def period_options(frame: pd.DataFrame) -> list[dict]:
    return [{"label": period_label(a, m), "value": f"{a}-{m:02d}"} for a, m in zip(frame["ano"], frame["mes"])][::-1]
