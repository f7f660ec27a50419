"""The "Análises" page of the results app: an organ's or a company's series of workers and
cost per published period, its contracts and its companies (or, for a company, its organs),
and the largest changes between the last two publications.

It reads only the analysis tables of the schema ``marts`` (built by the historic
materialization), never staging.historic_transformed: every view is a few index lookups.
Every view exports its rows as CSV through ``/analises/exportar.csv``, with the formula
neutralisation of the table export (``pipelines.results.export.csv_stream``).

The app registers it with ``layout`` (the page) and ``register_callbacks(app, repository)``
(its callbacks and the export route)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlencode

import dash_ag_grid as dag
import plotly.graph_objects as go
from dash import Dash, Input, Output, State, ctx, dcc, html, no_update, set_props
from flask import Response, request
from sqlalchemy import text
from sqlalchemy.engine import Engine

from pipelines import constants as c
from pipelines.database import RUN_LOCK_NAMESPACE
from pipelines.results.export import csv_stream
from pipelines.results.formatting import AG_GRID_LOCALE, GRAPH_CONFIG, PLOTLY_SEPARATORS, brl, integer, period_label
from pipelines.results.queries import DATABASE_UNAVAILABLE, InvalidRequestError, is_query_timeout, marts_current
from pipelines.results.views import axis_from_zero

SCHEMA = c.MARTS_SCHEMA
PATH = "/analises"
EXPORT_PATH = "/analises/exportar.csv"
KINDS = {"orgao": "Órgão", "empresa": "Empresa"}
MEASURES = {"terceirizados": "Terceirizados", "custo": "Custo mensal"}
DIRECTIONS = {"aumentos": "Maiores aumentos", "quedas": "Maiores quedas"}
VIEWS = ("serie", "contratos", "parceiros", "aumentos", "quedas")
SHOWN_ROWS = 20  # rows on screen; the CSV export has them all
CHANGES_SHOWN = 10
EXPORT_LIMIT = 1_000_000
OPTIONS_SHOWN = 50
HISTORIC_COMMANDS = (".venv/bin/python run/historic_capture.py", ".venv/bin/python run/historic_materialize.py")
MISSING_MESSAGE = "As tabelas de análise ainda não foram construídas."
UPDATING_MESSAGE = (
    "As tabelas de análise estão sendo atualizadas por uma materialização histórica em andamento; tente de novo em "
    "instantes."
)
STALE_MESSAGE = (
    "As tabelas de análise estão desatualizadas: a última materialização histórica não terminou de atualizá-las "
    "(falhou ou foi interrompida), e umas têm períodos ou versões que outras não têm. Rode de novo "
    f"{HISTORIC_COMMANDS[1]}; o erro dela está na página Execuções."
)
DB_DOWN_MESSAGE = "Banco de dados indisponível."
TIMEOUT_MESSAGE = "A consulta passou do limite de tempo e foi cancelada; tente de novo."
NOTHING_CAPTURED_MESSAGE = "Nada foi capturado ainda."
SQL_ACCENTS = (
    "translate({}, 'ÁÀÂÃÄÉÈÊËÍÌÎÏÓÒÔÕÖÚÙÛÜÇáàâãäéèêëíìîïóòôõöúùûüç', 'AAAAAEEEEIIIIOOOOOUUUUCaaaaaeeeeiiiiooooouuuuc')"
)
TABLES = c.HISTORIC_MARTS


class MartsMissingError(RuntimeError):
    """The analysis tables were not built yet (or are empty)."""


# -- formats ------------------------------------------------------------------------------


def cnpj_label(cnpj: str | None) -> str:
    """19.232.342/0001-65"""
    if not cnpj or not re.fullmatch(r"[0-9A-Z]{12}[0-9]{2}", cnpj):  # digits, or the alphanumeric CNPJ
        return cnpj or "(não informado)"
    return f"{cnpj[:2]}.{cnpj[2:5]}.{cnpj[5:8]}/{cnpj[8:12]}-{cnpj[12:]}"


def organ_label(superior: str | None, acronym: str | None, name: str | None) -> str:
    """'UFJF – UNIVERSIDADE FEDERAL DE JUIZ DE FORA (MEC)'"""
    main = " – ".join(part for part in (acronym, name) if part) or "(órgão não informado)"
    return f"{main} ({superior})" if superior else main


def company_label(name: str | None, cnpj: str | None) -> str:
    return f"{name or '(razão social não informada)'} – CNPJ {cnpj_label(cnpj)}"


def fold(value: str) -> str:
    """Lower case without accents, for searching."""
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()


def option_value(kind: str, key: str) -> str:
    return f"{kind}:{key}"


def parse_option(value) -> tuple[str, str]:
    """'orgao:<chave_orgao>' -> ('orgao', chave)."""
    if not isinstance(value, str):
        raise InvalidRequestError("o órgão ou empresa escolhido deve ser um texto")
    kind, _, key = value.partition(":")
    if kind not in KINDS or not key or len(key) > 2000 or "\x00" in key:
        raise InvalidRequestError("órgão ou empresa inválido")
    return kind, key


def check_choice(value, allowed: dict, what: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise InvalidRequestError(f"{what} deve ser um de: {', '.join(allowed)}")
    return value


def export_href(view: str, **params) -> str:
    return EXPORT_PATH + "?" + urlencode({"visao": view, **params})


# Number formats of the grids: d3-format (bundled with dash-ag-grid) with the Brazilian locale.
_LOCALE = "d3.formatLocale({decimal: ',', thousands: '.', grouping: [3], currency: ['R$ ', ''], minus: '-'})"
INTEGER_FORMAT = {"function": f"params.value == null ? '—' : {_LOCALE}.format(',d')(params.value)"}
MONEY_FORMAT = {"function": f"params.value == null ? '—' : {_LOCALE}.format('$,.2f')(params.value)"}
SIGNED_INTEGER_FORMAT = {
    "function": f"params.value == null ? '—' : (params.value > 0 ? '+' : '') + {_LOCALE}.format(',d')(params.value)"
}
SIGNED_MONEY_FORMAT = {
    "function": f"params.value == null ? '—' : (params.value > 0 ? '+' : '') + {_LOCALE}.format('$,.2f')(params.value)"
}
PERCENT_FORMAT = {
    "function": f"params.value == null ? '—' : (params.value > 0 ? '+' : '') + "
    f"{_LOCALE}.format(',.1f')(params.value) + ' %'"
}
RATIO_FORMAT = {"function": f"params.value == null ? '—' : {_LOCALE}.format(',.2f')(params.value)"}
FORMATS = {
    "int": INTEGER_FORMAT,
    "brl": MONEY_FORMAT,
    "+int": SIGNED_INTEGER_FORMAT,
    "+brl": SIGNED_MONEY_FORMAT,
    "%": PERCENT_FORMAT,
    "ratio": RATIO_FORMAT,
}


def column(field: str, header: str, kind: str | None = None, width: int | None = None, flex: int | None = None) -> dict:
    definition = {
        "field": field,
        "headerName": header,
        "sortable": True,
        "resizable": True,
        "wrapHeaderText": True,
        "autoHeaderHeight": True,
    }
    if kind:
        definition.update(valueFormatter=FORMATS[kind], type="rightAligned")
    if width:
        definition["width"] = width
    if flex:
        definition.update(flex=flex, minWidth=200, tooltipField=field)
    return definition


def _series_columns(partners: str, note: str) -> list[dict]:
    # the same fields for organs and companies (only headers change): the grid keeps its order
    return [
        column("periodo", "Período", width=100),
        column("quantidade_terceirizados", "Terceirizados", "int"),
        column("valor_custo_mensal_total", "Custo mensal total", "brl", width=170),
        column("valor_salario_mensal_total", "Salário mensal total", "brl", width=170),
        column("valor_custo_medio", "Custo médio por terceirizado", "brl", width=150),
        column("razao_custo_salario", "Custo / salário", "ratio", width=110),
        column("parceiros", partners, "int", width=110),
        column("quantidade_contratos", "Contratos", "int", width=110),
        column("observacao", note, flex=1),
    ]


SERIES_COLUMNS = {
    "orgao": _series_columns("Empresas", "Observação"),
    "empresa": _series_columns("Órgãos", "Razão social no período"),
}
CONTRACT_COLUMNS = [
    column("contrato", "Contrato", width=130),
    column("unidade_gestora", "Unidade gestora", flex=1),
    column("empresa", "Empresa", flex=1),
    column("quantidade_terceirizados", "Terceirizados", "int", width=120),
    column("valor_custo_mensal_total", "Custo mensal", "brl", width=150),
    column("desde", "Desde", width=95),
    column("quantidade_periodos", "Períodos", "int", width=100),
]
PARTNER_COLUMNS = {
    kind: [
        column("nome", name, flex=1),
        column("detalhe", detail, width=170),
        column("quantidade_terceirizados", "Terceirizados", "int", width=120),
        column("valor_custo_mensal_total", "Custo mensal", "brl", width=150),
        column("quantidade_contratos", "Contratos", "int", width=100),
    ]
    for kind, name, detail in (("orgao", "Empresa", "CNPJ"), ("empresa", "Órgão", "Órgão superior"))
}
CHANGE_COLUMNS = [
    column("nome", "Nome", flex=1),
    column("situacao", "Situação", width=110),
    column("quantidade_terceirizados_anterior", "Terceirizados antes", "int", width=115),
    column("quantidade_terceirizados", "Terceirizados agora", "int", width=115),
    column("variacao_terceirizados", "Variação", "+int", width=100),
    column("valor_custo_mensal_total_anterior", "Custo antes", "brl", width=150),
    column("valor_custo_mensal_total", "Custo agora", "brl", width=150),
    column("variacao_custo", "Variação do custo", "+brl", width=150),
    column("variacao_percentual", "Variação %", "%", width=100),
]
SITUATIONS = {"permaneceu": "permaneceu", "entrou": "entrou", "saiu": "saiu", "primeiro_periodo": "primeiro período"}


# -- queries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """The newest published period and the previous published one."""

    year: int
    month: int
    previous_year: int | None
    previous_month: int | None
    missing_between: int | None

    @property
    def label(self) -> str:
        return period_label(self.year, self.month)

    @property
    def previous_label(self) -> str | None:
        return period_label(self.previous_year, self.previous_month) if self.previous_year else None


class AnalysesRepository:
    """Read-only queries of the page, on the marts only (each one a few index lookups)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def _rows(self, query: str, **params) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(text(query), params)]

    def problem(self) -> str | None:
        """Why the page cannot show the analysis tables (every one exists, the periods' totals
        have rows, and they were all built from the historic table as it is now), or None."""
        tables = (*TABLES, "periodos_construidos")
        names = ", ".join(f"to_regclass('{SCHEMA}.{table}') is not null" for table in tables)
        with self.engine.connect() as conn:
            if not all(conn.execute(text(f"select {names}")).one()):
                return MISSING_MESSAGE
            if not conn.execute(text(f"select exists (select 1 from {SCHEMA}.totais_por_periodo)")).scalar_one():
                return MISSING_MESSAGE
        if marts_current(self.engine, tuple(TABLES)):
            return None
        return UPDATING_MESSAGE if self._historic_build_running() else STALE_MESSAGE

    def _historic_build_running(self) -> bool:
        """Whether a historic materialization is running now (the marts are then rebuilt one by
        one, each in its own transaction: for a few seconds some have the new data): a run
        recorded Running whose lease (pipelines/runs.py: a session advisory lock on the run's
        id) a live session holds. A run killed before anything marked it Interrompida has no
        lease: its half-built marts are stale, not being updated."""
        runs = f"{c.LOGS_SCHEMA}.{c.RUNS_TABLE}"
        with self.engine.connect() as conn:
            if not conn.execute(text(f"select to_regclass('{runs}') is not null")).scalar_one():
                return False
            return conn.execute(
                text(f"""
                    select exists (
                        select 1 from {runs} as r
                        join pg_locks as l
                          on l.locktype = 'advisory' and l.granted and l.objsubid = 2
                         and l.database = (select oid from pg_database where datname = current_database())
                         and l.classid::bigint = :namespace
                         and l.objid::bigint = (hashtext(r.id_execucao)::bigint & 4294967295)
                        where r.nome_flow = :flow and r.estado_final = 'Running'
                    )"""),
                {"flow": c.HISTORIC_MATERIALIZE_FLOW, "namespace": RUN_LOCK_NAMESPACE},
            ).scalar_one()

    def ready(self) -> bool:
        return self.problem() is None

    def require(self) -> None:
        problem = self.problem()
        if problem is not None:
            raise MartsMissingError(problem)

    def published_periods(self) -> list[tuple[int, int]]:
        return [
            (r["ano"], r["mes"])
            for r in self._rows(f"select ano, mes from {SCHEMA}.totais_por_periodo order by ano, mes")
        ]

    def comparison(self) -> Comparison | None:
        """The newest published period, the previous published one and the calendar periods
        missing from the portal between them (marts.variacao_entre_periodos's rule)."""
        rows = self._rows(f"""
            select ano, mes, lag(ano) over w as ano_anterior, lag(mes) over w as mes_anterior,
                   (ano * 3 + (mes - 1) / 4) - lag(ano * 3 + (mes - 1) / 4) over w - 1 as ausentes
            from {SCHEMA}.totais_por_periodo window w as (order by ano, mes)
            order by ano desc, mes desc limit 1""")
        if not rows:
            return None
        row = rows[0]
        return Comparison(row["ano"], row["mes"], row["ano_anterior"], row["mes_anterior"], row["ausentes"])

    # entities ---------------------------------------------------------------------------
    def entity_options(
        self, kind: str, search: str | None = None, include: str | None = None, limit: int = OPTIONS_SHOWN
    ) -> list[dict]:
        """Dropdown options of organs or companies: those of the newest periods first, the
        largest cost first (the unnamed ones last); ``search`` filters by name (accents and case ignored) or CNPJ
        (its digits, or an alphanumeric CNPJ with or without punctuation); ``include`` (a key) is always there."""
        check_choice(kind, KINDS, "o tipo")
        if kind == "orgao":
            latest = f"""select distinct on (chave_orgao) chave_orgao as chave, sigla_orgao_superior_unidade_gestora,
                                sigla_orgao, nome_orgao, null::text as razao_social_empresa, null::text as cnpj_empresa,
                                ano, mes, valor_custo_mensal_total
                         from {SCHEMA}.orgaos_por_periodo order by chave_orgao, ano desc, mes desc"""
            searchable = "concat_ws(' ', sigla_orgao_superior_unidade_gestora, sigla_orgao, nome_orgao)"
            unnamed = "sigla_orgao is null and nome_orgao is null"
        else:
            latest = f"""select distinct on (chave_empresa) chave_empresa as chave,
                                null::text as sigla_orgao_superior_unidade_gestora, null::text as sigla_orgao,
                                null::text as nome_orgao, razao_social_empresa, cnpj_empresa, ano, mes,
                                valor_custo_mensal_total
                         from {SCHEMA}.empresas_por_periodo order by chave_empresa, ano desc, mes desc"""
            searchable = "concat_ws(' ', razao_social_empresa, cnpj_empresa)"
            unnamed = "cnpj_empresa is null"
        pattern = None
        if search and search.strip():
            words = fold(search.strip())
            pattern = "%" + words.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            digits = re.sub(r"\D", "", search)
            pattern_digits = f"%{digits}%" if kind == "empresa" and len(digits) >= 3 else None
            # an alphanumeric CNPJ typed with its punctuation or in lower case: 12.abc.345/01de-35
            compact = re.sub(r"[./\s-]", "", search).upper()
            alphanumeric = re.fullmatch(r"(?=.*[0-9])(?=.*[A-Z])[0-9A-Z]{3,14}", compact)
            pattern_cnpj = f"%{compact}%" if kind == "empresa" and alphanumeric else None
        else:
            pattern_digits = pattern_cnpj = None
        rows = self._rows(
            f"""
            with ultimo as ({latest})
            select * from ultimo
            where (cast(:padrao as text) is null or lower({SQL_ACCENTS.format(searchable)}) like :padrao
                   or (cast(:digitos as text) is not null and cnpj_empresa like :digitos)
                   or (cast(:cnpj as text) is not null and cnpj_empresa like :cnpj))
               or chave = :incluir
            order by (cast(:cnpj as text) is not null and cnpj_empresa like :cnpj) desc,
                     ano desc, mes desc, {unnamed}, valor_custo_mensal_total desc, chave
            limit :limite""",
            padrao=pattern,
            digitos=pattern_digits,
            cnpj=pattern_cnpj,
            incluir=include,
            limite=limit,
        )

        # "search": what the dropdown matches the typed text against in the browser (the CNPJ's digits
        # too; and the text typed, when it found the CNPJ written otherwise: 12ABC.345/01DE-35)
        def searched(row: dict) -> str:
            found = pattern_cnpj and row["cnpj_empresa"] and compact in row["cnpj_empresa"]
            return " ".join(filter(None, (self.label(kind, row), row["cnpj_empresa"], search if found else None)))

        return [
            {"label": self.label(kind, row), "value": option_value(kind, row["chave"]), "search": searched(row)}
            for row in rows
        ]

    @staticmethod
    def label(kind: str, row: dict) -> str:
        if kind == "orgao":
            return organ_label(row["sigla_orgao_superior_unidade_gestora"], row["sigla_orgao"], row["nome_orgao"])
        return company_label(row["razao_social_empresa"], row["cnpj_empresa"])

    # views --------------------------------------------------------------------------------
    def series(self, kind: str, key: str) -> list[dict]:
        """One row per published period (0 where the organ or company does not appear)."""
        check_choice(kind, KINDS, "o tipo")
        if kind == "orgao":
            columns = (
                "e.sigla_orgao_superior_unidade_gestora, e.sigla_orgao, e.nome_orgao, "
                "e.valor_custo_medio, e.razao_custo_salario, coalesce(e.quantidade_empresas, 0) "
                "as quantidade_empresas, coalesce(e.quantidade_contratos, 0) as quantidade_contratos"
            )
            join = f"{SCHEMA}.orgaos_por_periodo as e on e.ano = t.ano and e.mes = t.mes and e.chave_orgao = :chave"
        else:
            columns = (
                "e.razao_social_empresa, e.cnpj_empresa, e.valor_custo_medio, "
                "coalesce(e.quantidade_orgaos, 0) as quantidade_orgaos, "
                "coalesce(e.quantidade_contratos, 0) as quantidade_contratos"
            )
            join = f"{SCHEMA}.empresas_por_periodo as e on e.ano = t.ano and e.mes = t.mes and e.chave_empresa = :chave"
        return self._rows(
            f"""
            select t.ano, t.mes, e.ano is not null as presente,
                   coalesce(e.quantidade_terceirizados, 0) as quantidade_terceirizados,
                   coalesce(e.valor_custo_mensal_total, 0) as valor_custo_mensal_total,
                   coalesce(e.valor_salario_mensal_total, 0) as valor_salario_mensal_total, {columns}
            from {SCHEMA}.totais_por_periodo as t
            left join {join}
            order by t.ano, t.mes""",
            chave=key,
        )

    def contracts(self, kind: str, key: str, year: int, month: int, limit: int = SHOWN_ROWS) -> list[dict]:
        """The contracts of an organ or a company in a period, the largest cost first."""
        check_choice(kind, KINDS, "o tipo")
        where = "c.chave_orgao = :chave" if kind == "orgao" else "c.chave_empresa = :chave"
        return self._rows(
            f"""
            with doperiodo as (
                select c.chave_contrato, min(c.chave_empresa) as chave_empresa,
                       min(c.id_unidade_gestora) as id_unidade_gestora,
                       min(c.sigla_unidade_gestora) as sigla_unidade_gestora,
                       min(c.nome_unidade_gestora) as nome_unidade_gestora, min(c.id_contrato) as id_contrato,
                       min(c.cnpj_empresa) as cnpj_empresa, sum(c.quantidade_terceirizados) as quantidade_terceirizados,
                       sum(c.valor_custo_mensal_total) as valor_custo_mensal_total
                from {SCHEMA}.contratos_por_periodo as c
                where c.ano = :ano and c.mes = :mes and {where}
                group by c.chave_contrato
            ),
            primeiros as (  -- the names and the contracts' history only for the rows shown
                select d.*, count(*) over () as total
                from doperiodo as d
                order by d.valor_custo_mensal_total desc, d.chave_contrato
                limit :limite
            )
            select p.*, e.razao_social_empresa, k.primeiro_periodo, k.ultimo_periodo, k.quantidade_periodos
            from primeiros as p
            left join {SCHEMA}.empresas_por_periodo as e
                on e.ano = :ano and e.mes = :mes and e.chave_empresa = p.chave_empresa
            left join {SCHEMA}.contratos as k on k.chave_contrato = p.chave_contrato
            order by p.valor_custo_mensal_total desc, p.chave_contrato""",
            chave=key,
            ano=year,
            mes=month,
            limite=limit,
        )

    def partners(self, kind: str, key: str, year: int, month: int, limit: int = SHOWN_ROWS) -> list[dict]:
        """An organ's companies, or a company's organs, in a period, the largest cost first."""
        check_choice(kind, KINDS, "o tipo")
        if kind == "orgao":
            query = f"""
                with doperiodo as (
                    select chave_empresa, sum(quantidade_terceirizados) as quantidade_terceirizados,
                           sum(valor_custo_mensal_total) as valor_custo_mensal_total,
                           count(distinct chave_contrato) as quantidade_contratos
                    from {SCHEMA}.contratos_por_periodo
                    where ano = :ano and mes = :mes and chave_orgao = :chave
                    group by chave_empresa
                )
                select d.*, e.razao_social_empresa, e.cnpj_empresa, count(*) over () as total
                from doperiodo as d
                left join {SCHEMA}.empresas_por_periodo as e
                    on e.ano = :ano and e.mes = :mes and e.chave_empresa = d.chave_empresa
                order by d.valor_custo_mensal_total desc, d.chave_empresa
                limit :limite"""
        else:
            query = f"""
                select chave_orgao, min(sigla_orgao_superior_unidade_gestora) as sigla_orgao_superior_unidade_gestora,
                       min(sigla_orgao) as sigla_orgao, min(nome_orgao) as nome_orgao,
                       sum(quantidade_terceirizados) as quantidade_terceirizados,
                       sum(valor_custo_mensal_total) as valor_custo_mensal_total,
                       count(distinct chave_contrato) as quantidade_contratos, count(*) over () as total
                from {SCHEMA}.contratos_por_periodo
                where ano = :ano and mes = :mes and chave_empresa = :chave
                group by chave_orgao
                order by valor_custo_mensal_total desc, chave_orgao
                limit :limite"""
        return self._rows(query, chave=key, ano=year, mes=month, limite=limit)

    def changes(
        self, kind: str, measure: str, direction: str, comparison: Comparison, limit: int = CHANGES_SHOWN
    ) -> list[dict]:
        """The organs or companies whose workers or cost grew (or fell) the most from the
        previous published period to the newest."""
        check_choice(kind, KINDS, "o tipo")
        check_choice(measure, MEASURES, "a medida")
        check_choice(direction, DIRECTIONS, "a direção")
        change = "variacao_terceirizados" if measure == "terceirizados" else "variacao_custo"
        percent_column = change + "_percentual"
        sign, order = (">", "desc") if direction == "aumentos" else ("<", "asc")
        return self._rows(
            f"""
            select tipo, chave, nome, detalhe, ano, mes, ano_anterior, mes_anterior, periodos_ausentes_entre, situacao,
                   quantidade_terceirizados_anterior, quantidade_terceirizados, variacao_terceirizados,
                   valor_custo_mensal_total_anterior, valor_custo_mensal_total, variacao_custo,
                   {percent_column} as variacao_percentual
            from {SCHEMA}.variacao_entre_periodos
            where ano = :ano and mes = :mes and tipo = :tipo and {change} {sign} 0
            order by {change} {order}, chave
            limit :limite""",
            ano=comparison.year,
            mes=comparison.month,
            tipo=kind,
            limite=limit,
        )


