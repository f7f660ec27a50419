"""The analysis tables (schema marts) built by the real historic flows on the generated portal:
exact reconciliation with the portal's known totals, every organ's, company's and contract's
values against an independent reference (tests/oracle.py reads the generated rows in plain
Python), the comparison between published periods (a period missing from the portal is skipped,
an organ missing from a published period drops to zero), incremental rebuilds by period and the
Portuguese documentation of every column in the database."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from decimal import ROUND_HALF_UP, Decimal

import psycopg2
import pytest

from bench.portal_generator import small_periods
from pipelines import constants
from pipelines.dbt import run_dbt
from pipelines.demo import render_page
from pipelines.executors import parallel_executor
from pipelines.flows import historic_capture_flow, historic_materialize_flow
from tests import oracle
from tests.conftest import query, run_flow

MARTS = constants.HISTORIC_MARTS
PERIODS = [spec.label for spec in small_periods()]  # 2019-01, 2021-01, 2022-05, 2023-09, 2024-05
PER_PERIOD = (
    "totais_por_periodo",
    "contratos_por_periodo",
    "orgaos_por_periodo",
    "empresas_por_periodo",
    "escolaridade_por_periodo",
)
WHOLE = ("contratos", "variacao_entre_periodos")
UFJF = '["MEC", "UFJF", "UNIVERSIDADE FEDERAL DE JUIZ DE FORA"]'


# -- building -------------------------------------------------------------------------------


def connect(settings):
    conn = psycopg2.connect(**settings.postgres_dsn())
    conn.autocommit = True
    return conn


def capture_and_materialize(settings, portal, periods=None):
    """Empty raw tables, the historic capture of the portal (only ``periods``, when given, as
    if the portal published nothing else) and the historic materialization, staging and marts."""
    portal.faults.clear()
    portal.page_override = (
        None
        if periods is None
        else render_page([spec for spec in portal.portal.specs if spec.label in periods], portal.base_url)
    )
    conn = connect(settings)
    try:
        with conn.cursor() as cursor:
            cursor.execute("TRUNCATE raw.terceirizados, raw.terceirizados_quarentena, raw.capturas")
        state, _ = run_flow(historic_capture_flow, executor=parallel_executor(settings), url=portal.page_url)
        assert state.is_successful(), state.message
    finally:
        portal.page_override = None
        conn.close()
    return materialize()


def materialize(**parameters):
    state, run_id = run_flow(historic_materialize_flow, **parameters)
    assert state.is_successful(), state.message
    return run_id


def marts_hold_the_whole_portal(conn, portal) -> bool:
    """Whether the marts were built from every period of the portal, unchanged."""
    try:
        built = dict(
            query(
                conn,
                "SELECT to_char(make_date(ano, mes, 1), 'YYYY-MM'), quantidade_terceirizados "
                "FROM marts.totais_por_periodo",
            )
        )
    except psycopg2.Error:
        return False
    return built == {label: e.loaded_rows for label, e in portal.portal.expectations.items()}


@pytest.fixture(scope="module")
def built(settings, portal):
    conn = connect(settings)
    capture_and_materialize(settings, portal)
    yield conn
    conn.close()


# -- an independent reference ------------------------------------------------------------------


def value(typed):
    return None if isinstance(typed, oracle.Nulled) else typed


def reference_rows(portal) -> list[dict]:
    """The typed rows of staging.historic_transformed, from the generated rows (tests/oracle.py)."""
    rows = []
    for label, expected in portal.portal.expectations.items():
        year, month = int(label[:4]), int(label[5:])
        for fields in expected.loaded:
            typed = oracle.typed_row(year, month, dict(zip(oracle.COLUMNS, fields, strict=True)))
            rows.append({name: value(item) for name, item in typed.items()})
    return rows


def organ_key(row) -> str:
    return oracle_json([row["sigla_orgao_superior_unidade_gestora"], row["sigla_orgao"], row["nome_orgao"]])


def contract_key(row) -> str:
    return oracle_json([row["id_unidade_gestora"], row["id_contrato"], row["cnpj_empresa"]])


def oracle_json(values) -> str:
    """PostgreSQL's text of a jsonb array of texts (json.dumps would escape accents)."""
    parts = ["null" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]
    return "[" + ", ".join(parts) + "]"


def company_key(row) -> str:
    return row["cnpj_empresa"] or "(não informado)"


