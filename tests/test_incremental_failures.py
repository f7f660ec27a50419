"""Incremental historic models when something goes wrong or changes around them: a failed
check, a failed rebuild, another project or a relation dropped by hand (split from
test_incremental.py so the two halves run on separate workers)."""

import pytest

from pipelines import dbt
from pipelines.settings import load_settings
from tests.conftest import query
from tests.test_incremental import (
    CHAIN,
    MODELS,
    capture_every_period,
    digest,
    materialize,
    plan_lines,
    record,
    row_versions,
    skipped_builds,
)


@pytest.fixture
def captured(db, fresh_portal):
    return capture_every_period(db, fresh_portal)


def test_a_failed_check_is_run_again_until_the_period_passes(db, captured):
    materialize()
    before = digest(db, "staging.historic_transformed")
    with db.cursor() as cursor:  # a period in a month the CGU never publishes: accepted_values(mes) fails
        cursor.execute("CREATE TEMPORARY TABLE marco AS SELECT * FROM raw.terceirizados WHERE periodo = '2024-05-01'")
        cursor.execute("UPDATE marco SET periodo = '2024-03-01', capturado_em = now()")
        cursor.execute("INSERT INTO raw.terceirizados SELECT * FROM marco")
    for _ in range(2):  # the failure is not forgotten: the period is rebuilt and checked again
        run_id = materialize(expect_success=False)
        assert plan_lines(db, run_id)["historic_transformed"] == ["1 período(s) a reconstruir (2024-03), 0 a remover."]
        errors = " ".join(
            m
            for (m,) in query(
                db, "SELECT mensagem FROM logs.registros WHERE id_execucao = %s AND nivel = 'ERROR'", (run_id,)
            )
        )
        # checked in the model's transaction (verify_before_commit), on the rebuilt period only:
        # the period's rows and its record are never published
        assert "verificação accepted_values (mes) falhou em staging.historic_transformed (1 resultado(s)" in errors
        assert "2024-03" not in record(db)
        assert digest(db, "staging.historic_transformed") == before
    with db.cursor() as cursor:
        cursor.execute("DELETE FROM raw.terceirizados WHERE periodo = '2024-03-01'")
    run_id = materialize()
    # never published, so nothing to remove
    assert plan_lines(db, run_id)["historic_transformed"] == ["0 período(s) a reconstruir, 0 a remover."]
    assert query(db, "SELECT DISTINCT mes FROM staging.historic_transformed ORDER BY 1") == [(1,), (5,), (9,)]
    assert digest(db, "staging.historic_transformed") == before


def test_a_failed_rebuild_keeps_the_previous_rows_of_the_period(db, captured):
    materialize()
    before, built = digest(db, "staging.historic_transformed"), record(db)
    with db.cursor() as cursor:  # a new capture of 2023-09 with a duplicated worker id: the key refuses it
        cursor.execute(
            "UPDATE raw.terceirizados SET capturado_em = now(), id_terc = CASE WHEN linha_origem = "
            "(SELECT max(linha_origem) FROM raw.terceirizados WHERE periodo = '2023-09-01') THEN "
            "(SELECT min(id_terc) FROM raw.terceirizados WHERE periodo = '2023-09-01') ELSE id_terc END "
            "WHERE periodo = '2023-09-01'"
        )
    run_id = materialize(expect_success=False)
    assert plan_lines(db, run_id)["historic_transformed"] == ["1 período(s) a reconstruir (2023-09), 0 a remover."]
    # one transaction: the delete of the period was undone with the failed insert, and its record too
    assert digest(db, "staging.historic_transformed") == before
    assert record(db) == built


def test_dbt_runs_again_when_the_project_or_a_relation_changed(db, captured, monkeypatch):
    materialize()
    assert skipped_builds(db, materialize()) == CHAIN
    versions = row_versions(db)
    # another version of the project (a macro, a test, dbt itself): dbt decides
    monkeypatch.setattr(dbt, "_project_fingerprint", lambda: "outro-projeto")
    run_id = materialize()
    assert skipped_builds(db, run_id) == []
    assert plan_lines(db, run_id) == {model: ["0 período(s) a reconstruir, 0 a remover."] for model in MODELS}
    assert skipped_builds(db, materialize()) == CHAIN
    # a view dropped by hand is built again
    with db.cursor() as cursor:
        cursor.execute("DROP VIEW staging.historic_renamed")
    assert skipped_builds(db, materialize()) == []
    assert query(db, "SELECT to_regclass('staging.historic_renamed') IS NOT NULL") == [(True,)]
    # a build of historic_cleaned that started and never ended (the process died): it and
    # every build after it are left to dbt, the ones before it too (the chain is rebuilt)
    dbt._mark_historic_build(load_settings(), "historic_cleaned", built=False)
    assert sorted(dbt._read_marker(load_settings())["modelos"]) == ["historic_raw"]
    assert skipped_builds(db, materialize()) == []
    assert skipped_builds(db, materialize()) == CHAIN
    assert row_versions(db) == versions


def test_a_primary_key_on_other_columns_fails_the_build_instead_of_passing_for_the_key(db, captured):
    """The flows' builds leave out the unique and not-null tests of (ano, mes, id_terceirizado):
    the key answers them. A key altered by hand to other columns would not (a repeated id with
    another cost would be published and its period marked verified): the build fails instead."""
    materialize()
    before = digest(db, "staging.historic_transformed")
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'staging.historic_transformed'::regclass "
            "AND contype = 'p'"
        )
        [(key,)] = cursor.fetchall()
        cursor.execute(
            f"ALTER TABLE staging.historic_transformed DROP CONSTRAINT {key}, "
            "ADD CONSTRAINT outra_chave PRIMARY KEY (ano, mes, id_terceirizado, valor_custo_mensal)"
        )
        # a new capture of 2024-05 in which two rows share an id (with different costs)
        cursor.execute(
            "UPDATE raw.terceirizados SET capturado_em = now(), "
            "id_terc = CASE WHEN linha_origem = (SELECT max(linha_origem) FROM raw.terceirizados "
            "WHERE periodo = '2024-05-01') THEN (SELECT min(id_terc) FROM raw.terceirizados "
            "WHERE periodo = '2024-05-01') ELSE id_terc END WHERE periodo = '2024-05-01'"
        )
    try:
        run_id = materialize(expect_success=False)
        errors = " ".join(
            m
            for (m,) in query(
                db, "SELECT mensagem FROM logs.registros WHERE id_execucao = %s AND nivel = 'ERROR'", (run_id,)
            )
        )
        assert (
            "a chave primária de staging.historic_transformed é (ano, id_terceirizado, mes, valor_custo_mensal), "
            "não (ano, mes, id_terceirizado): a tabela foi alterada fora do pipeline"
        ) in errors
        assert digest(db, "staging.historic_transformed") == before  # the new capture of 2024-05 is not published
        assert query(
            db,
            "SELECT count(*) FROM staging.periodos_materializados WHERE modelo = 'historic_transformed' "
            "AND periodo = '2024-05-01' AND capturado_em = (SELECT max(capturado_em) FROM raw.terceirizados)",
        ) == [(0,)]
    finally:  # the key of the model again (this database serves the next tests of the worker)
        with db.cursor() as cursor:
            cursor.execute(
                "ALTER TABLE staging.historic_transformed DROP CONSTRAINT outra_chave, "
                "ALTER COLUMN valor_custo_mensal DROP NOT NULL, ADD PRIMARY KEY (ano, mes, id_terceirizado)"
            )