# -- views (pure) ----------------------------------------------------------------------------


def latest_present(series: list[dict]) -> dict | None:
    present = [row for row in series if row["presente"]]
    return present[-1] if present else None


def series_rows(kind: str, series: list[dict]) -> list[dict]:
    rows = []
    for row in series:
        cost, salary = row["valor_custo_mensal_total"], row["valor_salario_mensal_total"]
        if kind == "orgao":
            ratio, partners = row["razao_custo_salario"], row["quantidade_empresas"]
            note = "" if row["presente"] else "não aparece neste período publicado"
        else:  # the organs' rule (marts.orgaos_por_periodo.razao_custo_salario), from the company's totals
            ratio = round(cost / salary, 4) if salary else None
            partners = row["quantidade_orgaos"]
            note = (
                (row["razao_social_empresa"] or "(não informada)")
                if row["presente"]
                else "não aparece neste período publicado"
            )
        rows.append(
            {
                "periodo": period_label(row["ano"], row["mes"]),
                "ano": row["ano"],
                "mes": row["mes"],
                "quantidade_terceirizados": row["quantidade_terceirizados"],
                "valor_custo_mensal_total": _number(cost),
                "valor_salario_mensal_total": _number(salary),
                "valor_custo_medio": _number(row["valor_custo_medio"]),
                "razao_custo_salario": _number(ratio),
                "parceiros": partners,
                "quantidade_contratos": row["quantidade_contratos"],
                "observacao": note,
            }
        )
    return rows