def money_sum(values) -> Decimal:
    return sum((v for v in values if v is not None), Decimal("0"))


def reference(portal) -> dict:
    """Per period, organ, company and contract: what the marts must hold."""
    rows = reference_rows(portal)
    by = defaultdict(list)
    for row in rows:
        period = (row["ano"], row["mes"])
        by["periodo", period].append(row)
        by["orgao", period, organ_key(row)].append(row)
        by["empresa", period, company_key(row)].append(row)
        by["contrato", contract_key(row)].append(row)
        by["contrato_periodo", period, contract_key(row)].append(row)
    out = {
        "periodos": sorted({key[1] for key in by if key[0] == "periodo"}),
        "orgaos": {},
        "empresas": {},
        "contratos": {},
        "totais": {},
    }
    for key, group in by.items():
        if key[0] == "periodo":
            out["totais"][key[1]] = (
                len(group),
                money_sum(r["valor_custo_mensal"] for r in group),
                money_sum(r["valor_salario_mensal"] for r in group),
            )
        elif key[0] == "orgao":
            cost = money_sum(r["valor_custo_mensal"] for r in group)
            salary = money_sum(r["valor_salario_mensal"] for r in group)
            with_cost = sum(1 for r in group if r["valor_custo_mensal"] is not None)
            out["orgaos"][key[1], key[2]] = {
                "quantidade_terceirizados": len(group),
                "valor_custo_mensal_total": cost,
                "valor_salario_mensal_total": salary,
                "valor_custo_medio": (cost / with_cost).quantize(Decimal("0.01"), ROUND_HALF_UP) if with_cost else None,
                "razao_custo_salario": (cost / salary).quantize(Decimal("0.0001"), ROUND_HALF_UP) if salary else None,
                "quantidade_empresas": len({company_key(r) for r in group}),
                "quantidade_contratos": len({contract_key(r) for r in group}),
            }
        elif key[0] == "empresa":
            names = Counter(r["razao_social_empresa"] for r in group)
            name = sorted(names.items(), key=lambda item: (item[0] is None, -item[1], item[0] or ""))[0][0]
            out["empresas"][key[1], key[2]] = {
                "razao_social_empresa": name,
                "quantidade_terceirizados": len(group),
                "valor_custo_mensal_total": money_sum(r["valor_custo_mensal"] for r in group),
                "quantidade_orgaos": len({organ_key(r) for r in group}),
                "quantidade_contratos": len({contract_key(r) for r in group}),
            }
    for key, group in by.items():
        if key[0] != "contrato":
            continue
        periods = sorted({(r["ano"], r["mes"]) for r in group})
        per_period = {
            p: (
                len(by["contrato_periodo", p, key[1]]),
                money_sum(r["valor_custo_mensal"] for r in by["contrato_periodo", p, key[1]]),
            )
            for p in periods
        }
        last = periods[-1]
        peak_workers = max(periods, key=lambda p: (per_period[p][0], p))
        peak_cost = max(periods, key=lambda p: (per_period[p][1], p))
        out["contratos"][key[1]] = {
            "primeiro": periods[0],
            "ultimo": last,
            "quantidade_periodos": len(periods),
            "periodos": ", ".join(f"{y}-{m:02d}" for y, m in periods),
            "terceirizados_ultimo": per_period[last][0],
            "custo_ultimo": per_period[last][1],
            "pico_terceirizados": per_period[peak_workers][0],
            "periodo_pico_terceirizados": peak_workers,
            "pico_custo": per_period[peak_cost][1],
            "periodo_pico_custo": peak_cost,
        }
    return out


def changes_reference(ref: dict, kind: str) -> dict:
    """(ano, mes, chave) -> (previous period, missing between, workers, workers before, cost, cost before)."""
    values = ref["orgaos"] if kind == "orgao" else ref["empresas"]
    published = ref["periodos"]
    out = {}
    for index, period in enumerate(published):
        previous = published[index - 1] if index else None
        keys = {k for (p, k) in values if p == period} | {k for (p, k) in values if p == previous}
        for key in keys:
            now, before = values.get((period, key)), values.get((previous, key))
            gap = None
            if previous:
                gap = sum(1 for y in range(previous[0], period[0] + 1) for m in (1, 5, 9) if previous < (y, m) < period)
            out[period + (key,)] = (
                previous,
                gap,
                now["quantidade_terceirizados"] if now else 0,
                (before["quantidade_terceirizados"] if before else 0) if previous else None,
                now["valor_custo_mensal_total"] if now else Decimal("0"),
                (before["valor_custo_mensal_total"] if before else Decimal("0")) if previous else None,
            )
    return out


