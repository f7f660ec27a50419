"""HTTP with a per-read timeout, a total deadline, size limits and integrity checks.

Errors are split in two kinds so Prefect retries only what can succeed later:
``TransientDownloadError`` (connection refused, timeout, deadline, 5xx, a body shorter
or longer than its Content-Length) and ``DownloadError`` (404 and other 4xx, an HTML page
instead of a data file, a file above MAX_DOWNLOAD_MB, a corrupt XLSX or one that would
decompress past MAX_XLSX_UNCOMPRESSED_MB).

Every request is streamed: the body is read in chunks against the monotonic clock and
the size limit, and a watchdog shuts the connection down when the total deadline
passes, so neither headers nor a body sent one byte at a time can outlive it. Requests
ask for ``Connection: close`` and an uncompressed body: after the declared
Content-Length the connection must end, and a byte that still arrives means the server
sent more than it declared (urllib3 would silently drop it).
"""

from __future__ import annotations

import hashlib
import http.client
import io
import logging
import socket
import struct
import threading
import time
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urljoin, urlparse

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from pipelines.errors import DownloadError, TransientDownloadError
from pipelines.portal import PublishedFile, printable

logger = logging.getLogger("pipelines.download")

USER_AGENT = "adm_cgu_terceirizados/1.0 (+https://github.com/; pipeline de dados abertos)"
HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<body")
XLSX_MAGIC = b"PK\x03\x04"
MEGABYTE = 1024 * 1024
CHUNK_SIZE = 64 * 1024


@dataclass(frozen=True)
class HttpLimits:
    """What one HTTP request may cost, and where its redirects may lead.

    ``timeout``: seconds without a byte (HTTP_TIMEOUT_SECONDS); ``deadline``: seconds for
    the whole request, headers and body (HTTP_DEADLINE_SECONDS); ``max_bytes``: largest
    body (MAX_DOWNLOAD_MB); ``max_xlsx_uncompressed_bytes``: largest decompressed XLSX
    (MAX_XLSX_UNCOMPRESSED_MB); ``redirect_hosts``: the hosts a redirect may lead to besides
    the requested address's own (the portal page's and PORTAL_ALLOWED_HOSTS, as for the
    page's links; None: any host)."""

    timeout: float = 60.0
    deadline: float = 900.0
    max_bytes: int = 500 * MEGABYTE
    max_xlsx_uncompressed_bytes: int = 1024 * MEGABYTE
    redirect_hosts: frozenset[str] | None = None

    @classmethod
    def from_settings(cls, settings) -> HttpLimits:
        hosts = [urlparse(settings.portal_url).hostname or "", *settings.portal_allowed_hosts]
        return cls(
            timeout=settings.http_timeout_seconds,
            deadline=settings.http_deadline_seconds,
            max_bytes=settings.max_download_bytes,
            max_xlsx_uncompressed_bytes=settings.max_xlsx_uncompressed_bytes,
            redirect_hosts=frozenset(host.lower() for host in hosts if host),
        )


def as_limits(limits: HttpLimits | float) -> HttpLimits:
    """``limits`` itself, or default limits with ``limits`` seconds as the per-read timeout."""
    return limits if isinstance(limits, HttpLimits) else HttpLimits(timeout=float(limits))


@dataclass(frozen=True)
class DownloadedFile:
    """A data file kept in memory, with what is needed to trace it back."""

    published: PublishedFile
    content: bytes = field(repr=False)
    sha256: str
    etag: str | None
    last_modified: str | None
    downloaded_at: datetime
    # names this download's local files until its load commits (pipelines.storage.pending)
    capture_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


def _amount(size: int) -> str:
    """A byte count for messages: '5000 bytes', '50 MB (52428808 bytes)', '1,5 MB (...)'."""
    if size < MEGABYTE:
        return f"{size} bytes"
    return f"{round(size / MEGABYTE, 1):g}".replace(".", ",") + f" MB ({size} bytes)"


# -- the deadline watchdog ---------------------------------------------------------------

_current = threading.local()


def _shutdown(sock) -> None:
    try:  # socket-level shutdown (also for TLS sockets): wakes up a read blocked in another thread
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, TypeError, ValueError):
        pass


