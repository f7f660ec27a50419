"""The materialize flow: dbt models staging.raw -> cleaned -> renamed -> transformed."""

from decimal import Decimal

import pytest

from pipelines import constants
from pipelines.flows import capture_flow, materialize_flow
from pipelines.settings import load_settings
from tests.conftest import emptied_connection, query, run_flow

TRANSFORMED_COLUMNS = [
    ("ano", "integer", 32, 0),
    ("mes", "smallint", 16, 0),
    ("id_terceirizado", "text", None, None),
    ("sigla_orgao_superior_unidade_gestora", "text", None, None),
    ("id_unidade_gestora", "text", None, None),
    ("sigla_unidade_gestora", "text", None, None),
    ("nome_unidade_gestora", "text", None, None),
    ("id_orgao_siafi", "text", None, None),
    ("id_orgao_siape", "text", None, None),
    ("sigla_orgao", "text", None, None),
    ("nome_orgao", "text", None, None),
    ("nome_unidade_prestacao", "text", None, None),
    ("id_contrato", "text", None, None),
    ("cnpj_empresa", "text", None, None),
    ("razao_social_empresa", "text", None, None),
    ("cpf", "text", None, None),
    ("nome", "text", None, None),
    ("cbo_2002", "text", None, None),
    ("categoria_profissional", "text", None, None),
    ("nivel_escolaridade", "text", None, None),
    ("quantidade_horas_semanais", "integer", 32, 0),
    ("valor_salario_mensal", "numeric", 12, 2),
    ("valor_custo_mensal", "numeric", 12, 2),
    ("capturado_em", "timestamp with time zone", None, None),
]


def warnings_of(db, run_id):
    """dbt warnings recorded by a run (the structured event, not the message): test name -> rows found."""
    return dict(
        query(
            db,
            "SELECT detalhe->>'teste', (detalhe->>'linhas')::integer FROM logs.registros "
            "WHERE id_execucao = %s AND evento = %s",
            (run_id, constants.EVENT_DBT_WARNING),
        )
    )


def table_digest(db, name):
    [(digest,)] = query(db, f"SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {name} AS t")
    return digest


@pytest.fixture
def materialized(db, fresh_portal):
    captured, _ = run_flow(capture_flow, url=fresh_portal.page_url)
    assert captured.is_successful()
    state, run_id = run_flow(materialize_flow)
    assert state.is_successful(), state.message
    return run_id


@pytest.fixture(scope="module")
def built(settings, portal):
    """One capture and materialization of the newest period, shared by the tests that only read
    what it built (they come first in this file; the later ones change the tables)."""
    conn = emptied_connection(settings)
    portal.faults.clear()
    portal.page_override = None
    captured, _ = run_flow(capture_flow, url=portal.page_url)
    assert captured.is_successful()
    state, run_id = run_flow(materialize_flow)
    assert state.is_successful(), state.message
    yield conn, run_id
    conn.close()


def test_rows_and_money_reconcile_with_the_source(built, portal):
    db, materialized = built
    expected = portal.portal.expectations["2024-05"]
    assert query(db, "SELECT count(*) FROM staging.raw") == [(expected.loaded_rows,)]
    assert query(db, "SELECT count(*) FROM staging.transformed") == [(expected.loaded_rows,)]
    [(cost, salary)] = query(db, "SELECT sum(valor_custo_mensal), sum(valor_salario_mensal) FROM staging.transformed")
    assert cost == Decimal(expected.sum_custo)
    assert salary == sum(Decimal(r[14]) for r in expected.loaded)
    assert query(db, "SELECT DISTINCT ano, mes FROM staging.transformed") == [(2024, 5)]
    [(run_rows,)] = query(db, "SELECT linhas_carregadas FROM logs.execucoes WHERE id_execucao = %s", (materialized,))
    assert run_rows == expected.loaded_rows