def as_dict(conn, sql, key_columns: int):
    cursor = conn.cursor()
    cursor.execute(sql)
    names = [d.name for d in cursor.description]
    out = {}
    for row in cursor.fetchall():
        out[row[:key_columns] if key_columns > 1 else row[0]] = dict(
            zip(names[key_columns:], row[key_columns:], strict=True)
        )
    cursor.close()
    return out


def records(conn, model):
    return dict(
        ((y, m), rest)
        for y, m, *rest in query(
            conn,
            "SELECT ano, mes, versao_fonte, linhas, construido_em FROM marts.periodos_construidos WHERE modelo = %s",
            (model,),
        )
    )


def plan_lines(conn, run_id) -> dict:
    lines = {}
    for (message,) in query(
        conn,
        "SELECT mensagem FROM logs.registros WHERE id_execucao = %s AND mensagem LIKE "
        "'dbt | marts.%%' AND (mensagem LIKE '%%reconstru%%' OR mensagem LIKE "
        "'%%construção completa%%') ORDER BY registrado_em, id",
        (run_id,),
    ):
        model, _, text = message.removeprefix("dbt | marts.").partition(": ")
        lines.setdefault(model, []).append(text)
    return lines


def physical_versions(conn, table):
    [(digest,)] = query(conn, f"SELECT md5(string_agg(xmin::text || ctid::text, ',' ORDER BY ctid)) FROM marts.{table}")
    return digest


# -- tests ------------------------------------------------------------------------------------


def test_every_mart_reconciles_with_the_portal_to_the_cent(built, portal):
    expectations = portal.portal.expectations
    expected = {
        (int(label[:4]), int(label[5:])): (e.loaded_rows, Decimal(e.sum_custo)) for label, e in expectations.items()
    }
    for table in ("totais_por_periodo", "contratos_por_periodo", "orgaos_por_periodo", "empresas_por_periodo"):
        totals = query(
            built,
            f"SELECT ano, mes, sum(quantidade_terceirizados)::integer, sum(valor_custo_mensal_total) "
            f"FROM marts.{table} GROUP BY 1, 2 ORDER BY 1, 2",
        )
        assert {(y, m): (n, cost) for y, m, n, cost in totals} == expected, table
    for tipo in ("orgao", "empresa"):
        totals = query(
            built,
            "SELECT ano, mes, sum(quantidade_terceirizados)::integer, sum(valor_custo_mensal_total) "
            "FROM marts.variacao_entre_periodos WHERE tipo = %s GROUP BY 1, 2",
            (tipo,),
        )
        assert {(y, m): (n, cost) for y, m, n, cost in totals} == expected, tipo
    # the newest period: every contract in it is last seen in it
    newest = max(expected)
    [(workers, cost)] = query(
        built,
        "SELECT sum(quantidade_terceirizados_ultimo_periodo)::integer, "
        "sum(valor_custo_mensal_ultimo_periodo) FROM marts.contratos "
        "WHERE ultimo_periodo = make_date(%s, %s, 1)",
        newest,
    )
    assert (workers, cost) == expected[newest]
    # and the same totals as staging.historic_transformed
    assert query(
        built,
        "SELECT ano, mes, count(*)::integer, sum(valor_custo_mensal) FROM staging.historic_transformed "
        "GROUP BY 1, 2 ORDER BY 1, 2",
    ) == [(y, m, n, c) for (y, m), (n, c) in sorted(expected.items())]