def contract_rows(rows: list[dict]) -> list[dict]:
    return [
        {
            "contrato": row["id_contrato"] or "(sem número)",
            "unidade_gestora": " – ".join(p for p in (row["id_unidade_gestora"], row["sigla_unidade_gestora"]) if p),
            "empresa": row["razao_social_empresa"] or cnpj_label(row["cnpj_empresa"]),
            "quantidade_terceirizados": _number(row["quantidade_terceirizados"]),
            "valor_custo_mensal_total": _number(row["valor_custo_mensal_total"]),
            "desde": row["primeiro_periodo"].strftime("%m/%Y") if row["primeiro_periodo"] else "—",
            "quantidade_periodos": _number(row["quantidade_periodos"]),
        }
        for row in rows
    ]


def partner_rows(kind: str, rows: list[dict]) -> list[dict]:
    shown = []
    for row in rows:
        if kind == "orgao":
            names = {
                "nome": row["razao_social_empresa"] or "(razão social não informada)",
                "detalhe": cnpj_label(row["cnpj_empresa"]),
            }
        else:
            names = {
                "nome": organ_label(None, row["sigla_orgao"], row["nome_orgao"]),
                "detalhe": row["sigla_orgao_superior_unidade_gestora"] or "—",
            }
        shown.append(
            {
                **names,
                "quantidade_terceirizados": _number(row["quantidade_terceirizados"]),
                "valor_custo_mensal_total": _number(row["valor_custo_mensal_total"]),
                "quantidade_contratos": _number(row["quantidade_contratos"]),
            }
        )
    return shown