def test_types_order_and_comments(built):
    db, _ = built
    columns = query(
        db,
        """SELECT column_name, data_type, numeric_precision, numeric_scale
                           FROM information_schema.columns WHERE table_schema = 'staging'
                           AND table_name = 'transformed' ORDER BY ordinal_position""",
    )
    assert columns == TRANSFORMED_COLUMNS
    comments = dict(
        query(
            db,
            """SELECT a.attname, col_description(a.attrelid, a.attnum) FROM pg_attribute a
                                 WHERE a.attrelid = 'staging.transformed'::regclass AND a.attnum > 0""",
        )
    )
    assert all(comments[name] for name, *_ in TRANSFORMED_COLUMNS), comments
    assert "BRL" in comments["valor_custo_mensal"] and "LGPD" in comments["cpf"] and "LGPD" in comments["nome"]
    [(table_comment,)] = query(db, "SELECT obj_description('staging.transformed'::regclass)")
    assert "tipos finais" in table_comment
    renamed = [
        c
        for (c,) in query(
            db,
            "SELECT column_name FROM information_schema.columns WHERE table_schema = "
            "'staging' AND table_name = 'renamed' ORDER BY ordinal_position",
        )
    ]
    assert renamed == [name for name, *_ in TRANSFORMED_COLUMNS]
    [(primary_key,)] = query(
        db,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = "
        "'staging.transformed'::regclass AND contype = 'p'",
    )
    assert primary_key == "PRIMARY KEY (ano, mes, id_terceirizado)"
    # the planner's statistics of the new table, taken by the build (not left to autovacuum)
    assert query(db, "SELECT count(*) FROM pg_stats WHERE schemaname = 'staging' AND tablename = 'transformed'") == [
        (len(TRANSFORMED_COLUMNS),)
    ]


def test_zero_padding_of_codes_lost_in_xlsx_cells(built):
    db, _ = built
    assert ("588541000182",) in query(db, "SELECT DISTINCT nr_cnpj FROM staging.raw")
    assert query(
        db, "SELECT DISTINCT cnpj_empresa FROM staging.transformed WHERE razao_social_empresa LIKE 'IPANEMA%%'"
    ) == [("00588541000182",)]
    assert query(db, "SELECT DISTINCT id_unidade_gestora FROM staging.transformed WHERE sigla_orgao = 'FUNASA'") == [
        ("020001",)
    ]
    assert query(
        db,
        "SELECT count(*) FROM staging.transformed WHERE length(cnpj_empresa) <> 14 OR length(id_unidade_gestora) <> 6",
    ) == [(0,)]


def test_every_sentinel_becomes_null(built):
    db, _ = built
    pairs = [  # (raw column, transformed column, sentinels seen in the raw column)
        ("sg_ug_gestora", "sigla_unidade_gestora", ("",)),
        ("nr_contrato", "id_contrato", ("NULL",)),
        ("nr_jornada", "quantidade_horas_semanais", ("NI", "NI  ")),
        ("cd_orgao_siafi", "id_orgao_siafi", ("<N/I>", "-2")),
        ("cd_orgao_siape", "id_orgao_siape", ("-1", "-2")),
        ("sg_orgao", "sigla_orgao", ("<N/I>",)),
        ("nm_unidade_prestacao", "nome_unidade_prestacao", ("",)),
    ]
    for raw_column, column, sentinels in pairs:
        [(sentinel_rows, null_rows, other_nulls)] = query(
            db,
            f"""
            SELECT count(*) FILTER (WHERE coalesce(r.{raw_column}, '') = ANY(%s)),
                   count(*) FILTER (WHERE t.{column} IS NULL),
                   count(*) FILTER (WHERE t.{column} IS NULL AND coalesce(r.{raw_column}, '') <> ALL(%s))
            FROM staging.raw r JOIN staging.transformed t ON t.id_terceirizado = r.id_terc""",
            (list(sentinels), list(sentinels)),
        )
        assert sentinel_rows > 0, raw_column
        assert (null_rows, other_nulls) == (sentinel_rows, 0), raw_column