def test_organs_companies_and_contracts_match_an_independent_reference(built, portal):
    ref = reference(portal)
    organs = as_dict(
        built,
        "SELECT ano, mes, chave_orgao, quantidade_terceirizados, valor_custo_mensal_total, "
        "valor_salario_mensal_total, valor_custo_medio, razao_custo_salario, quantidade_empresas, "
        "quantidade_contratos FROM marts.orgaos_por_periodo",
        3,
    )
    assert organs == {(p[0], p[1], k): v for (p, k), v in ref["orgaos"].items()}
    companies = as_dict(
        built,
        "SELECT ano, mes, chave_empresa, razao_social_empresa, quantidade_terceirizados, "
        "valor_custo_mensal_total, quantidade_orgaos, quantidade_contratos "
        "FROM marts.empresas_por_periodo",
        3,
    )
    assert companies == {(p[0], p[1], k): v for (p, k), v in ref["empresas"].items()}
    # the repaired row's company name (';' inside it) is one of its period's spellings, not the published name
    names = {v["razao_social_empresa"] for v in companies.values()}
    assert names >= {"AJ SERVICOS LTDA", "PROACAO SEGURANCA PRIVADA LTD"}
    contracts = as_dict(
        built,
        """
        SELECT chave_contrato, primeiro_periodo, ultimo_periodo, quantidade_periodos, periodos,
               quantidade_terceirizados_ultimo_periodo, valor_custo_mensal_ultimo_periodo,
               quantidade_terceirizados_pico, periodo_pico_terceirizados, valor_custo_mensal_pico, periodo_pico_custo
        FROM marts.contratos""",
        1,
    )
    first_day = lambda period: f"{period[0]}-{period[1]:02d}-01"  # noqa: E731
    assert {
        key: {name: (v.isoformat() if hasattr(v, "isoformat") else v) for name, v in row.items()}
        for key, row in contracts.items()
    } == {
        key: {
            "primeiro_periodo": first_day(c["primeiro"]),
            "ultimo_periodo": first_day(c["ultimo"]),
            "quantidade_periodos": c["quantidade_periodos"],
            "periodos": c["periodos"],
            "quantidade_terceirizados_ultimo_periodo": c["terceirizados_ultimo"],
            "valor_custo_mensal_ultimo_periodo": c["custo_ultimo"],
            "quantidade_terceirizados_pico": c["pico_terceirizados"],
            "periodo_pico_terceirizados": first_day(c["periodo_pico_terceirizados"]),
            "valor_custo_mensal_pico": c["pico_custo"],
            "periodo_pico_custo": first_day(c["periodo_pico_custo"]),
        }
        for key, c in ref["contratos"].items()
    }


def test_the_contract_key_needs_the_unit_and_the_company(built):
    """Evidence for the key of marts.contratos (unidade gestora + número + CNPJ): in the
    generated data, as in the CGU's 2024-05 file (1,240 contract numbers for 1,622 company
    names and 479 units), a contract number alone repeats across units and companies."""
    [(numbers, shared_by_units, shared_by_companies, same_unit_other_company, keys)] = query(
        built,
        """
        SELECT count(DISTINCT id_contrato),
               (SELECT count(*) FROM (SELECT id_contrato FROM staging.historic_transformed WHERE id_contrato IS NOT NULL
                                      GROUP BY 1 HAVING count(DISTINCT id_unidade_gestora) > 1) AS u),
               (SELECT count(*) FROM (SELECT id_contrato FROM staging.historic_transformed WHERE id_contrato IS NOT NULL
                                      GROUP BY 1 HAVING count(DISTINCT cnpj_empresa) > 1) AS e),
               (SELECT count(*) FROM (SELECT id_unidade_gestora, id_contrato FROM staging.historic_transformed
                                      WHERE id_contrato IS NOT NULL GROUP BY 1, 2
                                      HAVING count(DISTINCT cnpj_empresa) > 1) AS ue),
               count(DISTINCT (id_unidade_gestora, id_contrato, cnpj_empresa))
        FROM staging.historic_transformed""",
    )
    assert shared_by_units > 0 and shared_by_companies > 0 and same_unit_other_company > 0, (numbers, keys)
    [(contracts, with_null_number)] = query(
        built, "SELECT count(*), count(*) FILTER (WHERE id_contrato IS NULL) FROM marts.contratos"
    )
    assert contracts == keys
    assert with_null_number > 0  # rows without a contract number ('NULL' in the file) are kept, keyed with null