def change_rows(rows: list[dict]) -> list[dict]:
    shown = []
    for row in rows:
        name = row["nome"]
        if row["tipo"] == "orgao" and row["detalhe"]:
            name = f"{name} ({row['detalhe']})"
        elif row["tipo"] == "empresa":
            name = f"{name} – CNPJ {cnpj_label(row['detalhe'])}"
        shown.append(
            {
                **{key: _number(value) for key, value in row.items()},
                "nome": name,
                "situacao": SITUATIONS.get(row["situacao"], row["situacao"]),
            }
        )
    return shown


def _number(value):
    """Decimals as floats for the browser (AG Grid formats them); the rest as is."""
    return float(value) if value.__class__.__name__ == "Decimal" else value


def series_figure(kind: str, series: list[dict], name: str) -> go.Figure:
    """Workers (bars) and monthly cost (line, BRL) per published period."""
    labels = [period_label(row["ano"], row["mes"]) for row in series]
    workers = [int(row["quantidade_terceirizados"]) for row in series]
    costs = [float(row["valor_custo_mensal_total"]) for row in series]
    figure = go.Figure()
    figure.add_bar(
        x=labels,
        y=workers,
        name="Terceirizados",
        marker_color="#1f4e79",
        customdata=[integer(n) for n in workers],
        hovertemplate="%{x}: %{customdata} terceirizados<extra></extra>",
    )
    figure.add_scatter(
        x=labels,
        y=costs,
        name="Custo mensal total",
        yaxis="y2",
        mode="lines+markers",
        line={"color": "#c55a11"},
        customdata=[brl(v) for v in costs],
        hovertemplate="%{x}: %{customdata}<extra></extra>",
    )
    figure.update_layout(
        title=f"{name}: terceirizados e custo mensal por período publicado",
        separators=PLOTLY_SEPARATORS,
        height=380,
        margin={"t": 60, "b": 40},
        xaxis={"type": "category", "title": "período publicado"},
        yaxis={"title": "terceirizados", **axis_from_zero(max(workers, default=0))},
        yaxis2={
            "title": "custo mensal (R$)",
            "overlaying": "y",
            "side": "right",
            "tickprefix": "R$ ",
            "showgrid": False,
            **axis_from_zero(max(costs, default=0)),
        },
        legend={"orientation": "h", "y": -0.25},
    )
    return figure