def test_cbo_code_is_split_from_the_category(built):
    db, _ = built
    rows = dict(
        query(
            db,
            "SELECT DISTINCT r.nm_categoria_profissional, row(t.cbo_2002, t.categoria_profissional)"
            "::text FROM staging.raw r JOIN staging.transformed t ON t.id_terceirizado = r.id_terc",
        )
    )
    assert rows["517330 - VIGILANTE"] == "(517330,VIGILANTE)"
    assert rows["422105 - RECEPCIONISTA, EM GERAL"] == '(422105,"RECEPCIONISTA, EM GERAL")'
    assert rows["SERVENTE"] == "(,SERVENTE)"
    # a 4-digit family code is not a CBO 2002 occupation
    assert rows["5173 - VIGILANTES E GUARDAS DE SEGURANCA"] == '(,"VIGILANTES E GUARDAS DE SEGURANCA")'
    assert query(db, "SELECT count(*) FROM staging.transformed WHERE cbo_2002 !~ '^\\d{6}$'") == [(0,)]


def test_rerun_gives_identical_tables_and_logs_dbt_once(db, settings, materialized):
    before = {name: table_digest(db, name) for name in ("staging.transformed", "staging.renamed", "staging.cleaned")}
    state, run_id = run_flow(materialize_flow)
    assert state.is_successful()
    assert {name: table_digest(db, name) for name in before} == before
    messages = [m for (m,) in query(db, "SELECT mensagem FROM logs.registros WHERE id_execucao = %s", (run_id,))]
    created = [m for m in messages if "OK created sql table model staging.transformed" in m]
    assert len(created) == 1
    text = (settings.log_dir / "logs__materialize.txt").read_text(encoding="utf-8")
    assert text.count("OK created sql table model staging.transformed") == 1
    tasks = {t for (t,) in query(db, "SELECT DISTINCT nome_task FROM logs.registros WHERE id_execucao = %s", (run_id,))}
    assert {
        "dbt_build_staging.raw",
        "dbt_build_staging.cleaned",
        "dbt_build_staging.renamed",
        "dbt_build_staging.transformed",
    } <= tasks


def test_bad_values_do_not_crash_and_are_counted(db, settings, fresh_portal, materialized):
    expected = fresh_portal.portal.expectations["2024-05"]
    stale_years = sum(1 for r in expected.loaded if r[18] != "2024")
    numeric_education = sum(1 for r in expected.loaded if r[11].isdigit())
    [(first_id,)] = query(db, "SELECT min(id_terc) FROM raw.terceirizados")
    with db.cursor() as cursor:
        cursor.execute(
            "UPDATE raw.terceirizados SET vl_mensal_salario = 'abc', nm_escolaridade = '26', "
            "nr_jornada = 'quarenta' WHERE id_terc = %s",
            (first_id,),
        )
        cursor.execute(
            "SELECT id_terc FROM raw.terceirizados WHERE nm_escolaridade ~ '^\\d+$' AND id_terc <> %s LIMIT 1",
            (first_id,),
        )
    state, run_id = run_flow(materialize_flow)
    assert state.is_successful()
    warnings = warnings_of(db, run_id)
    assert warnings["values_nulled_transformed"] == 2
    assert warnings["values_nulled_cleaned"] == numeric_education + 1
    # the test's rows say which columns lost values
    compiled = next((settings.data_dir / "dbt_target" / "latest" / "compiled").rglob("values_nulled_transformed.sql"))
    assert sorted(query(db, compiled.read_text())) == [("quantidade_horas_semanais", 1), ("valor_salario_mensal", 1)]
    assert warnings["load_fields_match_period_cleaned_"] == stale_years > 0
    [(salary, education, hours)] = query(
        db,
        "SELECT valor_salario_mensal, nivel_escolaridade, "
        "quantidade_horas_semanais FROM staging.transformed "
        "WHERE id_terceirizado = %s",
        (first_id,),
    )
    assert (salary, education, hours) == (None, None, None)
    assert query(db, "SELECT count(*) FROM staging.transformed") == [(expected.loaded_rows,)]


