"""A period whose values stop converting is refused, never published as columns of NULLs: the
test nulled_share_at_most (MAX_NULLED_PERCENT, default 10), run inside the transaction of
staging.transformed and staging.historic_transformed (verify_before_commit)."""

import dataclasses

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from pipelines.flows import historic_materialize_flow, materialize_flow
from tests.conftest import load_csv_period as load_period
from tests.conftest import query, run_flow


def digest(db, table):
    [(value,)] = query(db, f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} AS t")
    return value


def errors_of(db, run_id):
    return " ".join(
        m
        for (m,) in query(
            db, "SELECT mensagem FROM logs.registros WHERE id_execucao = %s AND nivel = 'ERROR'", (run_id,)
        )
    )


# every amount written with the currency, a CNPJ with spaces, hours with their unit, a UG code
# with a prefix (a CNPJ or UG code with . / - still converts: the masks are removed)
FORMAT_CHANGES = {
    "valor_custo_mensal": {"vl_mensal_custo": "R$ 5.838,10"},
    "valor_salario_mensal": {"vl_mensal_salario": "R$ 2.524,37"},
    "cnpj_empresa": {"nr_cnpj": "19 232 342/0001-65"},
    "quantidade_horas_semanais": {"nr_jornada": "44h"},
    "id_unidade_gestora": {"cd_ug_gestora": "UG 413007"},
}


@pytest.mark.parametrize("column", sorted(FORMAT_CHANGES))
def test_a_column_that_stops_converting_is_not_published(db, settings, column):
    load_period(settings, 2024, 5)
    state, _ = run_flow(materialize_flow)
    assert state.is_successful(), state.message
    before = digest(db, "staging.transformed")

    load_period(settings, 2024, 5, FORMAT_CHANGES[column])  # the CGU changed the format: every value
    state, run_id = run_flow(materialize_flow)
    assert state.is_failed()
    assert "verificação nulled_share_at_most falhou em staging.transformed (1 resultado(s), por exemplo " in (
        state.message
    )
    assert f"(2024,5,{column},40,40,10)" in state.message  # period, column, values, turned NULL, limit
    assert "a tabela anterior foi mantida" in errors_of(db, run_id)
    assert digest(db, "staging.transformed") == before


def test_the_limit_is_a_share_of_the_values_and_can_be_raised(db, settings, monkeypatch):
    changed = FORMAT_CHANGES["valor_custo_mensal"]
    load_period(settings, 2024, 5, changed, how_many=20, rows=200)  # 10 %: some invalid values, published
    state, _ = run_flow(materialize_flow)
    assert state.is_successful(), state.message
    assert query(db, "SELECT count(*), count(valor_custo_mensal) FROM staging.transformed") == [(200, 180)]

    load_period(settings, 2024, 5, changed, how_many=21, rows=200)  # 10.5 %
    state, _ = run_flow(materialize_flow)
    assert state.is_failed() and "(2024,5,valor_custo_mensal,200,21,10)" in state.message
    assert query(db, "SELECT count(valor_custo_mensal) FROM staging.transformed") == [(180,)]

    monkeypatch.setenv("MAX_NULLED_PERCENT", "100")  # accepted on purpose, for this run
    state, _ = run_flow(materialize_flow)
    assert state.is_successful(), state.message
    assert query(db, "SELECT count(valor_custo_mensal) FROM staging.transformed") == [(179,)]


def test_a_handful_of_values_is_not_a_format_change(db, settings):
    """9 of a period's 12 CNPJs invalid (75 %): fewer than 10 values turned NULL, only the
    warning; 10 of 13 are refused."""
    invalid = FORMAT_CHANGES["cnpj_empresa"]
    load_period(settings, 2024, 5, invalid, how_many=9, rows=12)
    state, _ = run_flow(materialize_flow)
    assert state.is_successful(), state.message
    assert query(db, "SELECT count(*), count(cnpj_empresa) FROM staging.transformed") == [(12, 3)]
    load_period(settings, 2024, 5, invalid, how_many=10, rows=13)
    state, _ = run_flow(materialize_flow)
    assert state.is_failed() and "(2024,5,cnpj_empresa,13,10,10)" in state.message