class _Watchdog:
    """Shuts down the sockets of the current request when its deadline passes."""

    def __init__(self, seconds: float):
        self.expired = False
        self._tracked: list[tuple[object, object]] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def track(self, connection, sock) -> None:
        with self._lock:
            self._tracked.append((connection, sock))
            if self.expired:
                _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for connection, sock in self._tracked:
                _shutdown(getattr(connection, "sock", None) or sock)

    def __enter__(self) -> _Watchdog:
        _current.watchdog = self
        self._timer.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._timer.cancel()
        _current.watchdog = None


class _WatchedConnection:
    """Registers every new socket with the watchdog of the request being made in this thread."""

    def _new_conn(self):
        sock = super()._new_conn()
        watchdog = getattr(_current, "watchdog", None)
        if watchdog is not None:
            watchdog.track(self, sock)
        return sock


class _WatchedHTTPConnection(_WatchedConnection, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnection, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools have their own connections
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


# -- one request --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: CaseInsensitiveDict
    body: bytes


class _Clock:
    def __init__(self, url: str, limits: HttpLimits, watchdog: _Watchdog):
        self.url, self.limits, self.watchdog = url, limits, watchdog
        self.started = time.monotonic()

    def remaining(self) -> float:
        return self.limits.deadline - (time.monotonic() - self.started)

    def expired(self) -> bool:
        return self.watchdog.expired or self.remaining() <= 0

    def too_slow(self, received: int | None = None) -> TransientDownloadError:
        so_far = "" if received is None else f" (recebidos {_amount(received)} até então)"
        return TransientDownloadError(
            f"O servidor está lento demais: {self.url} não terminou de responder dentro do prazo total de "
            f"{self.limits.deadline:g} s (HTTP_DEADLINE_SECONDS){so_far}."
        )

    def check(self, received: int) -> None:
        if self.expired():
            raise self.too_slow(received)


def _too_large(url: str, limits: HttpLimits, size: int, declared: bool) -> DownloadError:
    what = f"declara {_amount(size)} (Content-Length)" if declared else f"já passou de {_amount(size)}"
    return DownloadError(
        f"O download de {url} {what}, acima do limite de {_amount(limits.max_bytes)} (MAX_DOWNLOAD_MB). "
        "Nada foi carregado; aumente MAX_DOWNLOAD_MB se o tamanho for legítimo."
    )


def _check_status(status: int, url: str) -> None:
    if status >= 500:
        raise TransientDownloadError(f"O servidor respondeu HTTP {status} para {url}.")
    if status == 404:
        raise DownloadError(f"Arquivo não encontrado (HTTP 404): {url}.")
    if status >= 400:
        raise DownloadError(f"O servidor recusou o pedido (HTTP {status}): {url}.")


def _declared_length(headers) -> int | None:
    """The Content-Length of an uncompressed, unchunked body (None otherwise)."""
    if headers.get("Transfer-Encoding") or headers.get("Content-Encoding", "identity").strip().lower() not in (
        "",
        "identity",
    ):
        return None
    value = headers.get("Content-Length", "").strip()
    return int(value) if value.isdigit() else None


def _read_declared(response, reader, declared: int, clock: _Clock) -> bytes:
    """Exactly ``declared`` bytes from the connection, then make sure nothing follows."""
    chunks, size = [], 0
    while size < declared:
        clock.check(size)
        chunk = reader.read1(min(CHUNK_SIZE, declared - size))
        if not chunk:
            if clock.expired():
                raise clock.too_slow(size)
            raise TransientDownloadError(
                f"Download truncado de {clock.url}: recebidos {size} de {declared} bytes "
                "(a conexão terminou antes do fim declarado no Content-Length)."
            )
        chunks.append(chunk)
        size += len(chunk)
    # "Connection: close" was asked: the next thing on the connection must be its end.
    sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    try:
        if sock is not None:
            sock.settimeout(max(min(clock.limits.timeout, clock.remaining()), 0.01))
        extra = reader.read1(1)
    except (OSError, ValueError):  # no byte within the wait (the server kept the connection open), or reset
        extra = b""
    if extra:
        raise TransientDownloadError(
            f"Resposta inválida de {clock.url}: o corpo é maior que o Content-Length declarado "
            f"({declared} bytes); o arquivo ficaria truncado, então foi descartado."
        )
    return b"".join(chunks)


def _read_streamed(response, clock: _Clock) -> bytes:
    """A chunked, compressed or close-delimited body, decoded, within the size limit."""
    chunks, size = [], 0
    for chunk in response.iter_content(CHUNK_SIZE):
        size += len(chunk)
        if size > clock.limits.max_bytes:
            raise _too_large(clock.url, clock.limits, size, declared=False)
        chunks.append(chunk)
        clock.check(size)
    if clock.expired():  # the watchdog's shutdown looks like the end of a close-delimited body
        raise clock.too_slow(size)
    return b"".join(chunks)


def _content_encoding(headers) -> str:
    return headers.get("Content-Encoding", "identity").strip().lower() or "identity"


GZIP_MAGIC = b"\x1f\x8b"


class _Inflater:
    """A gzip or deflate body (zlib-wrapped, or raw as some servers send it), decoded here
    rather than by urllib3, whose decoders accept a stream that stops before its end: a body
    cut short decoded to its first lines, a shorter file that looked whole. gzip members one
    after the other are one body (RFC 1952); zero bytes after the end are padding; anything
    else after the end is an error (``finished``)."""

    def __init__(self, encoding: str, url: str):
        self.gzip, self.url = "gzip" in encoding, url
        # gzip: a gzip header (wbits 16+); deflate: a zlib header, else raw deflate (decided on the first bytes)
        self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS) if self.gzip else None
        self.waiting = b""  # bytes not decoded yet: the first of a deflate body, or those after an end

    def _decoder_for(self, data: bytes):
        if self.gzip:
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        first, second = data[0], data[1]
        wrapped = first & 0x0F == 8 and (first << 8 | second) % 31 == 0
        return zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)

    def feed(self, data: bytes, room: int) -> list[bytes]:
        """The decoded bytes of ``data``; at most about ``room`` + 1 of them (the caller's size limit)."""
        pieces = []
        data = self.waiting + data
        self.waiting = b""
        while data and room >= 0:
            if self.decoder is None or self.decoder.eof:
                starts_a_member = self.decoder is None or (self.gzip and data.startswith(GZIP_MAGIC))
                if len(data) < 2 or not starts_a_member:
                    self.waiting = data  # half a header, or what follows the end (``finished`` decides)
                    break
                self.decoder = self._decoder_for(data)
            try:
                piece = self.decoder.decompress(data, min(CHUNK_SIZE, room + 1))
            except zlib.error as exc:
                raise DownloadError(
                    f"O servidor diz que {self.url} vem comprimido ({'gzip' if self.gzip else 'deflate'}, "
                    f"Content-Encoding), mas o corpo não é um fluxo comprimido válido ({exc}): o arquivo não foi lido."
                ) from exc
            pieces.append(piece)
            room -= len(piece)
            data = self.decoder.unused_data if self.decoder.eof else self.decoder.unconsumed_tail
        if data and room < 0:
            self.waiting = data
        return pieces

    def finished(self) -> bool:
        """Whether the body ended with its stream (and nothing but zero padding after it)."""
        if self.decoder is None or not self.decoder.eof:
            return False
        if self.waiting.strip(b"\x00"):
            raise DownloadError(
                f"Resposta inválida de {self.url}: há dados depois do fim do fluxo comprimido "
                f"({len(self.waiting)} bytes); o arquivo não foi lido."
            )
        return True