@pytest.mark.parametrize(
    "new_id",
    [
        "(SELECT min(id_terc) FROM raw.terceirizados)",  # two workers with the same id in one period
        "NULL",  # no id: the key's not-null tests are left out of the build, the key verifies them
        "E'\\u00a0NI '",  # a "no value" sentinel, NULL once cleaned
    ],
)
def test_error_level_failure_fails_the_flow_and_keeps_the_previous_table(db, materialized, new_id):
    before = table_digest(db, "staging.transformed")
    with db.cursor() as cursor:
        cursor.execute(
            f"UPDATE raw.terceirizados SET id_terc = {new_id} "
            "WHERE linha_origem = (SELECT max(linha_origem) FROM raw.terceirizados)"
        )
    state, run_id = run_flow(materialize_flow)
    assert state.is_failed()
    assert table_digest(db, "staging.transformed") == before
    [(status, message)] = query(
        db, "SELECT estado_final, mensagem FROM logs.execucoes WHERE id_execucao = %s", (run_id,)
    )
    assert status == "Failed"
    errors = " ".join(
        m
        for (m,) in query(
            db, "SELECT mensagem FROM logs.registros WHERE id_execucao = %s AND nivel = 'ERROR'", (run_id,)
        )
    )
    assert "transformed" in errors


@pytest.mark.parametrize("problem", ["empty", "missing"])
def test_missing_or_empty_raw_table_is_explained(db, settings, problem):
    from pipelines import database

    with db.cursor() as cursor:
        if problem == "missing":
            cursor.execute("DROP TABLE raw.terceirizados CASCADE")
    try:
        state, run_id = run_flow(materialize_flow)
        assert state.is_failed()
        messages = " ".join(
            m for (m,) in query(db, "SELECT mensagem FROM logs.registros WHERE id_execucao = %s", (run_id,))
        )
        assert "rode antes a captura (python run/capture.py)" in messages
        # the flow's set-up recreates a dropped table empty, so both cases end as "empty"
        assert "raw.terceirizados está vazia" in messages
    finally:
        database.ensure_schema(load_settings())


def test_missing_raw_table_is_named(db, settings):
    from pipelines import database, raw_loads
    from pipelines.errors import RawDataMissingError

    with db.cursor() as cursor:
        cursor.execute("DROP TABLE raw.terceirizados CASCADE")
    try:
        with pytest.raises(RawDataMissingError, match="raw.terceirizados não existe: rode antes a captura"):
            raw_loads.captured_periods(settings)
    finally:
        database.ensure_schema(settings)


def test_decimal_and_sentinel_macros(db, settings):
    from bench.dbtools import compile_inline

    compiled = compile_inline(
        settings,
        """
        select x, {{ clean_decimal('x') }} as decimal_text, {{ clean_code('x') }} as code
        from (values ('2524,37'), ('1.234,56'), ('2524.37'), (' NI  '), ('<N/I>'), ('-2'), ('NULL'), (''), ('abc'))
            as v(x)""",
    )
    rows = {x: (decimal_text, code) for x, decimal_text, code in query(db, compiled)}
    assert rows["2524,37"][0] == "2524.37" and rows["1.234,56"][0] == "1234.56" and rows["2524.37"][0] == "2524.37"
    assert all(rows[s] == (None, None) for s in (" NI  ", "<N/I>", "NULL", ""))
    assert rows["-2"] == ("-2", None) and rows["abc"] == ("abc", "abc")


def test_unique_combination_reads_rows_only_without_a_unique_index(db, settings):
    from bench.dbtools import compile_inline

    with db.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS public.chaves; CREATE TABLE public.chaves (a int, b int, c int)")
        cursor.execute("INSERT INTO public.chaves VALUES (1, 1, 1), (1, 1, 2), (1, 2, 3)")
    compiled = compile_inline(
        settings, "{{ test_unique_combination(model='public.chaves', combination_of_columns=['b', 'a']) }}"
    )
    assert query(db, compiled) == [(1, 1, 2)]  # (b, a, occurrences): the duplicate is found
    with db.cursor() as cursor:  # a unique index on other columns proves nothing
        cursor.execute("CREATE UNIQUE INDEX chaves_abc ON public.chaves (a, b, c)")
    assert query(db, compiled) == [(1, 1, 2)]
    with db.cursor() as cursor:  # a unique index on exactly (a, b) lets rows with NULLs repeat: still read
        cursor.execute("DELETE FROM public.chaves WHERE c = 2; CREATE UNIQUE INDEX chaves_ab ON public.chaves (a, b)")
        cursor.execute("INSERT INTO public.chaves VALUES (2, NULL, 4), (2, NULL, 5)")
    assert query(db, compiled) == [(None, 2, 2)]
    with db.cursor() as cursor:  # a primary key on exactly (a, b): rows are not read
        cursor.execute("DELETE FROM public.chaves WHERE b IS NULL; ALTER TABLE public.chaves ADD PRIMARY KEY (a, b)")
        cursor.execute("EXPLAIN ANALYZE " + compiled)
        plan = "\n".join(line for (line,) in cursor.fetchall())
    assert query(db, compiled) == []
    assert "never executed" in plan
    with db.cursor() as cursor:
        cursor.execute("DROP TABLE public.chaves")


