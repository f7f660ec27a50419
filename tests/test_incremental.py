"""Historic models built by period: a run rebuilds only the periods captured since the last
verified build, removes the periods no longer captured, and ends with the same table a full
refresh builds (queries/macros/terceirizados_models.sql)."""

from datetime import UTC, datetime

import pytest

from pipelines import capture, dbt
from pipelines.flows import historic_materialize_flow
from pipelines.settings import load_settings
from tests.conftest import query, run_flow

MODELS = ("historic_cleaned", "historic_transformed")
# the tests of historic_transformed that its transaction runs before the commit
VERIFIED_BEFORE_COMMIT = (
    "unique_combination_historic",
    "not_null_historic",
    "row_count_equals_historic",
    "accepted_values_historic_transformed_mes",
    "sum_matches_source_historic",
)
PERIODS = ["2019-01", "2021-01", "2022-05", "2023-09", "2024-05"]


@pytest.fixture
def captured(db, fresh_portal):
    return capture_every_period(db, fresh_portal)


def capture_every_period(db, portal):
    """Every period of the test portal captured, no historic model built yet."""
    with db.cursor() as cursor:
        cursor.execute(
            "DROP TABLE IF EXISTS staging.periodos_materializados, staging.historic_transformed, "
            "staging.historic_cleaned CASCADE"
        )
    settings = load_settings()
    files = {published.label: published for published in capture.discover_published_files(settings, portal.page_url)}
    assert sorted(files) == PERIODS
    for published in files.values():
        capture.capture_period(settings, published, False, "captura-de-teste")
    return files


def materialize(expect_success=True, **parameters):
    state, run_id = run_flow(historic_materialize_flow, **parameters)
    assert state.is_successful() == expect_success, state.message
    return run_id


def plan_lines(db, run_id):
    """What each historic model logged about the periods it rebuilt: model -> message."""
    lines = {}
    for (message,) in query(
        db,
        "SELECT mensagem FROM logs.registros WHERE id_execucao = %s AND "
        "mensagem LIKE 'dbt | staging.%%' AND (mensagem LIKE '%%a reconstruir%%' OR "
        "mensagem LIKE '%%reconstrução completa%%') ORDER BY registrado_em",
        (run_id,),
    ):
        model, _, text = message.removeprefix("dbt | staging.").partition(": ")
        lines.setdefault(model, []).append(text)
    return lines


# every dbt build of the historic materialization: the four models, then the marts built from them
CHAIN = list(dbt._historic_chain())


def skipped_builds(db, run_id):
    """The dbt builds of the historic materialization a run skipped, having nothing to do."""
    return [
        message.split()[3]
        for (message,) in query(
            db,
            "SELECT mensagem FROM logs.registros WHERE id_execucao = %s AND mensagem LIKE 'dbt build --select %% "
            "dispensado:%%' ORDER BY registrado_em",
            (run_id,),
        )
    ]


def row_versions(db):
    """Per period, the physical version of every row of historic_transformed (xmin, ctid):
    any rewrite of a row changes it."""
    versions = {}
    for ano, mes, version in query(
        db,
        "SELECT ano, mes, string_agg(id_terceirizado || '@' || xmin::text || ctid::text, ',' "
        "ORDER BY id_terceirizado) FROM staging.historic_transformed GROUP BY 1, 2",
    ):
        versions[f"{ano}-{mes:02d}"] = version
    return versions


def record(db, model="historic_transformed"):
    """The incremental record of a model: period -> (capturado_em, rows, built at, verified at)."""
    return {
        period: rest
        for period, *rest in query(
            db,
            "SELECT to_char(periodo, 'YYYY-MM'), capturado_em, linhas, construido_em, verificado_em "
            "FROM staging.periodos_materializados WHERE modelo = %s ORDER BY 1",
            (model,),
        )
    }


def digest(db, table):
    [(value,)] = query(db, f"SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} AS t")
    return value


def compiled_test(settings, name):
    """The SQL dbt ran for a test of the historic models in the latest invocation."""
    folder = settings.data_dir / "dbt_target" / "historic" / "compiled"
    return next(folder.rglob(f"{name}.sql")).read_text()


def raw_capture_times(db):
    return dict(query(db, "SELECT to_char(periodo, 'YYYY-MM'), capturado_em FROM raw.capturas"))


