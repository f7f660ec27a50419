"""The offline demo portal: the synthetic CGU portal as a web server (the page, with years
as <h3>, months as ``a.internal-link`` and the real page's noise, and its files, with
failures on demand) and the small sample portal it serves with ``--amostra``.

Used by the tests, the benchmark and the offline demo (``--amostra``), which serves the
sample portal shipped as package data in ``pipelines/demo/portal`` (declared in
pyproject.toml, so an installed package carries it). The files themselves are made by
``bench/portal_generator.py``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pipelines.constants import MONTH_NAMES

logger = logging.getLogger("pipelines.demo")

PAGE_PATH = "/cgu/terceirizados"
FILES_PATH = "/cgu/terceirizados/arquivos"
SAMPLE_PORTAL_DIR = Path(__file__).resolve().parent / "portal"
SAMPLE_OPTION = "--amostra"


@dataclass
class PeriodSpec:
    """One published file of the synthetic portal."""

    year: int
    month: int
    file_name: str
    format: str = "csv"  # csv | xlsx
    encoding: str = "utf-8"  # utf-8 | utf-8-sig | cp1252
    header: bool = True
    decimal_comma: bool = False
    crlf: bool = False
    quirk_rows: bool = True  # shifted/short rows (CSV) or a stray cell (XLSX)
    rows: int | None = None  # overrides the portal's rows per period

    @property
    def label(self) -> str:
        return f"{self.year}-{self.month:02d}"


def render_page(specs: list[PeriodSpec], base_url: str) -> str:
    """The portal page: years as <h3>, months as a.internal-link, with the real page's noise."""
    by_year: dict[int, list[PeriodSpec]] = {}
    for spec in specs:
        by_year.setdefault(spec.year, []).append(spec)
    parts = [
        "<html><head><meta charset='utf-8'><title>Terceirizados — CGU</title></head><body>",
        "<div id='content-core'><p>Dados abertos sobre terceirizados de órgãos federais.</p>",
        f"<p><a class='internal-link' href='{FILES_PATH}/dicionario-de-dados-terceirizados.pdf'>"
        "Dicionário de dados</a></p>",
    ]
    years = sorted(by_year, reverse=True)
    for position, year in enumerate(years):
        if position == 1:
            parts.append("<h3> </h3>")  # the empty heading of the real page
        parts.append(f"<h3>{year}</h3><ul>")
        for spec in sorted(by_year[year], key=lambda s: s.month, reverse=True):
            # absolute links like the real page, except 2019 (relative)
            href = f"{FILES_PATH}/{spec.file_name}" if year == 2019 else f"{base_url}{FILES_PATH}/{spec.file_name}"
            parts.append(f"<li><a class='internal-link' href='{href}'>{MONTH_NAMES[spec.month].title()}</a></li>")
            if spec.label == "2019-09":  # the same period under a second file name
                parts.append(
                    f"<li><a class='internal-link' href='{FILES_PATH}/terceirizados201909.csv'>Setembro</a></li>"
                )
        parts.append("</ul>")
        if position == len(years) - 1:  # a year block repeated
            parts.append(
                f"<h3>{year}</h3><ul><li><a class='internal-link' "
                f"href='{FILES_PATH}/{by_year[year][0].file_name}'>"
                f"{MONTH_NAMES[by_year[year][0].month].title()}</a></li></ul>"
            )
    parts.append("</div></body></html>")
    return "\n".join(parts)


@dataclass
class Portal:
    root: Path
    specs: list[PeriodSpec]
    expectations: dict  # label -> what the period should load (bench.portal_generator.PeriodExpectation)


class PortalHandler(SimpleHTTPRequestHandler):
    """Serves the page and files; ``server.faults`` maps a path to a failure to simulate:
    ``404``, ``500``, ``timeout``, ``truncated``, ``html``, ``drop`` (close the connection) or
    ``("redirect", address)`` (302 to ``address``)."""

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):  # noqa: N802 (http.server naming)
        path = self.path.split("?")[0]
        server = self.server
        server.hits[path] = server.hits.get(path, 0) + 1
        fault = server.faults.get(path)
        if isinstance(fault, list):  # a sequence of faults, one per request, then normal
            fault = fault.pop(0) if fault else None
        if isinstance(fault, tuple) and fault[0] == "redirect":
            self.send_response(302)
            self.send_header("Location", fault[1])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if fault == "timeout":
            time.sleep(server.timeout_sleep)
            fault = "500"
        if fault in ("404", "500", "503"):
            self.send_error(int(fault))
            return
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if fault == "html" or path == PAGE_PATH:
            if fault == "html":
                body = b"<!DOCTYPE html><html><body>Manutencao programada</body></html>"
            else:
                body = server.page_html().encode("utf-8")
            self._send(body, "text/html; charset=utf-8")
            return
        if fault == "truncated":
            target = Path(server.root) / path.lstrip("/")
            body = target.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        super().do_GET()

    def _send(self, body: bytes, content_type: str):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class PortalServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, portal: Portal, host: str = "127.0.0.1", port: int = 0):
        super().__init__((host, port), partial(PortalHandler, directory=str(portal.root)))
        self.root = portal.root
        self.portal = portal
        self.faults: dict[str, object] = {}
        self.hits: dict[str, int] = {}
        self.timeout_sleep = 3.0
        self.page_override: str | None = None

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def page_url(self) -> str:
        return self.base_url + PAGE_PATH

    def file_path(self, file_name: str) -> str:
        return f"{FILES_PATH}/{file_name}"

    def page_html(self) -> str:
        return self.page_override if self.page_override is not None else render_page(self.portal.specs, self.base_url)

    def start(self) -> PortalServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self


def load_portal(root: Path) -> Portal:
    """A portal written by ``bench.portal_generator.build_portal`` (its specs.json lists the files)."""
    specs = [PeriodSpec(**item) for item in json.loads((root / "specs.json").read_text())]
    return Portal(root, specs, {})


def add_sample_option(parser) -> None:
    parser.add_argument(
        SAMPLE_OPTION,
        action="store_true",
        dest="amostra",
        help="usa o portal de exemplo do repositório, servido em 127.0.0.1 (sem internet)",
    )


def serve_sample_if_asked(args, port: int = 0) -> PortalServer | None:
    """With --amostra, serve the sample portal and point CGU_TERCEIRIZADOS_URL at it."""
    if not getattr(args, "amostra", False):
        return None
    server = PortalServer(load_portal(SAMPLE_PORTAL_DIR), port=port).start()
    os.environ["CGU_TERCEIRIZADOS_URL"] = server.page_url
    print(f"Usando o portal de exemplo em {server.page_url} (dados sintéticos, não oficiais).", flush=True)
    return server