def empty_figure(message: str) -> go.Figure:
    figure = go.Figure()
    figure.add_annotation(text=message, showarrow=False, font={"size": 15}, xref="paper", yref="paper", x=0.5, y=0.5)
    figure.update_layout(xaxis={"visible": False}, yaxis={"visible": False}, height=200)
    return figure


def summary_text(kind: str, name: str, latest: dict | None) -> list:
    if latest is None:
        return [html.Strong(name), " não aparece em nenhum período publicado."]
    period = period_label(latest["ano"], latest["mes"])
    parts = [
        html.Strong(name),
        f" · último período publicado em que aparece: {period}",
        f" · {integer(latest['quantidade_terceirizados'])} terceirizados",
        f" · custo mensal {brl(latest['valor_custo_mensal_total'])}",
    ]
    if latest.get("valor_custo_medio") is not None:
        parts.append(f" · custo médio por terceirizado {brl(latest['valor_custo_medio'])}")
    if kind == "orgao" and latest.get("razao_custo_salario") is not None:
        ratio = f"{float(latest['razao_custo_salario']):.2f}".replace(".", ",")
        parts.append(f" · custo/salário {ratio}")
    return parts


def missing_periods(periods: list[tuple[int, int]]) -> list[str]:
    """Periods of the four-month calendar (January, May, September) between the first and the
    newest published period that the portal did not publish."""
    if not periods:
        return []
    published = set(periods)
    (first_year, first_month), (last_year, last_month) = periods[0], periods[-1]
    missing = []
    for year in range(first_year, last_year + 1):
        for month in (1, 5, 9):
            if (first_year, first_month) < (year, month) < (last_year, last_month) and (year, month) not in published:
                missing.append(period_label(year, month))
    return missing