def _read_encoded(response, clock: _Clock) -> bytes:
    """A body the server compressed although ``Accept-Encoding: identity`` was asked: decoded,
    within the size limit, and only when its compressed stream reached its end."""
    encoding = _content_encoding(response.headers)
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise DownloadError(
            f"O servidor mandou {clock.url} com a codificação {printable(encoding)!r} (Content-Encoding), que não "
            "foi pedida nem é conhecida (só gzip e deflate): o arquivo não foi lido."
        )
    inflater, chunks, size = _Inflater(encoding, clock.url), [], 0
    for raw in response.raw.stream(CHUNK_SIZE, decode_content=False):
        for piece in inflater.feed(raw, clock.limits.max_bytes - size):
            size += len(piece)
            if size > clock.limits.max_bytes:
                raise _too_large(clock.url, clock.limits, size, declared=False)
            chunks.append(piece)
        clock.check(size)
    if clock.expired():
        raise clock.too_slow(size)
    if not inflater.finished():
        raise TransientDownloadError(
            f"Download truncado de {clock.url}: o corpo comprimido ({encoding}, Content-Encoding) terminou antes do "
            f"fim do fluxo ({size} bytes decodificados); o arquivo ficaria incompleto, então foi descartado."
        )
    return b"".join(chunks)