def test_changes_compare_each_period_with_the_previous_published_one(built, portal):
    ref = reference(portal)
    for kind in ("orgao", "empresa"):
        rows = query(
            built,
            """
            SELECT ano, mes, chave, ano_anterior, mes_anterior, periodos_ausentes_entre, quantidade_terceirizados,
                   quantidade_terceirizados_anterior, valor_custo_mensal_total, valor_custo_mensal_total_anterior
            FROM marts.variacao_entre_periodos WHERE tipo = %s""",
            (kind,),
        )
        got = {(y, m, k): ((ya, ma) if ya else None, gap, n, nb, c, cb) for y, m, k, ya, ma, gap, n, nb, c, cb in rows}
        assert got == changes_reference(ref, kind), kind
    # the portal's gaps are explicit: 2019-01 -> 2021-01 skips 2019-05 .. 2020-09
    assert query(
        built,
        "SELECT DISTINCT ano, mes, ano_anterior, mes_anterior, periodos_ausentes_entre "
        "FROM marts.variacao_entre_periodos ORDER BY 1, 2",
    ) == [
        (2019, 1, None, None, None),
        (2021, 1, 2019, 1, 5),
        (2022, 5, 2021, 1, 3),
        (2023, 9, 2022, 5, 3),
        (2024, 5, 2023, 9, 1),
    ]
    assert query(built, "SELECT DISTINCT situacao FROM marts.variacao_entre_periodos WHERE ano = 2019") == [
        ("primeiro_periodo",)
    ]


def test_every_mart_and_column_is_documented_in_portuguese(built):
    undocumented = query(
        built,
        """
        SELECT c.relname, a.attname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
        JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE n.nspname = 'marts' AND c.relkind = 'r' AND c.relname <> 'periodos_construidos'
          AND coalesce(col_description(c.oid, a.attnum), '') = ''""",
    )
    assert undocumented == []
    tables = dict(
        query(
            built,
            "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class AS c "
            "JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE n.nspname = 'marts' "
            "AND c.relkind = 'r'",
        )
    )
    assert set(tables) == set(MARTS) | {"periodos_construidos"}
    assert all(tables[name] for name in tables)
    assert "período publicado anterior" in tables["variacao_entre_periodos"]
    [(comment,)] = query(built, "SELECT col_description('marts.contratos'::regclass, 1)")
    assert comment.startswith("Chave do contrato: [código da unidade gestora, número do contrato, CNPJ da empresa]")
    # primary keys guard uniqueness in the database too
    keys = dict(
        query(
            built,
            """
        SELECT c.conrelid::regclass::text, array_agg(a.attname::text ORDER BY k.position)
        FROM pg_constraint AS c CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, position)
        JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
        WHERE c.contype = 'p' AND c.connamespace = 'marts'::regnamespace GROUP BY 1""",
        )
    )
    assert keys == {
        "marts.totais_por_periodo": ["ano", "mes"],
        "marts.contratos_por_periodo": ["ano", "mes", "chave_contrato", "chave_orgao"],
        "marts.orgaos_por_periodo": ["ano", "mes", "chave_orgao"],
        "marts.empresas_por_periodo": ["ano", "mes", "chave_empresa"],
        "marts.escolaridade_por_periodo": ["ano", "mes", "chave_escolaridade"],
        "marts.contratos": ["chave_contrato"],
        "marts.variacao_entre_periodos": ["ano", "mes", "tipo", "chave"],
        "marts.periodos_construidos": ["modelo", "ano", "mes"],
    }


def test_an_unchanged_rerun_rebuilds_nothing(built, settings, caplog):
    before = {model: records(built, model) for model in MARTS}
    versions = {model: physical_versions(built, model) for model in MARTS}
    run_id = materialize()
    # the flow may skip the marts' dbt build outright (pipelines/dbt.py: nothing captured since)
    [(skipped,)] = query(
        built,
        "SELECT count(*) FROM logs.registros WHERE id_execucao = %s AND mensagem LIKE "
        "'dbt build --select path:models/marts dispensado%%'",
        (run_id,),
    )
    assert skipped == 1 or plan_lines(built, run_id) == {
        model: ["0 período(s) a reconstruir, 0 a remover."] for model in MARTS
    }
    # dbt itself, on every mart: nothing to rebuild, not one row rewritten, every test run
    with caplog.at_level(logging.INFO, logger="pipelines.dbt"):
        outcome = run_dbt(settings, "build", " ".join(MARTS), constants.DBT_HISTORIC)
    assert outcome.models == dict.fromkeys(MARTS, "success")
    plans = sorted(r.getMessage() for r in caplog.records if "período(s) a reconstruir" in r.getMessage())
    assert plans == sorted(f"dbt | marts.{model}: 0 período(s) a reconstruir, 0 a remover." for model in MARTS)
    assert {model: records(built, model) for model in MARTS} == before
    assert {model: physical_versions(built, model) for model in MARTS} == versions
    assert all(len(before[model]) == len(PERIODS) for model in MARTS)