def test_a_historic_period_that_stops_converting_is_refused_and_the_others_stay(db, settings):
    for month in (1, 5):
        load_period(settings, 2024, month)
    state, _ = run_flow(historic_materialize_flow)
    assert state.is_successful(), state.message
    before = digest(db, "staging.historic_transformed")

    load_period(settings, 2024, 5, FORMAT_CHANGES["valor_salario_mensal"])
    for _ in range(2):  # not forgotten: the next run rebuilds and checks the period again
        state, run_id = run_flow(historic_materialize_flow)
        assert state.is_failed()
        message = errors_of(db, run_id)
        assert "verificação nulled_share_at_most falhou em staging.historic_transformed" in message
        assert "(2024,5,valor_salario_mensal,40,40,10)" in message
        assert digest(db, "staging.historic_transformed") == before


# -- the rule, on every count: refused exactly when nulled * 100 > limit * values ---------------


@pytest.fixture(scope="module")
def compiled_rules(settings):
    from bench.dbtools import compile_inline

    snippet = (
        "{{ test_nulled_share_at_most(model='public.convertidos', compare_model='public.origem', "
        "columns=['a', 'b'], clean_upstream=false) }}"
    )
    return {
        limit: compile_inline(dataclasses.replace(settings, max_nulled_share=limit / 100), snippet)
        for limit in (0, 10, 37.5, 100)
    }


periods = st.lists(
    st.tuples(
        st.integers(0, 30), st.integers(0, 30), st.integers(0, 3),  # a: values, turned NULL, NULL upstream
        st.integers(0, 30), st.integers(0, 30),  # b: values, turned NULL
    ),
    min_size=1,
    max_size=3,
)  # fmt: skip


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(periods=periods, limit=st.sampled_from([0, 10, 37.5, 100]))
def test_refused_exactly_when_the_nulled_share_passes_the_limit(db, compiled_rules, periods, limit):
    upstream, converted, expected = [], [], set()
    for month, (a_values, a_nulled, a_missing, b_values, b_nulled) in enumerate(periods, start=1):
        a_nulled, b_nulled = min(a_nulled, a_values), min(b_nulled, b_values)
        for index in range(max(a_values + a_missing, b_values)):
            a = "x" if index < a_values else None
            b = "y" if index < b_values else None
            upstream.append((2024, month, a, b))
            converted.append((2024, month, None if index < a_nulled else a, None if index < b_nulled else b))
        for column, values, nulled in (("a", a_values, a_nulled), ("b", b_values, b_nulled)):
            if nulled * 100 > limit * values and nulled >= 10:
                expected.add((month, column, values, nulled))
    with db.cursor() as cursor:
        for table, rows in (("origem", upstream), ("convertidos", converted)):
            cursor.execute(f"DROP TABLE IF EXISTS public.{table}")
            cursor.execute(f"CREATE TABLE public.{table} (ano int, mes int, a text, b text)")
            if rows:
                cursor.executemany(f"INSERT INTO public.{table} VALUES (%s, %s, %s, %s)", rows)
    found = {(mes, coluna, valores, nulos) for _, mes, coluna, valores, nulos, _ in query(db, compiled_rules[limit])}
    assert found == expected


def test_a_refused_period_is_named_when_prefects_agent_runs_the_historic_materialization(db, settings):
    """Prefect's agent (the Docker mode, where this flow is registered) runs it without
    return_tasks: the cause must come from the reference tasks, every step being one."""
    import uuid

    from prefect.engine.flow_runner import FlowRunner

    from pipelines.tasks import SETTINGS_KEY

    load_period(settings, 2024, 1)
    load_period(settings, 2024, 5, FORMAT_CHANGES["valor_custo_mensal"])
    run_id = str(uuid.uuid4())
    state = FlowRunner(flow=historic_materialize_flow).run(context={"flow_run_id": run_id, SETTINGS_KEY: settings})
    assert state.is_failed() and state.result == {}
    assert state.message.startswith("Falhou: dbt build --select historic_transformed falhou: ")
    assert "verificação nulled_share_at_most falhou" in state.message
    assert "(2024,5,valor_custo_mensal,40,40,10)" in state.message
    assert query(db, "SELECT mensagem FROM logs.execucoes WHERE id_execucao = %s", (run_id,)) == [(state.message,)]


# -- a column that came empty: missing_share_at_most ------------------------------------------


@pytest.mark.parametrize("empty", ["", "<N/I>", " NULL "])
def test_a_money_column_that_came_empty_is_not_published(db, settings, empty):
    """Nothing fails to convert when the cost column is blank in every row (or XLSX formulas
    without a saved value, error cells): more than half of a period's rows without a cost."""
    load_period(settings, 2024, 5)
    state, _ = run_flow(materialize_flow)
    assert state.is_successful(), state.message
    before = digest(db, "staging.transformed")

    load_period(settings, 2024, 5, {"vl_mensal_custo": empty})
    state, _ = run_flow(materialize_flow)
    assert state.is_failed()
    assert "verificação missing_share_at_most falhou em staging.transformed" in state.message
    assert "(2024,5,valor_custo_mensal,40,40,50)" in state.message
    assert digest(db, "staging.transformed") == before