def _read_body(response, clock: _Clock) -> bytes:
    if _content_encoding(response.headers) != "identity":
        return _read_encoded(response, clock)
    declared = _declared_length(response.headers)
    if declared is not None and declared > clock.limits.max_bytes:
        raise _too_large(clock.url, clock.limits, declared, declared=True)
    # http.client's buffered reader of the connection (urllib3 keeps it as ``_fp``): reading it
    # directly, rather than through urllib3, lets the bytes after the declared end be seen.
    http_response = getattr(response.raw, "_fp", None)
    reader = getattr(http_response, "fp", None)
    if declared is not None and hasattr(reader, "read1") and not getattr(http_response, "chunked", False):
        return _read_declared(response, reader, declared, clock)
    return _read_streamed(response, clock)


def _name_not_resolved(exc: BaseException) -> bool:
    """True when the host name could not be resolved (socket.gaierror anywhere in the chain)."""
    seen = []
    while exc is not None and all(exc is not s for s in seen):
        seen.append(exc)
        if isinstance(exc, (socket.gaierror, urllib3.exceptions.NameResolutionError)):
            return True
        nested = [a for a in getattr(exc, "args", ()) if isinstance(a, BaseException)]
        reason = getattr(exc, "reason", None)
        exc = (
            exc.__cause__
            or exc.__context__
            or (reason if isinstance(reason, BaseException) else None)
            or (nested[0] if nested else None)
        )
    return False


def _failure(exc: Exception, clock: _Clock) -> DownloadError:
    url, timeout = clock.url, clock.limits.timeout
    if clock.expired():
        return clock.too_slow()
    cause = exc.args[0] if exc.args else None
    if isinstance(exc, (requests.exceptions.Timeout, TimeoutError)) or isinstance(
        cause, urllib3.exceptions.TimeoutError
    ):
        return TransientDownloadError(f"Tempo esgotado ({timeout:g} s sem resposta) ao acessar {url}: {exc}")
    if isinstance(exc, requests.exceptions.ChunkedEncodingError) or "IncompleteRead" in str(exc):
        return TransientDownloadError(f"Download truncado de {url}: {exc}")
    if _name_not_resolved(exc):  # no internet or no DNS: retrying in seconds will not help
        host = urlparse(url).hostname
        return DownloadError(
            f"O nome do servidor {host} não pôde ser resolvido (sem internet ou sem DNS?): {url} não foi acessado."
        )
    if isinstance(exc, (requests.exceptions.ConnectionError, OSError, urllib3.exceptions.HTTPError)):
        return TransientDownloadError(f"Falha de conexão ao acessar {url}: {exc}")
    return DownloadError(f"Requisição inválida para {url}: {exc}")