def source_text(periods: list[tuple[int, int]]) -> str:
    missing = missing_periods(periods)
    first, last = period_label(*periods[0]), period_label(*periods[-1])
    text_value = (
        f"Fonte: tabelas de análise (schema {SCHEMA}), construídas pela materialização histórica. "
        f"{integer(len(periods))} {'período publicado' if len(periods) == 1 else 'períodos publicados'}, "
        f"de {first} a {last}."
    )
    if missing:
        text_value += (
            f" {integer(len(missing))} {'período' if len(missing) == 1 else 'períodos'} do calendário "
            f"(janeiro, maio e setembro) não {'está' if len(missing) == 1 else 'estão'} no portal "
            f"({', '.join(missing)}): as comparações pulam para o período publicado anterior."
        )
    return text_value


def comparison_text(comparison: Comparison | None) -> str:
    if comparison is None or comparison.previous_year is None:
        return "Só um período publicado: ainda não há variação entre publicações."
    text_value = f"De {comparison.previous_label} (publicação anterior) para {comparison.label} (a mais recente)"
    if comparison.missing_between:
        missing = comparison.missing_between
        text_value += (
            f"; {integer(missing)} "
            f"{'período do calendário não está' if missing == 1 else 'períodos do calendário não estão'}"
            " no portal entre as duas"
        )
    return text_value + ". Órgãos e empresas ausentes de uma das duas publicações contam 0 nela."


def missing_notice(message: str = MISSING_MESSAGE) -> html.Div:
    capture, materialize = HISTORIC_COMMANDS
    return html.Div(
        [
            html.P(html.Strong(message)),
            html.P(
                "Elas são construídas pela materialização histórica, a partir de todos os períodos capturados. "
                "Para preenchê-las, rode:"
            ),
            html.Pre(f"{capture}\n{materialize}"),
        ],
        className="empty",
        id="analises-vazio",
    )


# -- layout ---------------------------------------------------------------------------------


def _grid(grid_id: str, columns: list[dict]) -> dag.AgGrid:
    return dag.AgGrid(
        id=grid_id,
        columnDefs=columns,
        rowData=[],
        className="ag-theme-alpine analises-grade",
        dashGridOptions={
            "localeText": AG_GRID_LOCALE,
            "domLayout": "autoHeight",
            "tooltipShowDelay": 0,
            "suppressCellFocus": True,
        },
        style={"width": "100%"},
    )


def _export(link_id: str) -> html.A:
    return html.A("Exportar CSV", id=link_id, href=EXPORT_PATH, className="button export-link")


def layout() -> html.Div:
    """The page."""
    return html.Div(
        [
            html.H2("Análises"),
            html.Div(id="analises-info", className="info"),
            html.Div(
                id="analises-conteudo",
                children=[
                    html.Section(
                        id="analises-entidade-secao",
                        children=[
                            html.H3("Órgão ou empresa"),
                            html.Div(
                                [
                                    dcc.RadioItems(
                                        id="analises-tipo",
                                        options=[{"label": label, "value": value} for value, label in KINDS.items()],
                                        value="orgao",
                                        inline=True,
                                        inputStyle={"marginRight": "4px"},
                                        labelStyle={"marginRight": "16px"},
                                    ),
                                    dcc.Dropdown(
                                        id="analises-entidade",
                                        searchable=True,
                                        clearable=False,
                                        placeholder="Digite para buscar pelo nome, sigla ou CNPJ",
                                        style={"minWidth": "640px"},
                                    ),
                                ],
                                className="toolbar",
                            ),
                            html.Div(id="analises-resumo", className="info"),
                            dcc.Graph(id="analises-grafico", config=GRAPH_CONFIG),
                            html.Div(
                                [html.H4("Série por período publicado"), _export("analises-serie-exportar")],
                                className="toolbar",
                            ),
                            _grid("analises-serie", SERIES_COLUMNS["orgao"]),
                            html.Div(
                                [html.H4(id="analises-contratos-titulo"), _export("analises-contratos-exportar")],
                                className="toolbar",
                            ),
                            _grid("analises-contratos", CONTRACT_COLUMNS),
                            html.Div(
                                [html.H4(id="analises-parceiros-titulo"), _export("analises-parceiros-exportar")],
                                className="toolbar",
                            ),
                            _grid("analises-parceiros", PARTNER_COLUMNS["orgao"]),
                        ],
                    ),
                    html.Section(
                        id="analises-variacoes-secao",
                        children=[
                            html.H3("Maiores variações entre as duas últimas publicações"),
                            html.Div(id="analises-variacoes-info", className="info"),
                            html.Div(
                                [
                                    dcc.RadioItems(
                                        id="analises-variacoes-tipo",
                                        options=[
                                            {"label": "Órgãos", "value": "orgao"},
                                            {"label": "Empresas", "value": "empresa"},
                                        ],
                                        value="orgao",
                                        inline=True,
                                        labelStyle={"marginRight": "16px"},
                                    ),
                                    dcc.RadioItems(
                                        id="analises-variacoes-medida",
                                        options=[{"label": label, "value": value} for value, label in MEASURES.items()],
                                        value="terceirizados",
                                        inline=True,
                                        labelStyle={"marginRight": "16px"},
                                    ),
                                ],
                                className="toolbar",
                            ),
                            html.Div(
                                [
                                    html.Div(
                                        [
                                            html.Div(
                                                [
                                                    html.H4(DIRECTIONS["aumentos"]),
                                                    _export("analises-aumentos-exportar"),
                                                ],
                                                className="toolbar",
                                            ),
                                            _grid("analises-aumentos", CHANGE_COLUMNS),
                                        ]
                                    ),
                                    html.Div(
                                        [
                                            html.Div(
                                                [html.H4(DIRECTIONS["quedas"]), _export("analises-quedas-exportar")],
                                                className="toolbar",
                                            ),
                                            _grid("analises-quedas", CHANGE_COLUMNS),
                                        ]
                                    ),
                                ]
                            ),
                        ],
                    ),
                ],
            ),
        ]
    )


# -- callbacks and export -----------------------------------------------------------------

MISSING_DATABASE = re.compile(r'database "[^"]+" (does not exist|não existe)')


