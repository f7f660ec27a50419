"""staging.raw is not created again when it would come out the same (pipelines.dbt_views), and
is created again whenever it might not."""

import json

import pytest

from pipelines import dbt, dbt_views
from pipelines.flows import materialize_flow
from tests.conftest import load_csv_period, query, run_flow

NOT_RECREATED = "staging.raw não recriada"


def materialize(db):
    """One run of the materialize flow: (run id, raw's task messages, oid of staging.raw)."""
    state, run_id = run_flow(materialize_flow)
    assert state.is_successful(), state.message
    messages = [
        m
        for (m,) in query(
            db,
            "SELECT mensagem FROM logs.registros WHERE id_execucao = %s AND nome_task = 'dbt_build_staging.raw'",
            (run_id,),
        )
    ]
    [(oid,)] = query(db, "SELECT 'staging.raw'::regclass::oid::bigint")
    return run_id, messages, oid


def recreated(messages) -> bool:
    if any(NOT_RECREATED in m for m in messages):
        assert not any("OK created sql view model staging.raw" in m for m in messages), messages
        return False
    assert any("OK created sql view model staging.raw" in m for m in messages), messages
    return True


def newest_rows(db):
    return query(db, "SELECT ano, mes, count(*) FROM staging.transformed GROUP BY 1, 2")


@pytest.fixture
def built_once(db, settings):
    """2024-05 loaded and materialized: staging.raw created and recorded."""
    load_csv_period(settings, 2024, 5)
    (settings.data_dir / "dbt_target" / "latest" / dbt_views.RECORD_FILE).unlink(missing_ok=True)
    _, messages, oid = materialize(db)
    assert recreated(messages)
    return oid


def test_a_new_period_is_materialized_without_creating_the_view_again(db, settings, built_once):
    load_csv_period(settings, 2024, 9, rows=7)
    _, messages, oid = materialize(db)
    assert not recreated(messages)
    assert oid == built_once
    # the view reads the newest period when queried: the new one reached every model
    assert query(db, "SELECT DISTINCT periodo::text FROM staging.raw") == [("2024-09-01",)]
    assert newest_rows(db) == [(2024, 9, 7)]
    # and the next run finds the same view again
    _, messages, oid = materialize(db)
    assert not recreated(messages) and oid == built_once


def test_a_new_column_of_the_source_creates_the_view_again(db, settings, built_once):
    with db.cursor() as cursor:
        cursor.execute("ALTER TABLE raw.terceirizados ADD COLUMN coluna_nova text")
    try:
        _, messages, oid = materialize(db)
        assert recreated(messages) and oid != built_once
        # select * of the new view has the column
        assert query(
            db,
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'staging' "
            "AND table_name = 'raw' AND column_name = 'coluna_nova'",
        ) == [(1,)]
    finally:
        with db.cursor() as cursor:
            cursor.execute("ALTER TABLE raw.terceirizados DROP COLUMN coluna_nova CASCADE")  # drops staging.raw
    # the view is gone: created again
    _, messages, _ = materialize(db)
    assert recreated(messages)
    assert newest_rows(db) == [(2024, 5, 40)]


def test_a_view_replaced_with_the_same_columns_is_created_again(db, settings, built_once):
    with db.cursor() as cursor:
        # same columns, same oid (CREATE OR REPLACE keeps it), other rows
        cursor.execute("CREATE OR REPLACE VIEW staging.raw AS SELECT * FROM raw.terceirizados WHERE linha_origem < 5")
    assert query(db, "SELECT 'staging.raw'::regclass::oid::bigint") == [(built_once,)]
    _, messages, _ = materialize(db)
    assert recreated(messages)
    assert newest_rows(db) == [(2024, 5, 40)]


def test_another_project_creates_the_view_again(db, settings, built_once, monkeypatch):
    real = dbt._project_fingerprint
    monkeypatch.setattr(dbt, "_project_fingerprint", lambda: "outro-" + real())
    _, messages, _ = materialize(db)
    assert recreated(messages)
    monkeypatch.setattr(dbt, "_project_fingerprint", real)
    _, messages, _ = materialize(db)
    assert recreated(messages)  # the record is the other project's now
    _, messages, _ = materialize(db)
    assert not recreated(messages)


@pytest.mark.parametrize(
    "record",
    [b"{not json", b"[]", b'{"raw": 3}', b'{"raw": {"projeto": "x", "conexao": [], "assinatura": []}}'],
)
def test_a_record_that_cannot_be_trusted_creates_the_view_again(db, settings, built_once, record):
    path = settings.data_dir / "dbt_target" / "latest" / dbt_views.RECORD_FILE
    assert json.loads(path.read_text(encoding="utf-8"))["raw"]["assinatura"][0][0] == built_once
    path.write_bytes(record)
    _, messages, oid = materialize(db)
    assert recreated(messages) and oid != built_once
    assert newest_rows(db) == [(2024, 5, 40)]


@pytest.mark.parametrize("field, other", [(2, "outro_banco"), (3, "outro_usuario")])
def test_a_record_of_another_database_or_user_is_not_trusted(db, settings, built_once, field, other):
    path = settings.data_dir / "dbt_target" / "latest" / dbt_views.RECORD_FILE
    record = json.loads(path.read_text(encoding="utf-8"))
    record["raw"]["conexao"][field] = other
    path.write_text(json.dumps(record), encoding="utf-8")
    _, messages, _ = materialize(db)
    assert recreated(messages)