def test_one_dbt_invocation_builds_the_four_models_and_each_task_reports_its_own(
    db, settings, materialized, monkeypatch
):
    """The latest models are built by one `dbt build` (pipelines.dbt.ChainBuild); each model's task
    still logs its own model's lines and outcome, and nothing else."""
    from pipelines import dbt, dbt_views

    # without the record of the view it created, the build creates staging.raw too (test_dbt_views.py)
    (settings.data_dir / "dbt_target" / "latest" / dbt_views.RECORD_FILE).unlink(missing_ok=True)
    invocations = []
    invoke = dbt._invoke

    def counted(settings, args, *rest, **options):
        invocations.append(args)
        return invoke(settings, args, *rest, **options)

    monkeypatch.setattr(dbt, "_invoke", counted)
    state, run_id = run_flow(materialize_flow)
    assert state.is_successful(), state.message
    assert [args[:3] for args in invocations if args[0] == "build"] == [
        ["build", "--select", "raw cleaned renamed transformed"]
    ]
    by_task = {}
    for task, message in query(
        db, "SELECT nome_task, mensagem FROM logs.registros WHERE id_execucao = %s ORDER BY id", (run_id,)
    ):
        by_task.setdefault(task, []).append(message)
    dbt_lines = {task: [m for m in lines if m.startswith("dbt | ")] for task, lines in by_task.items()}
    for model, kind in (("raw", "view"), ("cleaned", "table"), ("renamed", "view"), ("transformed", "table")):
        created = [
            t for t, lines in dbt_lines.items() for m in lines if f"OK created sql {kind} model staging.{model} " in m
        ]
        assert created == [f"dbt_build_staging.{model}"]
        assert f"dbt build --select {model} concluído: {model}=success." in by_task[f"dbt_build_staging.{model}"]
    # the cleaned model's warning tests in its task's log, the 5 other tests of transformed in its
    # own (not the 5 its transaction ran before the commit: row count, mes, cost sum, the two shares)
    cleaned = by_task["dbt_build_staging.cleaned"]
    assert any("WARN" in m and "values_nulled_cleaned" in m for m in cleaned)
    assert any(m.startswith("Teste dbt com aviso: load_fields_match_period_cleaned_ encontrou") for m in cleaned)
    passed = [m for m in dbt_lines["dbt_build_staging.transformed"] if " PASS " in m]
    assert len(passed) == 5 and all("_transformed" in m for m in passed)
    # nor the 4 its primary key answers (unique key, not-null key columns)
    assert not [m for m in passed if "unique_combination" in m or "not_null" in m]
    assert not [m for m in passed if "row_count_equals" in m or "sum_matches_source" in m or "_mes__False" in m]
    assert not any("transformed" in m for m in dbt_lines["dbt_build_staging.cleaned"])
    assert dbt_lines["dbt_build_staging.raw"][0].startswith("dbt | Running with dbt=")
    assert warnings_of(db, run_id)["values_nulled_cleaned"] > 0


def manifest_macros_in_template_cache(manifest):
    """unique_ids of the manifest's macros whose jinja template dbt has compiled in this process."""
    from dbt_common.clients.jinja import template_cache

    return {macro.unique_id for macro in manifest.macros.values() if macro.macro_sql in template_cache.file_cache}