def _problem_text(error: Exception) -> str:
    if isinstance(error, MartsMissingError):
        return str(error)
    if isinstance(error, InvalidRequestError):
        return f"Pedido inválido: {error}."
    if is_query_timeout(error):
        return TIMEOUT_MESSAGE
    if MISSING_DATABASE.search(str(getattr(error, "orig", None) or error)):
        return NOTHING_CAPTURED_MESSAGE  # the database itself was never created: a capture creates it
    return DB_DOWN_MESSAGE


def _as_repository(repository_or_engine) -> AnalysesRepository:
    if isinstance(repository_or_engine, AnalysesRepository):
        return repository_or_engine
    engine = getattr(repository_or_engine, "engine", repository_or_engine)
    if not isinstance(engine, Engine):
        raise TypeError("register_callbacks espera um ResultsRepository, um AnalysesRepository ou um Engine")
    return AnalysesRepository(engine)


def register_callbacks(app: Dash, repository_or_engine) -> AnalysesRepository:
    """The page's callbacks and the CSV export route (``/analises/exportar.csv``), on ``app``
    (its ``suppress_callback_exceptions`` must be on when the page is not in the first layout,
    as in the results app). Returns the page's repository."""
    repo = _as_repository(repository_or_engine)
    failures = DATABASE_UNAVAILABLE + (MartsMissingError,)

    def show_problem(error: Exception) -> None:
        if isinstance(error, MartsMissingError):
            set_props("analises-info", {"children": missing_notice(str(error))})
            set_props("analises-conteudo", {"style": {"display": "none"}})
        else:
            set_props("analises-info", {"children": html.Div(_problem_text(error), className="error")})

    @app.callback(
        Output("analises-entidade", "options"),
        Output("analises-entidade", "value"),
        Output("analises-info", "children"),
        Output("analises-conteudo", "style"),
        Input("analises-tipo", "value"),
        Input("analises-entidade", "search_value"),
        State("analises-entidade", "value"),
    )
    def entity_options(kind, search, value):
        try:
            kind = check_choice(kind, KINDS, "o tipo")
            if search is not None and not isinstance(search, str):
                raise InvalidRequestError("a busca deve ser um texto")
            repo.require()
            periods = repo.published_periods()
            if ctx.triggered_id == "analises-entidade":  # typing in the search box
                current = value if isinstance(value, str) and value.startswith(kind + ":") else None
                include = parse_option(current)[1] if current else None
                # the source and the content too: this call may be the page's first (the dropdown
                # can report its empty search before the type's initial call runs)
                return repo.entity_options(kind, search, include), no_update, source_text(periods), {}
            options = repo.entity_options(kind)
            chosen = options[0]["value"] if options else None
            return options, chosen, source_text(periods), {}
        except InvalidRequestError as error:
            return no_update, no_update, html.Div(_problem_text(error), className="error"), no_update
        except failures as error:
            if isinstance(error, MartsMissingError):
                return [], None, missing_notice(str(error)), {"display": "none"}
            return [], None, html.Div(_problem_text(error), className="error"), no_update

    @app.callback(
        Output("analises-resumo", "children"),
        Output("analises-grafico", "figure"),
        Output("analises-serie", "columnDefs"),
        Output("analises-serie", "rowData"),
        Output("analises-serie-exportar", "href"),
        Output("analises-contratos-titulo", "children"),
        Output("analises-contratos", "rowData"),
        Output("analises-contratos-exportar", "href"),
        Output("analises-parceiros-titulo", "children"),
        Output("analises-parceiros", "columnDefs"),
        Output("analises-parceiros", "rowData"),
        Output("analises-parceiros-exportar", "href"),
        Input("analises-entidade", "value"),
        prevent_initial_call=True,
    )
    def show_entity(value):
        if not value:
            return (
                None,
                empty_figure("Escolha um órgão ou uma empresa."),
                no_update,
                [],
                EXPORT_PATH,
                "Contratos",
                [],
                EXPORT_PATH,
                "",
                no_update,
                [],
                EXPORT_PATH,
            )
        try:
            kind, key = parse_option(value)
            repo.require()  # the page may have been open while a marts build failed
            series = repo.series(kind, key)
            latest = latest_present(series)
            name = _entity_name(kind, latest, key, repo)
            contracts, partners = [], []
            if latest is not None:
                contracts = repo.contracts(kind, key, latest["ano"], latest["mes"])
                partners = repo.partners(kind, key, latest["ano"], latest["mes"])
        except (InvalidRequestError, *failures) as error:
            show_problem(error)
            return (no_update,) * 12
        period = period_label(latest["ano"], latest["mes"]) if latest else "—"
        contracts_total = contracts[0]["total"] if contracts else 0
        partners_total = partners[0]["total"] if partners else 0
        partner_word = ("Empresas", "empresa", "empresas") if kind == "orgao" else ("Órgãos", "órgão", "órgãos")
        params = {"tipo": kind, "chave": key}
        return (
            summary_text(kind, name, latest),
            series_figure(kind, series, name),
            SERIES_COLUMNS[kind],
            series_rows(kind, series),
            export_href("serie", **params),
            _ranked_title("Contratos", "contrato", "contratos", period, len(contracts), contracts_total),
            contract_rows(contracts),
            export_href("contratos", **params),
            _ranked_title(partner_word[0], partner_word[1], partner_word[2], period, len(partners), partners_total),
            PARTNER_COLUMNS[kind],
            partner_rows(kind, partners),
            export_href("parceiros", **params),
        )

    @app.callback(
        Output("analises-variacoes-info", "children"),
        Output("analises-aumentos", "rowData"),
        Output("analises-aumentos-exportar", "href"),
        Output("analises-quedas", "rowData"),
        Output("analises-quedas-exportar", "href"),
        Input("analises-variacoes-tipo", "value"),
        Input("analises-variacoes-medida", "value"),
    )
    def show_changes(kind, measure):
        try:
            kind = check_choice(kind, KINDS, "o tipo")
            measure = check_choice(measure, MEASURES, "a medida")
            repo.require()
            comparison = repo.comparison()
            if comparison is None or comparison.previous_year is None:
                return comparison_text(comparison), [], EXPORT_PATH, [], EXPORT_PATH
            grew = repo.changes(kind, measure, "aumentos", comparison)
            fell = repo.changes(kind, measure, "quedas", comparison)
        except InvalidRequestError as error:
            return html.Div(_problem_text(error), className="error"), [], no_update, [], no_update
        except failures as error:
            return _problem_text(error), [], no_update, [], no_update
        params = {"tipo": kind, "medida": measure}
        return (
            comparison_text(comparison),
            change_rows(grew),
            export_href("aumentos", **params),
            change_rows(fell),
            export_href("quedas", **params),
        )

    @app.server.route(EXPORT_PATH, endpoint="analises_exportar")
    def export():
        """The rows of one view of the page as CSV (text cells made formula-safe)."""
        try:
            view, header, rows = export_rows(repo, request.args)
        except InvalidRequestError as error:
            return _plain(f"Exportação inválida: {error}.", 400)
        except MartsMissingError as error:
            capture, materialize = HISTORIC_COMMANDS
            if str(error) != MISSING_MESSAGE:
                return _plain(str(error), 503)
            return _plain(f"{MISSING_MESSAGE} Rode {capture} e depois {materialize}.", 404)
        except DATABASE_UNAVAILABLE as error:
            return _plain(
                f"{_problem_text(error)} Tente a exportação de novo em instantes.", 503, **{"Retry-After": "5"}
            )
        return Response(
            csv_stream(header, rows),
            mimetype="text/csv; charset=utf-8",
            headers={"Content-Disposition": f"attachment; filename=analises_{view}.csv"},
        )

    return repo


