"""The Dash app's shell: header, navigation, routing, the database banner and the routes
outside Dash. Each page (layout and callbacks) is a module of ``pipelines.results.pages``,
or ``pipelines.results.analyses`` for "Análises"; ``create_app`` registers them.

``create_app`` builds the app for given settings (tests, ``run/results.py``);
``create_server`` is the WSGI entry point for a production server, as the container
runs it: ``waitress-serve --call pipelines.results.app:create_server``.

Every callback and the export tell four cases apart: a request the app cannot answer
(a message in the page, or HTTP 400), the database not answering ("Banco de dados
indisponível", or HTTP 503), a query stopped by the statement timeout, and a database
the pipeline never wrote to ("Nada foi capturado ainda", with the commands that capture).

Besides the Dash pages, the Flask server answers ``/exportar.csv`` (CSV export),
``/saude`` (which process serves the app: start.sh checks it is the one it started) and
``/docs/`` (the dbt documentation generated at the end of each materialization)."""

from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path

from dash import Dash, Input, Output, dcc, html
from flask import Flask, Response, jsonify, redirect, request, send_from_directory

from pipelines.errors import ConfigError, first_line
from pipelines.results import analyses, views
from pipelines.results.export import csv_stream
from pipelines.results.pages import charts, logs, runs, tables
from pipelines.results.pages.common import DB_DOWN, TIMEOUT_MESSAGE
from pipelines.results.protocol import callback_request_problem
from pipelines.results.queries import (
    InvalidRequestError,
    ResultsRepository,
    is_missing_database,
    is_query_timeout,
    make_engine,
)
from pipelines.settings import Settings, load_settings

PAGES = [
    (tables.PATH, "Tabelas"),
    (logs.PATH, "Logs"),
    (runs.PATH, "Execuções"),
    (charts.PATH, "Gráficos"),
    (analyses.PATH, "Análises"),
]
PAGE_LAYOUTS = {
    tables.PATH: tables.layout,
    logs.PATH: logs.layout,
    runs.PATH: runs.layout,
    charts.PATH: charts.layout,
    analyses.PATH: analyses.layout,
}
RETRY_AFTER_SECONDS = 5
APP_NAME = "terceirizados-resultados"  # what /saude answers, with the serving process id
DOCS_PATH = "/docs/"


def _nav() -> html.Nav:
    links = [dcc.Link(label, href=path, className="nav-link", id=f"nav-{path.strip('/')}") for path, label in PAGES]
    # the dbt documentation is a page of its own (not a Dash page): a full page load
    links.append(html.A("Documentação (dbt)", href=DOCS_PATH, className="nav-link", id="nav-docs"))
    return html.Nav(links, className="nav")


def db_down_text(settings: Settings, error: Exception) -> str:
    detail = first_line(getattr(error, "orig", None) or error)
    return (
        f"Banco de dados indisponível em {settings.postgres_host}:{settings.postgres_port}/"
        f"{settings.postgres_db} ({detail})"
    )


def db_down_banner(settings: Settings, error: Exception) -> html.Div:
    return html.Div(
        f"{db_down_text(settings, error)}. Os dados voltam a aparecer quando ele responder; "
        f"nova tentativa a cada {RETRY_AFTER_SECONDS} s.",
        className="banner",
        id="db-down",
    )


def docs_missing_page(folder: Path) -> Response:
    """/docs/ before the first materialization generated the documentation."""
    body = f"""<!doctype html><html lang="pt-BR"><head><meta charset="utf-8">
<title>Documentação do dbt · Terceirizados</title><link rel="stylesheet" href="/assets/style.css"></head>
<body><header><h1>Terceirizados de Órgãos Federais</h1><nav class="nav"><a class="nav-link" href="/tabelas">Voltar
aos resultados</a></nav></header><main><div class="empty" id="docs-missing">
<p><strong>A documentação do dbt ainda não foi gerada.</strong></p>
<p>Ela é gerada ao fim de cada materialização. Para gerá-la, rode:</p>
<pre>.venv/bin/python run/materialize.py</pre>
<p>(ou <code>./start.sh</code>, que captura e materializa o período mais recente). Os arquivos ficam em
<code>{folder}</code>.</p></div></main></body></html>"""
    return Response(body, status=404, mimetype="text/html")


def _plain(text: str, status: int, **headers) -> Response:
    return Response(text + "\n", status=status, mimetype="text/plain", headers=headers)


def _json_parameter(name: str, default):
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidRequestError(f"o parâmetro {name} não é um JSON válido") from None


def _guard_callback_requests(app: Dash) -> None:
    """Malformed Dash callback requests get 400 with the reason instead of a 500."""
    dispatch_path = app.config.routes_pathname_prefix + "_dash-update-component"

    @app.server.before_request
    def check_callback_request():
        if request.path != dispatch_path or request.method != "POST":
            return None
        try:
            body = request.get_json(silent=True)
        except RecursionError:
            body = None
        problem = callback_request_problem(body, app.callback_map)
        return _plain(f"Requisição inválida: {problem}.", 400) if problem else None

    @app.server.errorhandler(InvalidRequestError)
    def invalid_request(error):  # a safety net: each callback handles its own
        return _plain(f"Requisição inválida: {error}.", 400)