def test_a_new_period_is_merged_into_the_contracts(built, settings, portal):
    """The four-monthly publication: 2024-05 arrives after every period the marts were built
    from. The per-period marts build only it, and marts.contratos merges it into the contracts'
    summaries instead of rebuilding them: the same table as a full build."""
    from pipelines import capture

    full = query(built, "SELECT * FROM marts.contratos ORDER BY chave_contrato")
    with built.cursor() as cursor:
        cursor.execute("DELETE FROM raw.terceirizados WHERE periodo = '2024-05-01'")
        cursor.execute("DELETE FROM raw.capturas WHERE periodo = '2024-05-01'")
    lines = plan_lines(built, materialize())
    assert {model: lines[model] for model in PER_PERIOD} == {
        model: ["0 período(s) a reconstruir, 1 a remover (2024-05)."] for model in PER_PERIOD
    }
    assert lines["contratos"] == ["tabela inteira reconstruída (4 período(s), 1 removido(s) (2024-05))."]
    assert query(built, "SELECT max(ultimo_periodo)::text FROM marts.contratos") == [("2023-09-01",)]

    files = {published.label: published for published in capture.discover_published_files(settings, portal.page_url)}
    capture.capture_period(settings, files["2024-05"], True, "publicacao-quadrimestral")
    lines = plan_lines(built, materialize())
    assert {model: lines[model] for model in PER_PERIOD} == {
        model: ["1 período(s) a reconstruir (2024-05), 0 a remover."] for model in PER_PERIOD
    }
    assert lines["contratos"] == ["1 período(s) novo(s) anexado(s) (2024-05), sem reconstruir a tabela."]
    assert query(built, "SELECT * FROM marts.contratos ORDER BY chave_contrato") == full
    assert marts_hold_the_whole_portal(built, portal)


def test_a_recaptured_latest_period_rebuilds_the_contracts(built, settings, portal):
    """The newest period captured again (--forcar): it is newer than every other period, but
    the contracts were already built from it, so merging it would count it twice. The whole
    table is rebuilt and equals a full build."""
    from pipelines import capture

    full = query(built, "SELECT * FROM marts.contratos ORDER BY chave_contrato")
    files = {published.label: published for published in capture.discover_published_files(settings, portal.page_url)}
    capture.capture_period(settings, files["2024-05"], True, "recaptura-forcada")
    lines = plan_lines(built, materialize())
    assert {model: lines[model] for model in PER_PERIOD} == {
        model: ["1 período(s) a reconstruir (2024-05), 0 a remover."] for model in PER_PERIOD
    }
    assert lines["contratos"] == [f"tabela inteira reconstruída ({len(PERIODS)} período(s))."]
    assert query(built, "SELECT * FROM marts.contratos ORDER BY chave_contrato") == full
    assert marts_hold_the_whole_portal(built, portal)