def _plain(message: str, status: int, **headers) -> Response:
    return Response(message + "\n", status=status, mimetype="text/plain", headers=headers)


def _ranked_title(title: str, singular: str, plural_form: str, period: str, shown: int, total: int) -> str:
    if not total:
        return f"{title} em {period}: nenhum"
    if shown < total:
        return f"{title} em {period}: os {integer(shown)} de maior custo, de {integer(total)} (o CSV traz todos)"
    return f"{title} em {period}: {integer(total)} {singular if total == 1 else plural_form}"


def _entity_name(kind: str, latest: dict | None, key: str, repo: AnalysesRepository) -> str:
    if latest is not None:
        return AnalysesRepository.label(kind, latest)
    for option in repo.entity_options(kind, include=key, limit=1_000_000):
        if option["value"] == option_value(kind, key):
            return option["label"]
    return key


# Columns of each CSV export: (header, source key); values raw (numbers stay numbers).
SERIES_EXPORT = {
    "orgao": [
        "ano",
        "mes",
        "sigla_orgao_superior_unidade_gestora",
        "sigla_orgao",
        "nome_orgao",
        "presente",
        "quantidade_terceirizados",
        "valor_custo_mensal_total",
        "valor_salario_mensal_total",
        "valor_custo_medio",
        "razao_custo_salario",
        "quantidade_empresas",
        "quantidade_contratos",
    ],
    "empresa": [
        "ano",
        "mes",
        "cnpj_empresa",
        "razao_social_empresa",
        "presente",
        "quantidade_terceirizados",
        "valor_custo_mensal_total",
        "valor_salario_mensal_total",
        "valor_custo_medio",
        "quantidade_orgaos",
        "quantidade_contratos",
    ],
}
CONTRACTS_EXPORT = [
    "ano",
    "mes",
    "chave_contrato",
    "id_unidade_gestora",
    "sigla_unidade_gestora",
    "nome_unidade_gestora",
    "id_contrato",
    "cnpj_empresa",
    "razao_social_empresa",
    "quantidade_terceirizados",
    "valor_custo_mensal_total",
    "primeiro_periodo",
    "ultimo_periodo",
    "quantidade_periodos",
]
PARTNERS_EXPORT = {
    "orgao": [
        "ano",
        "mes",
        "cnpj_empresa",
        "razao_social_empresa",
        "quantidade_terceirizados",
        "valor_custo_mensal_total",
        "quantidade_contratos",
    ],
    "empresa": [
        "ano",
        "mes",
        "chave_orgao",
        "sigla_orgao_superior_unidade_gestora",
        "sigla_orgao",
        "nome_orgao",
        "quantidade_terceirizados",
        "valor_custo_mensal_total",
        "quantidade_contratos",
    ],
}
CHANGES_EXPORT = [
    "tipo",
    "chave",
    "nome",
    "detalhe",
    "ano",
    "mes",
    "ano_anterior",
    "mes_anterior",
    "periodos_ausentes_entre",
    "situacao",
    "quantidade_terceirizados_anterior",
    "quantidade_terceirizados",
    "variacao_terceirizados",
    "valor_custo_mensal_total_anterior",
    "valor_custo_mensal_total",
    "variacao_custo",
    "variacao_percentual",
]


def _text_arg(args, name: str) -> str:
    value = args.get(name)
    if not value:
        raise InvalidRequestError(f"falta o parâmetro {name}")
    return value


def export_rows(repo: AnalysesRepository, args) -> tuple[str, list[str], list[list]]:
    """(view, header, rows) of an export request (``visao`` and the view's parameters),
    every row of the view (the page shows the first ones)."""
    view = check_choice(args.get("visao"), dict.fromkeys(VIEWS), "visao")
    kind = check_choice(args.get("tipo"), KINDS, "o tipo")
    repo.require()
    if view in ("aumentos", "quedas"):
        measure = check_choice(args.get("medida"), MEASURES, "a medida")
        comparison = repo.comparison()
        rows = (
            []
            if comparison is None or comparison.previous_year is None
            else repo.changes(kind, measure, view, comparison, limit=EXPORT_LIMIT)
        )
        header = CHANGES_EXPORT
    else:
        key = parse_option(f"{kind}:{_text_arg(args, 'chave')}")[1]
        series = repo.series(kind, key)
        latest = latest_present(series)
        if view == "serie":
            rows, header = series, SERIES_EXPORT[kind]
        elif latest is None:
            rows, header = [], CONTRACTS_EXPORT if view == "contratos" else PARTNERS_EXPORT[kind]
        else:
            where = (latest["ano"], latest["mes"])
            if view == "contratos":
                rows, header = repo.contracts(kind, key, *where, limit=EXPORT_LIMIT), CONTRACTS_EXPORT
            else:
                rows, header = repo.partners(kind, key, *where, limit=EXPORT_LIMIT), PARTNERS_EXPORT[kind]
            rows = [{"ano": where[0], "mes": where[1], **row} for row in rows]
    return view, header, [[row.get(name) for name in header] for row in rows]