def test_up_to_half_of_the_rows_may_miss_a_value(db, settings, monkeypatch):
    load_period(settings, 2024, 5, {"vl_mensal_salario": "<N/I>"}, how_many=20)  # 50 %
    state, _ = run_flow(materialize_flow)
    assert state.is_successful(), state.message
    load_period(settings, 2024, 5, {"vl_mensal_salario": "<N/I>"}, how_many=21)  # 52.5 %
    state, _ = run_flow(materialize_flow)
    assert state.is_failed() and "(2024,5,valor_salario_mensal,40,21,50)" in state.message
    load_period(settings, 2024, 9, {"vl_mensal_salario": "<N/I>"}, how_many=9, rows=12)  # 75 %, under 10
    state, _ = run_flow(materialize_flow)
    assert state.is_successful(), state.message
    load_period(settings, 2024, 9, {"vl_mensal_salario": "<N/I>"})
    monkeypatch.setenv("MAX_NULLED_PERCENT", "100")  # accepted on purpose, for this run
    state, _ = run_flow(materialize_flow)
    assert state.is_successful(), state.message
    assert query(db, "SELECT count(*), count(valor_salario_mensal) FROM staging.transformed") == [(40, 0)]


def test_a_historic_period_whose_cost_came_empty_is_refused(db, settings):
    load_period(settings, 2024, 1)
    state, _ = run_flow(historic_materialize_flow)
    assert state.is_successful(), state.message
    before = digest(db, "staging.historic_transformed")
    load_period(settings, 2024, 5, {"vl_mensal_custo": ""})
    state, run_id = run_flow(historic_materialize_flow)
    assert state.is_failed()
    assert "verificação missing_share_at_most falhou em staging.historic_transformed" in errors_of(db, run_id)
    assert digest(db, "staging.historic_transformed") == before


def test_a_materialization_that_cannot_hold_the_raw_data_says_why_under_prefects_agent(db, settings):
    """Another run holds the raw data past LOCK_WAIT_SECONDS: the set-up of the hold fails and
    every step after it only could not run. Run as Prefect's agent runs it (no task states),
    the message still names the cause, since the hold's set-up is a reference task too."""
    import dataclasses
    import uuid

    import psycopg2
    from prefect.engine.flow_runner import FlowRunner

    from pipelines.database import RAW_DATA_LOCK_KEY
    from pipelines.tasks import SETTINGS_KEY

    load_period(settings, 2024, 1)
    holder = psycopg2.connect(**settings.postgres_dsn())
    holder.autocommit = True
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", (RAW_DATA_LOCK_KEY,))
        run_id = str(uuid.uuid4())
        quick = dataclasses.replace(settings, lock_wait_seconds=0.5)
        state = FlowRunner(flow=historic_materialize_flow).run(context={"flow_run_id": run_id, SETTINGS_KEY: quick})
    finally:
        holder.close()
    assert state.is_failed() and state.result == {}
    assert "Outra execução" in state.message and "LOCK_WAIT_SECONDS=0.5" in state.message, state.message
    assert query(db, "SELECT mensagem FROM logs.execucoes WHERE id_execucao = %s", (run_id,)) == [(state.message,)]


@pytest.mark.parametrize(("column", "source"), [("id_unidade_gestora", "cd_ug_gestora"), ("cnpj_empresa", "nr_cnpj")])
def test_no_value_codes_in_the_ug_and_the_cnpj_are_null_not_a_format_change(db, settings, column, source):
    """'-1' and '-2' mean "no value", as in the SIAFI/SIAPE codes: NULL, never the codes 000001
    or 00000000000001, and not counted as values that stopped converting (a period with many of
    them is not refused); another negative number is an invalid code, counted."""
    load_period(settings, 2024, 5, {source: "-1"}, how_many=30, rows=40)
    state, _ = run_flow(materialize_flow)
    assert state.is_successful(), state.message
    assert query(db, f"SELECT count(*), count({column}) FROM staging.transformed") == [(40, 10)]
    assert query(db, f"SELECT count(*) FROM staging.transformed WHERE {column} ~ '^0+[12]$'") == [(0,)]
    load_period(settings, 2024, 5, {source: "-153061"}, how_many=30, rows=40)
    state, _ = run_flow(materialize_flow)
    assert state.is_failed() and f"(2024,5,{column},40,30,10)" in state.message