class _GuardedSession(requests.Session):
    """A session that follows a redirect only to the requested address's host or to one of
    ``hosts`` (None: anywhere), over http or https: a link the page placed on the portal must
    not be turned into a download from elsewhere by the server's answer."""

    def __init__(self, url: str, hosts: frozenset[str] | None):
        super().__init__()
        self._url = url
        self._hosts = None if hosts is None else {(urlparse(url).hostname or "").lower(), *hosts}

    def get_redirect_target(self, resp):
        target = super().get_redirect_target(resp)
        if target is not None and self._hosts is not None:
            address = urljoin(resp.url, target)
            parsed = urlparse(address)
            host = (parsed.hostname or "").lower()
            scheme = parsed.scheme.lower()
            if scheme not in ("http", "https") or (scheme == "http" and resp.url.lower().startswith("https:")):
                raise DownloadError(
                    f"{self._url} redirecionou para {address}: o esquema '{scheme}:' não é seguido (só http e "
                    "https, e nunca de https para http). O redirecionamento não foi seguido."
                )
            if host not in self._hosts:
                raise DownloadError(
                    f"{self._url} redirecionou para {address}, fora do portal: o host '{host}' não é o do portal "
                    "nem está em PORTAL_ALLOWED_HOSTS. O redirecionamento não foi seguido; se o novo endereço for "
                    "da CGU, inclua o host em PORTAL_ALLOWED_HOSTS."
                )
        return target


def _get(url: str, limits: HttpLimits, headers: dict | None = None) -> _Reply:
    """GET ``url`` within ``limits``: the status checked, the whole body in memory (empty for 304);
    a redirect followed only where ``limits.redirect_hosts`` allows (``_GuardedSession``)."""
    with _Watchdog(limits.deadline) as watchdog, _GuardedSession(url, limits.redirect_hosts) as session:
        clock = _Clock(url, limits, watchdog)
        adapter = _WatchedAdapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        request_headers = {
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "identity",
            "Connection": "close",
            **(headers or {}),
        }
        try:
            with session.get(url, stream=True, timeout=limits.timeout, headers=request_headers) as response:
                _check_status(response.status_code, url)
                body = b"" if response.status_code == 304 else _read_body(response, clock)
                return _Reply(response.status_code, CaseInsensitiveDict(response.headers), body)
        except (
            requests.exceptions.RequestException,
            urllib3.exceptions.HTTPError,
            http.client.HTTPException,
            OSError,
        ) as exc:
            raise _failure(exc, clock) from exc


# -- public functions --------------------------------------------------------------------


def fetch_page(url: str, limits: HttpLimits | float) -> str:
    """Return the HTML of the portal page."""
    reply = _get(url, as_limits(limits))
    encoding = get_encoding_from_headers(reply.headers) or "utf-8"
    try:
        return reply.body.decode(encoding, errors="replace")
    except LookupError:  # an unknown charset in Content-Type
        return reply.body.decode("utf-8", errors="replace")


