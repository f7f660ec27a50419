"""HTTP with timeouts and integrity checks.

Errors are split in two kinds so Prefect retries only what can succeed later:
``TransientDownloadError`` (connection refused, timeout, 5xx, truncated body)
and ``DownloadError`` (404 and other 4xx, an HTML page instead of a data file).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

import requests

from pipelines.errors import DownloadError, TransientDownloadError
from pipelines.portal import PublishedFile

logger = logging.getLogger("pipelines.download")

USER_AGENT = "adm_cgu_terceirizados/1.0 (+https://github.com/; pipeline de dados abertos)"
HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<body")
XLSX_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class DownloadedFile:
    """A data file kept in memory, with what is needed to trace it back."""

    published: PublishedFile
    content: bytes = field(repr=False)
    sha256: str
    etag: str | None
    last_modified: str | None
    downloaded_at: datetime


def _get(url: str, timeout: float, headers: dict | None = None) -> requests.Response:
    try:
        response = requests.get(url, timeout=timeout, headers={"User-Agent": USER_AGENT, **(headers or {})})
    except requests.exceptions.Timeout as exc:
        raise TransientDownloadError(f"Tempo esgotado ({timeout:g} s) ao acessar {url}: {exc}") from exc
    except requests.exceptions.ConnectionError as exc:
        # urllib3 reports a body shorter than Content-Length as a broken connection.
        if "IncompleteRead" in str(exc) or "incomplete" in str(exc).lower():
            raise TransientDownloadError(f"Download truncado de {url}: {exc}") from exc
        raise TransientDownloadError(f"Falha de conexão ao acessar {url}: {exc}") from exc
    except requests.exceptions.ChunkedEncodingError as exc:
        raise TransientDownloadError(f"Download truncado de {url}: {exc}") from exc
    except requests.exceptions.RequestException as exc:
        raise DownloadError(f"Requisição inválida para {url}: {exc}") from exc
    if response.status_code >= 500:
        raise TransientDownloadError(f"O servidor respondeu HTTP {response.status_code} para {url}.")
    if response.status_code == 404:
        raise DownloadError(f"Arquivo não encontrado (HTTP 404): {url}.")
    if response.status_code >= 400:
        raise DownloadError(f"O servidor recusou o pedido (HTTP {response.status_code}): {url}.")
    return response


def _check_complete(response: requests.Response, url: str) -> None:
    expected = response.headers.get("Content-Length")
    encoding = response.headers.get("Content-Encoding", "identity")
    if expected is not None and encoding == "identity" and expected.isdigit():
        if int(expected) != len(response.content):
            raise TransientDownloadError(
                f"Download truncado de {url}: recebidos {len(response.content)} de {expected} bytes."
            )


def fetch_page(url: str, timeout: float) -> str:
    """Return the HTML of the portal page."""
    response = _get(url, timeout)
    _check_complete(response, url)
    response.encoding = response.encoding or "utf-8"
    return response.text


def looks_like_html(content: bytes) -> bool:
    head = content[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith(HTML_MARKERS)


def download_file(published: PublishedFile, timeout: float, etag: str | None = None,
                  last_modified: str | None = None) -> DownloadedFile | None:
    """Download one published file into memory and check that it is whole and a data file.

    With ``etag``/``last_modified`` of a previous download the request is conditional,
    and ``None`` is returned when the server answers 304 Not Modified.
    """
    url = published.url
    logger.info("Realizando o download do arquivo %s (%s)...", url, published.label)
    conditions = {}
    if etag:
        conditions["If-None-Match"] = etag
    if last_modified:
        conditions["If-Modified-Since"] = last_modified
    response = _get(url, timeout, conditions)
    if response.status_code == 304:
        logger.info("Arquivo %s não mudou desde a última captura (HTTP 304).", url)
        return None
    _check_complete(response, url)
    content = response.content
    content_type = response.headers.get("Content-Type", "").lower()
    if not content:
        raise DownloadError(f"O servidor devolveu um arquivo vazio para {url}.")
    if "text/html" in content_type or looks_like_html(content):
        raise DownloadError(
            f"O servidor devolveu uma página HTML em vez do arquivo de dados {url} "
            "(página de erro ou manutenção do portal)."
        )
    if published.format == "xlsx" and not content.startswith(XLSX_MAGIC):
        raise DownloadError(f"O arquivo {url} não é um XLSX válido (assinatura ZIP ausente).")
    digest = hashlib.sha256(content).hexdigest()
    logger.info("Download concluído: %s (%d bytes, sha256 %s).", url, len(content), digest[:12])
    return DownloadedFile(
        published=published,
        content=content,
        sha256=digest,
        etag=response.headers.get("ETag"),
        last_modified=response.headers.get("Last-Modified"),
        downloaded_at=datetime.now(timezone.utc),
    )
