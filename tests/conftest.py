"""Test session: its own PostgreSQL database (one per pytest-xdist worker), temporary data/log
folders and a small synthetic CGU portal served on 127.0.0.1."""

import os
import tempfile
from pathlib import Path

# Configure before any pipelines module reads the environment.
_work = Path(tempfile.mkdtemp(prefix="terceirizados-tests-"))
# One database per pytest-xdist worker (gw0, gw1, ...): the workers never share tables or locks.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
_database = os.environ.get("TEST_POSTGRES_DB", "terceirizados_test")
os.environ["POSTGRES_DB"] = f"{_database}_{_worker}" if _worker else _database
os.environ.setdefault("POSTGRES_HOST", "127.0.0.1")
os.environ.setdefault("POSTGRES_PORT", "5432")
os.environ.setdefault("POSTGRES_USER", "postgres")
os.environ["DATA_DIR"] = str(_work / "data")
os.environ["LOG_DIR"] = str(_work / "logs")
os.environ["HTTP_TIMEOUT_SECONDS"] = "1.5"
os.environ["DOWNLOAD_MAX_RETRIES"] = "2"
os.environ["DOWNLOAD_RETRY_DELAY_SECONDS"] = "0"
os.environ["CGU_TERCEIRIZADOS_URL"] = "http://127.0.0.1:9/nao-usado-nos-testes"

import psycopg2  # noqa: E402
import pytest  # noqa: E402

from bench.dbtools import drop_database  # noqa: E402
from bench.portal_generator import PortalServer, build_portal  # noqa: E402
from pipelines import database  # noqa: E402
from pipelines.constants import SOURCE_COLUMNS  # noqa: E402
from pipelines.runner import execute  # noqa: E402
from pipelines.settings import load_settings  # noqa: E402
from tests.browser import launched_chromium  # noqa: E402

# The longest modules first, so that with several workers (pytest-xdist, --dist loadfile) none
# is left running one of them alone at the end.
LONGEST_FIRST = (
    "test_incremental.py",
    "test_incremental_failures.py",
    "test_marts.py",
    "test_results.py",
    "test_pipeline_flow.py",
    "test_materialize.py",
    "test_analyses.py",
    "test_start_scripts.py",
    "test_concurrency.py",
)


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each module keeps its own order


@pytest.fixture(scope="session")
def settings():
    settings = load_settings()
    assert "test" in settings.postgres_db, "os testes só rodam num banco de teste"
    drop_database(settings, settings.postgres_db)
    database.ensure_schema(settings)
    return settings


def emptied_connection(settings):
    """An autocommit connection to the test database, with the pipeline's tables emptied."""
    database.ensure_schema(settings)
    conn = psycopg2.connect(**settings.postgres_dsn())
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(
            "TRUNCATE raw.terceirizados, raw.terceirizados_quarentena, raw.capturas, logs.registros, logs.execucoes"
        )
    return conn


@pytest.fixture
def db(settings):
    """A connection to the test database, with the pipeline tables emptied first."""
    conn = emptied_connection(settings)
    yield conn
    conn.close()


def query(conn, text, params=None):
    with conn.cursor() as cursor:
        cursor.execute(text, params)
        return cursor.fetchall()


@pytest.fixture(scope="session")
def portal(tmp_path_factory):
    """The default small portal: 2019-01 (no header), 2021-01 (BOM), 2022-05 (cp1252),
    2023-09 (UTF-8), 2024-05 (XLSX), 60 rows each."""
    built = build_portal(tmp_path_factory.mktemp("portal"), rows=60)
    server = PortalServer(built).start()
    yield server
    server.shutdown()


@pytest.fixture
def fresh_portal(portal):
    """The session portal with its faults and page override reset."""
    portal.faults.clear()
    portal.hits.clear()
    portal.page_override = None
    yield portal
    portal.faults.clear()
    portal.page_override = None


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, for the browser tests of the results app."""
    with launched_chromium() as launched:
        yield launched


def run_flow(flow, executor=None, **parameters):
    return execute(flow, load_settings(), parameters, executor)


CSV_ROW = dict(
    zip(
        SOURCE_COLUMNS,
        [
            "7100000", "MCOM", "413007", "AGENCIA", "ANATEL-PE", "113/2016", "19232342000165", "EMPRESA",
            "***.567.058-**", "ANTONIO", "517330 - VIGILANTE", "ENSINO MEDIO COMPLETO", "44", "ANATEL PE",
            "2524,37", "5838,10", "5", "MAIO", "2024", "ANATEL", "AGENCIA NACIONAL", "41231", "41231",
        ],
        strict=True,
    )
)  # fmt: skip
ROWS = 40  # rows of load_csv_period's files


def load_csv_period(settings, year, month, changed=None, how_many=ROWS, rows=ROWS):
    """Load a CSV of ``rows`` rows for (year, month) into raw.terceirizados as the capture does;
    ``changed``: {column: value} written in the first ``how_many`` rows."""
    import hashlib
    from datetime import UTC, datetime

    from bench.portal_generator import HEADER
    from pipelines import capture, storage
    from pipelines.download import DownloadedFile
    from pipelines.parse import parse_for_load
    from pipelines.portal import PublishedFile

    lines = [";".join(HEADER)]
    for number in range(rows):
        row = {**CSV_ROW, "id_terc": str(7100000 + number), "mes_carga": "", "num_mes_carga": str(month)}
        row["ano_carga"] = str(year)
        if changed and number < how_many:
            row.update(changed)
        lines.append(";".join(row[name] for name in SOURCE_COLUMNS))
    content = ("\n".join(lines) + "\n").encode()
    published = PublishedFile(year, month, f"http://h/terceirizados{year}{month:02d}.csv", "csv")
    downloaded = DownloadedFile(published, content, hashlib.sha256(content).hexdigest(), None, None, datetime.now(UTC))
    parsed = parse_for_load(content, "csv", published.file_name)
    capture.load_parsed(settings, storage.save_csv(settings.data_dir, parsed, downloaded), parsed, downloaded, None)
