"""HTTP failures: which are retried, which fail at once, and with what message."""

import socket

import pytest

from pipelines.download import HttpLimits, download_file, fetch_page
from pipelines.errors import DownloadError, TransientDownloadError
from pipelines.portal import PublishedFile


def published(server, name="terceirizados202405.xlsx", fmt="xlsx"):
    return PublishedFile(2024, 5, server.base_url + server.file_path(name), fmt)


def test_download_keeps_bytes_and_checksum(fresh_portal):
    import hashlib

    downloaded = download_file(published(fresh_portal), HttpLimits(timeout=5))
    content = (fresh_portal.root / "cgu/terceirizados/arquivos/terceirizados202405.xlsx").read_bytes()
    assert downloaded.content == content
    assert downloaded.sha256 == hashlib.sha256(content).hexdigest()
    assert downloaded.last_modified  # http.server sends Last-Modified for files


@pytest.mark.parametrize(
    "fault, error, message",
    [
        ("404", DownloadError, "não encontrado \\(HTTP 404\\)"),
        ("html", DownloadError, "página HTML em vez do arquivo"),
        ("500", TransientDownloadError, "HTTP 500"),
        ("truncated", TransientDownloadError, "truncado"),
        ("timeout", TransientDownloadError, "Tempo esgotado"),
    ],
)
def test_failures_are_classified(fresh_portal, fault, error, message):
    target = published(fresh_portal)
    fresh_portal.faults[fresh_portal.file_path("terceirizados202405.xlsx")] = fault
    with pytest.raises(error, match=message) as raised:
        download_file(target, HttpLimits(timeout=1))
    transient = isinstance(raised.value, TransientDownloadError)
    assert transient == (fault in ("500", "truncated", "timeout"))


def test_dead_server_is_a_transient_connection_failure():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransientDownloadError, match="Falha de conexão"):
        fetch_page(f"http://127.0.0.1:{port}/terceirizados", HttpLimits(timeout=1))


def test_xlsx_that_is_not_a_zip_is_rejected(fresh_portal):
    wrong = PublishedFile(2023, 9, fresh_portal.base_url + fresh_portal.file_path("terceirizados202309.csv"), "xlsx")
    with pytest.raises(DownloadError, match="não é um XLSX válido"):
        download_file(wrong, HttpLimits(timeout=5))