def test_an_organ_absent_from_a_published_period_drops_to_zero(built, portal):
    """2023-09 captured again without UFJF's rows: only that period of the per-period marts is
    rebuilt, and the comparisons say UFJF left in 2023-09 (0) and came back in 2024-05."""
    with built.cursor() as cursor:
        cursor.execute("DELETE FROM raw.terceirizados WHERE periodo = '2023-09-01' AND sg_orgao = 'UFJF'")
        cursor.execute("UPDATE raw.terceirizados SET capturado_em = now() WHERE periodo = '2023-09-01'")
    [(before_2022,)] = query(
        built,
        "SELECT quantidade_terceirizados FROM marts.orgaos_por_periodo "
        "WHERE ano = 2022 AND mes = 5 AND chave_orgao = %s",
        (UFJF,),
    )
    untouched = {model: {p: r for p, r in records(built, model).items() if p != (2023, 9)} for model in PER_PERIOD}
    run_id = materialize()
    lines = plan_lines(built, run_id)
    assert {model: lines[model] for model in PER_PERIOD} == {
        model: ["1 período(s) a reconstruir (2023-09), 0 a remover."] for model in PER_PERIOD
    }
    assert {model: lines[model] for model in WHOLE} == {
        model: [f"tabela inteira reconstruída ({len(PERIODS)} período(s))."] for model in WHOLE
    }
    assert {
        model: {p: r for p, r in records(built, model).items() if p != (2023, 9)} for model in PER_PERIOD
    } == untouched
    assert query(
        built,
        "SELECT count(*) FROM marts.orgaos_por_periodo WHERE ano = 2023 AND mes = 9 AND chave_orgao = %s",
        (UFJF,),
    ) == [(0,)]
    changes = query(
        built,
        """
        SELECT ano, mes, ano_anterior, mes_anterior, situacao, quantidade_terceirizados,
               quantidade_terceirizados_anterior, variacao_terceirizados, variacao_terceirizados_percentual,
               valor_custo_mensal_total
        FROM marts.variacao_entre_periodos WHERE tipo = 'orgao' AND chave = %s AND ano >= 2023
        ORDER BY 1, 2""",
        (UFJF,),
    )
    [(now_2024,)] = query(
        built,
        "SELECT quantidade_terceirizados FROM marts.orgaos_por_periodo "
        "WHERE ano = 2024 AND mes = 5 AND chave_orgao = %s",
        (UFJF,),
    )
    assert changes == [
        (2023, 9, 2022, 5, "saiu", 0, before_2022, -before_2022, Decimal("-100.00"), Decimal("0.00")),
        (2024, 5, 2023, 9, "entrou", now_2024, 0, now_2024, None, changes[1][9]),
    ]
    # the totals still reconcile with the source
    assert query(
        built, "SELECT ano, mes, quantidade_terceirizados FROM marts.totais_por_periodo WHERE ano = 2023"
    ) == query(built, "SELECT ano, mes, count(*) FROM staging.historic_transformed WHERE ano = 2023 GROUP BY 1, 2")


def test_a_period_missing_from_the_portal_is_skipped_not_zero(built, settings, portal):
    """The portal without 2022-05: the marts drop that period, and 2023-09 is compared with
    2021-01 (7 periods of the calendar missing in between), not with an empty 2022-05."""
    try:
        published = [label for label in PERIODS if label != "2022-05"]
        run_id = capture_and_materialize(settings, portal, published)
        lines = plan_lines(built, run_id)
        removed = ("removido(s) (2022-05)", "1 a remover (2022-05)")
        assert all(any(text in " ".join(lines[model]) for text in removed) for model in PER_PERIOD), lines
        for model in MARTS:
            assert (2022, 5) not in records(built, model), model
        assert query(
            built,
            "SELECT count(*) FROM marts.variacao_entre_periodos WHERE (ano, mes) = (2022, 5) "
            "OR (ano_anterior, mes_anterior) = (2022, 5)",
        ) == [(0,)]
        assert query(
            built,
            "SELECT DISTINCT ano, mes, ano_anterior, mes_anterior, periodos_ausentes_entre "
            "FROM marts.variacao_entre_periodos ORDER BY 1, 2",
        ) == [(2019, 1, None, None, None), (2021, 1, 2019, 1, 5), (2023, 9, 2021, 1, 7), (2024, 5, 2023, 9, 1)]
        # every organ of 2021-01 is in 2023-09 too: nobody "dropped to zero" because of the missing period
        assert query(
            built,
            "SELECT situacao, count(*) FROM marts.variacao_entre_periodos WHERE tipo = 'orgao' "
            "AND ano = 2023 GROUP BY 1",
        ) == [("permaneceu", 10)]
        ref = reference(portal)
        ref["periodos"] = [p for p in ref["periodos"] if p != (2022, 5)]
        for kind, values in (("orgao", "orgaos"), ("empresa", "empresas")):
            ref[values] = {k: v for k, v in ref[values].items() if k[0] != (2022, 5)}
            rows = query(
                built,
                """
                SELECT ano, mes, chave, ano_anterior, mes_anterior, periodos_ausentes_entre, quantidade_terceirizados,
                       quantidade_terceirizados_anterior, valor_custo_mensal_total, valor_custo_mensal_total_anterior
                FROM marts.variacao_entre_periodos WHERE tipo = %s""",
                (kind,),
            )
            got = {
                (y, m, k): ((ya, ma) if ya else None, gap, n, nb, c, cb) for y, m, k, ya, ma, gap, n, nb, c, cb in rows
            }
            assert got == changes_reference(ref, kind), kind
    finally:  # the whole portal again, for the tests that follow
        capture_and_materialize(settings, portal)
    assert marts_hold_the_whole_portal(built, portal)