def _serve_docs(app: Dash, settings: Settings) -> None:
    """The dbt documentation (index.html, manifest.json, catalog.json) under /docs/. The
    page fetches manifest.json and catalog.json relative to itself, so /docs redirects to
    /docs/."""

    @app.server.route("/docs")
    def docs_without_slash():
        return redirect(DOCS_PATH, code=308)

    @app.server.route(DOCS_PATH, defaults={"name": "index.html"})
    @app.server.route(DOCS_PATH + "<name>")
    def docs(name):
        from pipelines.dbt import DOCS_FILES, docs_path  # on first use: pipelines.dbt brings in prefect

        if name not in DOCS_FILES:
            return _plain("Arquivo inexistente na documentação do dbt.", 404)
        where = docs_path(settings)
        if not (where / "index.html").is_file():
            return docs_missing_page(where)
        response = send_from_directory(where, name, max_age=0)
        response.headers["Cache-Control"] = "no-cache"  # a new materialization regenerates them
        return response


def _where(settings: Settings) -> str:
    """The database the app reads, as the "nothing captured" notice names it."""
    return f"{settings.postgres_db} em {settings.postgres_host}:{settings.postgres_port}"


def _serve_health(app: Dash) -> None:
    """``/saude``: which process serves the app."""

    @app.server.route("/saude")
    def health_check():
        """Which process serves the app (start.sh checks that it is the one it started)."""
        return jsonify(app=APP_NAME, pid=os.getpid())


def _serve_table_export(app: Dash, settings: Settings, repo: ResultsRepository) -> None:
    """``/exportar.csv``: the export of the "Tabelas" page."""
    where = _where(settings)

    @app.server.route("/exportar.csv")
    def export_csv():
        """The filtered and sorted rows of a table as CSV (text cells made formula-safe)."""
        try:
            schema, table = views.split_key(request.args.get("tabela", ""))
            rows = repo.export_rows(schema, table, _json_parameter("ordem", None), _json_parameter("filtro", None))
            header = next(rows)
            # the first row runs the query, so that an outage or timeout at the start
            # still gets its own status instead of a cut-off download
            first = list(itertools.islice(rows, 1))
        except InvalidRequestError as error:
            return _plain(f"Exportação inválida: {error}.", 400)
        except DB_DOWN as error:
            if is_missing_database(error, settings.postgres_db):
                return _plain(views.nothing_captured_text(where), 404)
            text = (
                TIMEOUT_MESSAGE
                if is_query_timeout(error)
                else (f"{db_down_text(settings, error)}. Tente a exportação de novo em instantes.")
            )
            return _plain(text, 503, **{"Retry-After": str(RETRY_AFTER_SECONDS)})
        response = Response(
            csv_stream(header, itertools.chain(first, rows)),
            mimetype="text/csv; charset=utf-8",
            headers={"Content-Disposition": f"attachment; filename={schema}.{table}.csv"},
        )
        response.call_on_close(rows.close)  # an aborted download frees its connection at once
        return response


def create_app(settings: Settings, repo: ResultsRepository | None = None) -> Dash:
    """The shell (header, navigation, routing, database banner, routes outside Dash) and
    every page's callbacks."""
    repo = repo or ResultsRepository(make_engine(settings))
    app = Dash(
        __name__, title="Terceirizados · resultados", update_title="Atualizando...", suppress_callback_exceptions=True
    )
    _guard_callback_requests(app)
    _serve_docs(app, settings)
    _serve_health(app)
    where = _where(settings)

    app.layout = html.Div(
        [
            dcc.Location(id="url"),
            dcc.Interval(id="health-interval", interval=5000),
            html.Header([html.H1("Terceirizados de Órgãos Federais"), _nav()]),
            html.Div(id="db-banner"),
            html.Main(id="page"),
        ]
    )

    @app.callback(Output("page", "children"), Input("url", "pathname"))
    def render_page(pathname):
        return PAGE_LAYOUTS.get(pathname if isinstance(pathname, str) else "/", tables.layout)()

    @app.callback(Output("db-banner", "children"), Input("health-interval", "n_intervals"), Input("url", "pathname"))
    def health(_n, _path):
        try:
            captured = repo.captured_anything()
        except DB_DOWN as error:
            if is_missing_database(error, settings.postgres_db):
                return views.nothing_captured(where)
            return db_down_banner(settings, error)
        return None if captured else views.nothing_captured(where)

    for page in (tables, logs, runs, charts):
        page.register_callbacks(app, repo, database=settings.postgres_db)
    _serve_table_export(app, settings, repo)
    analyses.register_callbacks(app, repo)
    return app


def create_server() -> Flask:
    """WSGI application for a production server, from the environment's settings
    (``waitress-serve --call pipelines.results.app:create_server``)."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"Erro de configuração: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return create_app(settings).server