def test_the_background_preparation_compiles_the_macros_the_last_build_used(db, settings, materialized):
    """The chain's build records which macros it compiled; the next preparation compiles those
    (while the capture runs), and a build after it compiles no macro template of its own."""
    import json

    from dbt_common.clients.jinja import template_cache

    from pipelines import dbt

    # as the scheduled run finds it: the previous build replaced tables that existed (the first
    # build, on an empty schema, calls fewer macros: no grants to copy)
    state, _ = run_flow(materialize_flow)
    assert state.is_successful(), state.message
    recorded = json.loads((settings.data_dir / "dbt_target" / "latest" / dbt.USED_MACROS_FILE).read_text())
    assert len(recorded) == len(set(recorded)) > 50
    for used in (
        "macro.dbt.materialization_table_default",
        "macro.dbt.materialization_view_default",
        "macro.dbt.materialization_test_default",
        "macro.terceirizados.terceirizados_cleaned",
        "macro.terceirizados.verify_before_commit",
        "macro.terceirizados.test_values_nulled",
    ):
        assert used in recorded, used
    manifest = dbt.parsed_manifest(settings, "latest")
    assert set(recorded) <= set(manifest.macros)

    template_cache.clear()  # as in a new process
    dbt.prepare_in_background(settings, "latest").join(60)
    assert manifest_macros_in_template_cache(manifest) == set(recorded)

    state, _ = run_flow(materialize_flow)
    assert state.is_successful(), state.message
    assert manifest_macros_in_template_cache(manifest) == set(recorded)  # the build compiled none


def test_an_unreadable_list_of_used_macros_warms_nothing_and_fails_nothing(db, settings, materialized):
    from dbt_common.clients.jinja import template_cache

    from pipelines import dbt

    manifest = dbt.parsed_manifest(settings, "latest")
    path = settings.data_dir / "dbt_target" / "latest" / dbt.USED_MACROS_FILE
    for content in ("não é json", '{"macro": 1}', '["macro.terceirizados.nao_existe", 7, null]'):
        path.write_text(content)
        template_cache.clear()
        assert dbt._warm_macro_templates(settings, "latest", manifest) == 0
        assert manifest_macros_in_template_cache(manifest) == set()
    path.write_text('["macro.terceirizados.nao_existe", "macro.terceirizados.terceirizados_cleaned"]')
    assert dbt._warm_macro_templates(settings, "latest", manifest) == 1
    assert manifest_macros_in_template_cache(manifest) == {"macro.terceirizados.terceirizados_cleaned"}
    path.unlink()
    assert dbt._warm_macro_templates(settings, "latest", manifest) == 0
    state, _ = run_flow(materialize_flow)  # the build compiles what it needs, and records it again
    assert state.is_successful(), state.message
    assert "macro.dbt.materialization_table_default" in path.read_text()


def test_a_model_that_fails_in_the_one_invocation_stops_the_chain_there(db, settings, materialized):
    """staging.cleaned cannot be built (a column of raw.terceirizados renamed): its task fails with
    PostgreSQL's message, the models after it are neither built nor reported as built, dbt has
    finished when the flow ends, and the previous staging.transformed stays as it was."""
    import threading

    from pipelines import database

    before = table_digest(db, "staging.transformed")
    with db.cursor() as cursor:
        cursor.execute("ALTER TABLE raw.terceirizados RENAME COLUMN nm_orgao TO nm_orgao_renomeada")
    try:
        state, run_id = run_flow(materialize_flow)
    finally:
        with db.cursor() as cursor:
            cursor.execute("ALTER TABLE raw.terceirizados RENAME COLUMN nm_orgao_renomeada TO nm_orgao")
        database.ensure_schema(settings)
    assert state.is_failed()
    assert not [t for t in threading.enumerate() if t.name.startswith("dbt-build-")]  # dbt is done
    states = {task.name: task_state for task, task_state in state.result.items()}
    assert states["dbt_build_staging.raw"].is_successful()
    assert states["dbt_build_staging.cleaned"].is_failed()
    message = str(states["dbt_build_staging.cleaned"].result)
    assert message.startswith("dbt build --select cleaned falhou: cleaned: ") and "nm_orgao" in message
    for later in ("dbt_build_staging.renamed", "dbt_build_staging.transformed", "record_materialized_rows"):
        assert type(states[later]).__name__ == "TriggerFailed", later
    assert table_digest(db, "staging.transformed") == before
    messages = [m for (m,) in query(db, "SELECT mensagem FROM logs.registros WHERE id_execucao = %s", (run_id,))]
    assert not any("OK created sql table model staging.transformed" in m for m in messages)
    assert any("SKIP relation staging.transformed" in m for m in messages)