def test_only_views_that_read_nothing_but_sources_are_candidates(settings):
    manifest = dbt.parsed_manifest(settings, "latest", task_name=None)
    views = dbt_views.source_only_views(manifest, ("raw", "cleaned", "renamed", "transformed"))
    # renamed is a view too, but it reads cleaned (a table the build swaps, which drops it)
    assert views == [dbt_views.SourceOnlyView("raw", "staging.raw", ("raw.terceirizados",))]
    # the last model of a chain is never left out (its task carries the chain's outcome)
    assert dbt_views.source_only_views(manifest, ("raw",)) == []


def test_a_project_edited_during_the_build_leaves_no_record(db, settings, built_once, monkeypatch):
    """The record names the project the build started with: files edited while it ran (a deploy
    under the scheduler) leave the view to dbt next time, even though the next run finds the
    edited files (a record of them would keep the view the build created from the old ones)."""
    real = dbt._project_fingerprint
    calls = []

    def edited_after_the_start():
        calls.append(1)
        return real() if len(calls) == 1 else "editado-" + real()

    record = settings.data_dir / "dbt_target" / "latest" / dbt_views.RECORD_FILE
    record.unlink()
    monkeypatch.setattr(dbt, "_project_fingerprint", edited_after_the_start)
    _, messages, _ = materialize(db)
    assert recreated(messages)
    assert "raw" not in (json.loads(record.read_text(encoding="utf-8")) if record.exists() else {})
    _, messages, _ = materialize(db)  # the edited project: dbt creates the view from it
    assert recreated(messages)


def test_a_view_replaced_by_another_session_during_the_build_is_not_recorded(db, settings, built_once, monkeypatch):
    import psycopg2

    real_snapshot = dbt_views.snapshot

    def replaced_right_after(settings_, view):
        signature = real_snapshot(settings_, view)
        other = psycopg2.connect(**settings_.postgres_dsn())
        with other, other.cursor() as cursor:  # another session, while cleaned & co. are built
            cursor.execute(
                "CREATE OR REPLACE VIEW staging.raw AS SELECT * FROM raw.terceirizados "
                "WHERE periodo = (SELECT max(periodo) FROM raw.terceirizados) AND linha_origem < 12"
            )
        other.close()
        return signature

    (settings.data_dir / "dbt_target" / "latest" / dbt_views.RECORD_FILE).unlink()
    monkeypatch.setattr(dbt_views, "snapshot", replaced_right_after)
    _, messages, _ = materialize(db)
    assert recreated(messages)
    monkeypatch.setattr(dbt_views, "snapshot", real_snapshot)
    # not recorded: the next run creates the view again, from the project, and every row is back
    _, messages, _ = materialize(db)
    assert recreated(messages)
    assert newest_rows(db) == [(2024, 5, 40)]
    _, messages, _ = materialize(db)
    assert not recreated(messages)


def test_a_view_given_to_another_owner_is_created_again(db, settings, built_once):
    import os

    role = f"outro_dono_{os.getpid()}"
    with db.cursor() as cursor:
        cursor.execute(f"DROP ROLE IF EXISTS {role}; CREATE ROLE {role}")
        cursor.execute(f"GRANT USAGE ON SCHEMA raw TO {role}; GRANT SELECT ON raw.terceirizados TO {role}")
        cursor.execute(f"ALTER VIEW staging.raw OWNER TO {role}")
    try:
        _, messages, _ = materialize(db)
        assert recreated(messages)
        assert query(db, "SELECT viewowner FROM pg_views WHERE schemaname = 'staging' AND viewname = 'raw'") == [
            ("postgres",)
        ]
    finally:
        with db.cursor() as cursor:
            cursor.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")


def test_a_view_left_out_cannot_be_changed_until_the_build_has_read_it(db, settings, built_once, monkeypatch):
    """Between the comparison with the record and dbt's reads of the view (cleaned, tests), another
    session's CREATE OR REPLACE waits for the end of the build: the run reads what was compared."""
    import psycopg2

    real_hold = dbt_views.hold_unchanged
    refused = []

    def replaced_right_after_the_check(*args):
        held = real_hold(*args)
        other = psycopg2.connect(**settings.postgres_dsn())
        try:
            with other, other.cursor() as cursor:
                cursor.execute("SET lock_timeout = '500ms'")
                cursor.execute(
                    "CREATE OR REPLACE VIEW staging.raw AS SELECT * FROM raw.terceirizados "
                    "WHERE periodo = (SELECT max(periodo) FROM raw.terceirizados) AND linha_origem < 12"
                )
        except psycopg2.errors.LockNotAvailable:
            refused.append(True)
        finally:
            other.close()
        return held

    monkeypatch.setattr(dbt_views, "hold_unchanged", replaced_right_after_the_check)
    _, messages, oid = materialize(db)
    assert not recreated(messages) and oid == built_once
    assert refused == [True]
    assert newest_rows(db) == [(2024, 5, 40)]
    # released at the end: another session may change it now (and the next build recreates it)
    with db.cursor() as cursor:
        cursor.execute("SET lock_timeout = '2s'; COMMENT ON VIEW staging.raw IS 'outra sessão'")
