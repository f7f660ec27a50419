"""What the browser tests share: Debian's Chromium driven by Playwright, a Dash app served on a
free port, and waiting for a text on the page."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def launched_chromium():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Chromium do Debian ausente: rode `make test` (instala o pacote chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def serve(app):
    """A Dash app on 127.0.0.1 (a free port) while the block runs; yields its URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def wait_text(page, selector, text, timeout=None):
    """Until the element's visible text contains ``text`` (Playwright's timeout by default)."""
    page.wait_for_function(
        "([s, t]) => { const e = document.querySelector(s); return e && e.innerText.includes(t); }",
        arg=[selector, text],
        **({"timeout": timeout} if timeout else {}),
    )