def test_first_run_builds_all_then_an_unchanged_rerun_rebuilds_and_reads_nothing(db, settings, captured):
    first = materialize()
    lines = plan_lines(db, first)
    assert lines == {
        model: ["reconstrução completa (primeira execução: nenhum período registrado)."] for model in MODELS
    }
    per_period = dict(query(db, "SELECT to_char(periodo, 'YYYY-MM'), count(*) FROM raw.terceirizados GROUP BY 1"))
    captured_at = raw_capture_times(db)
    for model in MODELS:
        built = record(db, model)
        assert sorted(built) == PERIODS
        assert {period: (at, rows) for period, (at, rows, _, _) in built.items()} == {
            period: (captured_at[period], per_period[period]) for period in PERIODS
        }
        assert all(verified is not None for *_, verified in built.values())  # every test passed
    # every row tested
    assert "where true" in compiled_test(settings, "accepted_values_historic_transformed_nivel_escolaridade")
    # the error-level tests the model's transaction verified before the commit (its hooks, its
    # primary key) are not run again after it (tag verificado_antes_do_commit), and their
    # periods are verified all the same
    compiled = {path.stem for path in (settings.data_dir / "dbt_target" / "historic" / "compiled").rglob("*.sql")}
    assert "accepted_values_historic_transformed_nivel_escolaridade" in compiled
    assert not [name for name in compiled if name.startswith(VERIFIED_BEFORE_COMMIT)], compiled
    versions, built = row_versions(db), record(db)

    # nothing new: known before dbt starts, so dbt is not even run
    second = materialize()
    assert plan_lines(db, second) == {}
    assert skipped_builds(db, second) == CHAIN
    assert row_versions(db) == versions  # not one row rewritten
    assert record(db) == built
    [(rows,)] = query(db, "SELECT linhas_carregadas FROM logs.execucoes WHERE id_execucao = %s", (second,))
    assert rows == sum(per_period.values())

    # the same with dbt (its own record of the last build gone): it rebuilds nothing and
    # the tests of the historic models read no row (their scope is empty)
    (settings.data_dir / "dbt_target" / "historic" / "construcao.json").unlink()
    third = materialize()
    assert skipped_builds(db, third) == []
    assert plan_lines(db, third) == {model: ["0 período(s) a reconstruir, 0 a remover."] for model in MODELS}
    assert row_versions(db) == versions
    assert record(db) == built
    for name in (
        "values_nulled_historic_transformed",
        "accepted_values_historic_transformed_nivel_escolaridade",
        "values_nulled_historic_cleaned",
    ):
        assert "where false" in compiled_test(settings, name), name
    # the full check stays available: a manual dbt test of those tests, on every row, passes
    check = dbt._invoke(
        settings,
        [
            "test",
            "--select",
            "historic_transformed,tag:verificado_antes_do_commit",
            "--vars",
            "{verificar_todos_os_periodos: true}",
        ],
        "historic",
    )
    assert check.success
    assert sorted((r.node.name, str(r.status)) for r in check.result if r.node.resource_type == "test") == [
        (name, "pass")
        for name in sorted(
            [
                "accepted_values_historic_transformed_mes__False__1__5__9",
                "missing_share_at_most_historic_transformed",
                "not_null_historic_transformed_ano",
                "not_null_historic_transformed_id_terceirizado",
                "not_null_historic_transformed_mes",
                "nulled_share_at_most_historic_transformed",
                "row_count_equals_historic_transformed_ref_historic_raw_",
                "sum_matches_source_historic_transformed_valor_custo_mensal__vl_mensal_custo__ref_historic_cleaned_",
                "unique_combination_historic_transformed_ano__mes__id_terceirizado",
            ]
        )
    ]
    assert "where true" in compiled_test(settings, "row_count_equals_historic_transformed_ref_historic_raw_")
    assert skipped_builds(db, materialize()) == CHAIN
    # the key and the results app's indexes (a sort, three name filters), each built once (by the full build)
    assert sorted(
        query(
            db,
            "SELECT regexp_replace(pg_get_indexdef(indexrelid), '^.* USING ', '') FROM pg_index "
            "WHERE indrelid = 'staging.historic_transformed'::regclass",
        )
    ) == [
        ("btree (ano, mes, id_terceirizado)",),
        ("btree (nome_orgao)",),
        ("btree (razao_social_empresa)",),
        ("btree (valor_custo_mensal DESC NULLS LAST)",),
        ("gin (nome gin_trgm_ops)",),
    ]
    # and the planner's statistics of the rows, taken by the build itself
    assert query(
        db,
        "SELECT count(*) > 20 FROM pg_stats WHERE schemaname = 'staging' AND tablename = %s",
        ("historic_transformed",),
    ) == [(True,)]