def test_extreme_values_the_staging_tables_accept_do_not_overflow_the_marts(db, settings):
    """A cost of R$ 2.492.772.864,00 (the real maximum) on a salary of R$ 1,00, and a company whose
    cost grows from R$ 0,01: the ratio and the variation are far beyond numeric(10,4) and
    numeric(14,2), and used to fail the historic materialization for good."""
    from tests.conftest import load_csv_period

    load_csv_period(settings, 2024, 1, {"vl_mensal_salario": "0,01", "vl_mensal_custo": "0,01"})
    load_csv_period(settings, 2024, 5, {"vl_mensal_salario": "1,00", "vl_mensal_custo": "2492772864,00"})
    materialize()
    [(ratio,)] = query(db, "SELECT razao_custo_salario FROM marts.orgaos_por_periodo WHERE mes = 5")
    assert ratio == Decimal("2492772864.0000")
    [(variation,)] = query(
        db, "SELECT variacao_custo_percentual FROM marts.variacao_entre_periodos WHERE tipo = 'empresa' AND mes = 5"
    )
    assert variation == Decimal("24927728639900.00")  # (2,492,772,864.00 - 0.01) / 0.01 * 100


def test_a_database_built_with_the_old_narrow_types_is_migrated(db, settings):
    """The marts published before the types were widened have numeric(10,4) and numeric(14,2)
    columns: the next build (incremental, on_schema_change='fail') widens them in place instead
    of stopping on 'schemas out of sync' until someone runs a full refresh."""
    from tests.conftest import load_csv_period

    load_csv_period(settings, 2024, 1)
    materialize()
    with db.cursor() as cursor:  # as an existing database has them
        cursor.execute("ALTER TABLE marts.orgaos_por_periodo ALTER COLUMN razao_custo_salario TYPE numeric(10,4)")
        for column in ("variacao_terceirizados_percentual", "variacao_custo_percentual"):
            cursor.execute(f"ALTER TABLE marts.variacao_entre_periodos ALTER COLUMN {column} TYPE numeric(14,2)")
    load_csv_period(settings, 2024, 5, {"vl_mensal_salario": "1,00", "vl_mensal_custo": "2492772864,00"})
    materialize()
    types = query(
        db,
        "SELECT column_name, data_type, numeric_precision FROM information_schema.columns WHERE table_schema = "
        "'marts' AND column_name IN ('razao_custo_salario', 'variacao_terceirizados_percentual', "
        "'variacao_custo_percentual') ORDER BY 1",
    )
    assert types == [
        ("razao_custo_salario", "numeric", None),
        ("variacao_custo_percentual", "numeric", None),
        ("variacao_terceirizados_percentual", "numeric", None),
    ]
    assert query(db, "SELECT razao_custo_salario FROM marts.orgaos_por_periodo WHERE mes = 5") == [
        (Decimal("2492772864.0000"),)
    ]


def test_a_change_in_a_macro_a_mart_calls_changes_its_logic_version(settings, tmp_path, monkeypatch):
    """A mart's logic version was its own SQL and its contract only: a change in a macro it calls
    (the rounding of marts_percentil) kept the periods already built with the old rule, and new
    periods got the new one, with Success."""
    import shutil

    from bench.dbtools import compile_inline
    from pipelines import dbt
    from pipelines.settings import load_settings

    snippet = "{{ marts_logic_version('escolaridade_por_periodo') }} {{ marts_logic_version('totais_por_periodo') }}"
    before = compile_inline(settings, snippet).split()
    project = tmp_path / "queries"
    shutil.copytree(dbt.DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    [macros] = [path for path in (project / "macros").glob("*.sql") if "macro marts_percentil(" in path.read_text()]
    text = macros.read_text()
    end = text.index("{%- endmacro %}", text.index("{% macro marts_percentil("))
    macros.write_text(text[:end] + "{#- arredondamento novo -#}" + text[end:])
    monkeypatch.setattr(dbt, "DBT_PROJECT_DIR", project)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "dados"))
    after = compile_inline(load_settings(), snippet).split()
    assert after[0] != before[0]  # escolaridade_por_periodo calls marts_percentil
    assert after[1] == before[1]  # totais_por_periodo does not