def looks_like_html(content: bytes) -> bool:
    head = content[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith(HTML_MARKERS)


def _corrupt_xlsx(url: str, detail: str) -> DownloadError:
    return DownloadError(f"O arquivo {url} não é um XLSX válido: o ZIP está corrompido ou incompleto ({detail}).")


def _inflated_size(content: bytes, member: zipfile.ZipInfo, url: str) -> int:
    """Decompress one member, stopping as soon as it passes its declared size.

    The XLSX parser (calamine) trusts the compressed stream, not the declared size: a
    member declaring 1 KB may inflate to gigabytes. Only Python's zipfile stops at the
    declared size, so the declared total alone does not bound what parsing will inflate."""
    offset = member.header_offset
    header = content[offset : offset + 30]
    if len(header) < 30 or not header.startswith(XLSX_MAGIC):
        raise _corrupt_xlsx(url, f"cabeçalho local ausente para {member.filename}")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    start = offset + 30 + name_length + extra_length
    data = memoryview(content)[start : start + member.compress_size]
    if len(data) < member.compress_size:
        raise _corrupt_xlsx(url, f"{member.filename} termina antes do fim")
    if member.compress_type == zipfile.ZIP_STORED:
        return len(data)
    if member.compress_type != zipfile.ZIP_DEFLATED:
        raise _corrupt_xlsx(url, f"método de compressão {member.compress_type} não suportado em {member.filename}")
    inflater, produced = zlib.decompressobj(-15), 0
    try:
        for position in range(0, len(data), CHUNK_SIZE):
            pending = data[position : position + CHUNK_SIZE]
            while pending:
                produced += len(inflater.decompress(pending, CHUNK_SIZE))
                if produced > member.file_size:
                    raise DownloadError(
                        f"O arquivo {url} não é um XLSX válido: {member.filename} se descompacta em mais que os "
                        f"{_amount(member.file_size)} declarados no ZIP (arquivo adulterado ou 'zip bomb'); "
                        "recusado antes da leitura."
                    )
                pending = inflater.unconsumed_tail
            if inflater.eof:
                break
    except zlib.error as exc:
        raise _corrupt_xlsx(url, f"dados comprimidos inválidos em {member.filename}") from exc
    if not inflater.eof:
        raise _corrupt_xlsx(url, f"{member.filename} termina antes do fim")
    return produced


def check_xlsx_archive(content: bytes, url: str, max_uncompressed: int) -> None:
    """Refuse a corrupt XLSX, or one that would decompress past ``max_uncompressed`` bytes
    (MAX_XLSX_UNCOMPRESSED_MB), before anything parses it."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError) as exc:
        raise _corrupt_xlsx(url, "diretório central do ZIP ilegível") from exc
    if not members:
        raise _corrupt_xlsx(url, "ZIP sem arquivos")
    declared = sum(member.file_size for member in members)
    if declared > max_uncompressed:
        raise DownloadError(
            f"O XLSX {url} se descompacta em {_amount(declared)} (tamanhos declarados no ZIP), acima do limite "
            f"de {_amount(max_uncompressed)} (MAX_XLSX_UNCOMPRESSED_MB): recusado antes da leitura (proteção "
            "contra 'zip bomb'). Aumente MAX_XLSX_UNCOMPRESSED_MB se o arquivo for legítimo."
        )
    for member in members:  # each stops at its declared size: at most ``declared`` bytes inflated in all
        if _inflated_size(content, member, url) != member.file_size:
            raise _corrupt_xlsx(url, f"{member.filename} não tem o tamanho declarado")


def download_file(
    published: PublishedFile, limits: HttpLimits | float, etag: str | None = None, last_modified: str | None = None
) -> DownloadedFile | None:
    """Download one published file into memory and check that it is whole and a data file.

    With ``etag``/``last_modified`` of a previous download the request is conditional,
    and ``None`` is returned when the server answers 304 Not Modified.
    """
    limits = as_limits(limits)
    url = published.url
    logger.info("Realizando o download do arquivo %s (%s)...", url, published.label)
    conditions = {}
    if etag:
        conditions["If-None-Match"] = etag
    if last_modified:
        conditions["If-Modified-Since"] = last_modified
    reply = _get(url, limits, conditions)
    if reply.status == 304:
        logger.info("Arquivo %s não mudou desde a última captura (HTTP 304).", url)
        return None
    content = reply.body
    content_type = reply.headers.get("Content-Type", "").lower()
    if not content:
        raise DownloadError(f"O servidor devolveu um arquivo vazio para {url}.")
    if "text/html" in content_type or looks_like_html(content):
        raise DownloadError(
            f"O servidor devolveu uma página HTML em vez do arquivo de dados {url} "
            "(página de erro ou manutenção do portal)."
        )
    if published.format == "xlsx":
        if not content.startswith(XLSX_MAGIC):
            raise DownloadError(f"O arquivo {url} não é um XLSX válido (assinatura ZIP ausente).")
        check_xlsx_archive(content, url, limits.max_xlsx_uncompressed_bytes)
    headers = reply.headers
    if published.format == "csv" and not headers.get("Content-Length") and not headers.get("Transfer-Encoding"):
        # the body ended when the connection closed: a connection cut at a line break looks the same
        logger.warning(
            "O servidor não disse o tamanho de %s (sem Content-Length nem chunked): não há como confirmar que o "
            "arquivo veio inteiro; uma recaptura com muito menos linhas que a anterior é recusada "
            "(MAX_ROW_DROP_PERCENT).",
            url,
        )
    digest = hashlib.sha256(content).hexdigest()
    logger.info("Download concluído: %s (%d bytes, sha256 %s).", url, len(content), digest[:12])
    return DownloadedFile(
        published=published,
        content=content,
        sha256=digest,
        etag=reply.headers.get("ETag"),
        last_modified=reply.headers.get("Last-Modified"),
        downloaded_at=datetime.now(UTC),
    )