def test_a_recaptured_period_is_the_only_one_rebuilt_and_equals_a_full_refresh(db, settings, captured):
    materialize()
    versions, built = row_versions(db), record(db)
    before = raw_capture_times(db)
    capture.capture_period(load_settings(), captured["2022-05"], True, "recaptura")  # --force: same file, reloaded
    after = raw_capture_times(db)
    assert after["2022-05"] > before["2022-05"]

    run_id = materialize()
    assert plan_lines(db, run_id) == {model: ["1 período(s) a reconstruir (2022-05), 0 a remover."] for model in MODELS}
    now = row_versions(db)
    assert {p: v for p, v in now.items() if p != "2022-05"} == {p: v for p, v in versions.items() if p != "2022-05"}
    assert now["2022-05"] != versions["2022-05"]
    assert query(db, "SELECT DISTINCT capturado_em FROM staging.historic_transformed WHERE ano = 2022 AND mes = 5") == [
        (after["2022-05"],)
    ]
    rebuilt = record(db)
    assert {p: r for p, r in rebuilt.items() if p != "2022-05"} == {p: r for p, r in built.items() if p != "2022-05"}
    assert rebuilt["2022-05"][0] == after["2022-05"] and rebuilt["2022-05"][2] > built["2022-05"][2]
    assert rebuilt["2022-05"][3] is not None  # verified: its tests ran on that period
    assert "where (ano, mes) in ((2022, 5))" in compiled_test(
        settings, "accepted_values_historic_transformed_nivel_escolaridade"
    )
    assert "where periodo in (date '2022-05-01')" in compiled_test(
        settings, "load_fields_match_period_historic_cleaned_"
    )
    incremental = {table: digest(db, table) for table in ("staging.historic_transformed", "staging.historic_cleaned")}

    full = materialize(full_refresh=True)
    assert plan_lines(db, full) == {model: ["reconstrução completa (--full-refresh)."] for model in MODELS}
    assert all(at > rebuilt["2022-05"][2] for _, _, at, _ in record(db).values())  # every period rebuilt
    # every row tested
    assert "where true" in compiled_test(settings, "accepted_values_historic_transformed_nivel_escolaridade")
    # cell for cell, the incremental tables are the full refresh's
    assert {table: digest(db, table) for table in incremental} == incremental
    [(key,)] = query(
        db,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = "
        "'staging.historic_transformed'::regclass AND contype = 'p'",
    )
    assert key == "PRIMARY KEY (ano, mes, id_terceirizado)"


def test_a_period_removed_from_raw_disappears(db, captured):
    materialize()
    versions = row_versions(db)
    with db.cursor() as cursor:
        cursor.execute("DELETE FROM raw.terceirizados WHERE periodo = '2019-01-01'")
    run_id = materialize()
    assert plan_lines(db, run_id) == {model: ["0 período(s) a reconstruir, 1 a remover (2019-01)."] for model in MODELS}
    assert query(db, "SELECT count(*) FROM staging.historic_transformed WHERE ano = 2019") == [(0,)]
    assert query(db, "SELECT count(*) FROM staging.historic_cleaned WHERE periodo = '2019-01-01'") == [(0,)]
    assert sorted(record(db)) == sorted(record(db, "historic_cleaned")) == PERIODS[1:]
    del versions["2019-01"]
    assert row_versions(db) == versions


def test_changed_rules_or_an_emptied_table_rebuild_everything(db, captured):
    materialize()
    built = record(db)
    rows = query(db, "SELECT count(*) FROM staging.historic_cleaned")
    with db.cursor() as cursor:
        # what a change to a cleaning or casting macro does: another version of the logic
        cursor.execute(
            "UPDATE staging.periodos_materializados SET versao = 'regras-antigas' WHERE modelo = 'historic_transformed'"
        )
        # what a crash does to the unlogged historic_cleaned
        cursor.execute("TRUNCATE staging.historic_cleaned")
    started = datetime.now(UTC)
    run_id = materialize()
    assert plan_lines(db, run_id) == {
        "historic_cleaned": ["reconstrução completa (tabela vazia)."],
        "historic_transformed": ["reconstrução completa (regras de limpeza ou conversão alteradas)."],
    }
    assert query(db, "SELECT count(*) FROM staging.historic_cleaned") == rows
    rebuilt = record(db)
    assert sorted(rebuilt) == sorted(built)
    assert all(at > started for _, _, at, _ in rebuilt.values())
    assert query(db, "SELECT DISTINCT versao <> 'regras-antigas' FROM staging.periodos_materializados") == [(True,)]
