"""Configuration: defaults, bad values named in the error, and the CLI exit codes."""

import os
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from pipelines import database
from pipelines.errors import ConfigError
from pipelines.settings import DEFAULT_PORTAL_URL, PROJECT_ROOT, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_work_on_this_machine():
    settings = load_settings({})
    coordinates = (settings.postgres_host, settings.postgres_port, settings.postgres_db)
    assert coordinates == ("127.0.0.1", 5432, "terceirizados")
    assert settings.portal_url == DEFAULT_PORTAL_URL
    assert settings.data_dir == PROJECT_ROOT / "adm_cgu_terceirizados_local"
    assert settings.log_dir == PROJECT_ROOT / "logs"


@pytest.mark.parametrize(
    "env, variable",
    [
        ({"CGU_TERCEIRIZADOS_URL": "www.gov.br/cgu"}, "CGU_TERCEIRIZADOS_URL"),
        ({"CGU_TERCEIRIZADOS_URL": "ftp://gov.br/x"}, "CGU_TERCEIRIZADOS_URL"),
        ({"POSTGRES_PORT": "cinco"}, "POSTGRES_PORT"),
        ({"POSTGRES_PORT": "70000"}, "POSTGRES_PORT"),
        ({"POSTGRES_DB": "dados; DROP TABLE x"}, "POSTGRES_DB"),
        ({"HTTP_TIMEOUT_SECONDS": "-1"}, "HTTP_TIMEOUT_SECONDS"),
        ({"DOWNLOAD_MAX_RETRIES": "muitas"}, "DOWNLOAD_MAX_RETRIES"),
        ({"MAX_NULLED_PERCENT": "nan"}, "MAX_NULLED_PERCENT"),  # float() takes it; no comparison refuses it
        ({"MAX_NULLED_PERCENT": "101"}, "MAX_NULLED_PERCENT"),
        ({"HTTP_DEADLINE_SECONDS": "inf"}, "HTTP_DEADLINE_SECONDS"),
        ({"MAX_ROW_DROP_PERCENT": "NaN"}, "MAX_ROW_DROP_PERCENT"),
        ({"MAX_WRONG_PERIOD_PERCENT": "120"}, "MAX_WRONG_PERIOD_PERCENT"),
    ],
)
def test_bad_values_name_the_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        load_settings(env)


def test_unreachable_database_names_host_and_port():
    settings = load_settings({"POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": "1"})
    with pytest.raises(ConfigError, match="POSTGRES_HOST=127.0.0.1 POSTGRES_PORT=1"):
        database.ensure_schema(settings)


def test_missing_database_is_created(settings):
    name = settings.postgres_db + "_novo"
    fresh = load_settings({**os.environ, "POSTGRES_DB": name})
    admin = psycopg2.connect(**settings.postgres_dsn("postgres"))
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        database.ensure_schema(fresh)
        with database.connection(fresh) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema IN ('raw', 'logs')")
            assert cursor.fetchone() == (5,)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


def run_capture(env_changes):
    env = {**os.environ, **env_changes}
    return subprocess.run(
        [sys.executable, "run/capture.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_cli_exits_2_with_the_variable_on_bad_config():
    result = run_capture({"CGU_TERCEIRIZADOS_URL": "not a url"})
    assert result.returncode == 2
    assert "CGU_TERCEIRIZADOS_URL" in result.stderr and ".env.example" in result.stderr


def test_cli_captures_from_the_portal_in_the_environment(db, fresh_portal):
    expected = fresh_portal.portal.expectations["2024-05"]
    result = run_capture({"CGU_TERCEIRIZADOS_URL": fresh_portal.page_url})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "concluído com sucesso" in result.stdout
    with db.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM raw.terceirizados")
        assert cursor.fetchone() == (expected.loaded_rows,)


def test_cli_exits_1_when_the_flow_fails(db, fresh_portal):
    fresh_portal.faults[fresh_portal.file_path("terceirizados202405.xlsx")] = "404"
    result = run_capture({"CGU_TERCEIRIZADOS_URL": fresh_portal.page_url})
    assert result.returncode == 1
    assert "HTTP 404" in result.stderr


def test_the_command_line_names_the_task_that_failed_once(db, fresh_portal):
    """The page does not answer: the historic capture's console report names
    discover_published_files and its cause, once, not the tasks that could not run after it."""
    from urllib.parse import urlparse

    fresh_portal.faults[urlparse(fresh_portal.page_url).path] = "404"
    env = {**os.environ, "CGU_TERCEIRIZADOS_URL": fresh_portal.page_url}
    result = subprocess.run(
        [sys.executable, "run/historic_capture.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    causes = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert len(causes) == 1 and causes[0].startswith("  - discover_published_files: "), result.stderr
    assert "HTTP 404" in causes[0]
