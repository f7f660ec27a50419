"""Hostile HTTP servers: too slow, a body longer than its Content-Length, too large,
an XLSX that would decompress to gigabytes. Each ends in a clear error, never in data."""

import io
import socket
import threading
import time
import zipfile

import pytest

from pipelines.download import HttpLimits, check_xlsx_archive, download_file, fetch_page
from pipelines.errors import DownloadError, TransientDownloadError
from pipelines.portal import PublishedFile

MB = 1024 * 1024


class RawServer:
    """A TCP server on 127.0.0.1 that reads each request head and hands the connection to
    ``behaviour(connection, request_head)``: full control over what goes on the wire."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str = "/arquivos/terceirizados202405.csv") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self):
        while not self.closed:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection):
        with connection:
            try:
                connection.settimeout(5)
                head = b""
                while b"\r\n\r\n" not in head:
                    data = connection.recv(4096)
                    if not data:
                        return
                    head += data
                self.requests.append(head)
                self.behaviour(connection, head)
            except OSError:  # the client gave up: expected for the slow servers
                pass

    def close(self):
        self.closed = True
        self.listener.close()


@pytest.fixture
def serve():
    servers = []

    def start(behaviour):
        server = RawServer(behaviour)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def head(status="200 OK", **headers) -> bytes:
    lines = [f"HTTP/1.1 {status}"] + [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def csv_body(size: int) -> bytes:
    line = b"7000001;MCOM;413007;AGENCIA;ANATEL-PE;113/2016;19232342000165;EMPRESA\n"
    return (line * (size // len(line) + 1))[:size]


def as_published(url: str, fmt: str = "csv") -> PublishedFile:
    return PublishedFile(2024, 5, url, fmt)


# -- 1. deadlines ------------------------------------------------------------------------


def trickle(body: bytes, delay: float, **headers):
    """Headers at once, then the body one byte every ``delay`` seconds (each read is quick:
    a per-read timeout never fires)."""

    def behaviour(connection, _):
        connection.sendall(head(**headers))
        for byte in body:
            connection.sendall(bytes([byte]))
            time.sleep(delay)

    return behaviour


def test_a_trickling_download_hits_the_total_deadline(serve):
    body = csv_body(60)  # 60 bytes at 5 per second: 12 s without a deadline
    server = serve(trickle(body, 0.2, Content_Length=len(body), Content_Type="text/csv"))
    started = time.monotonic()
    with pytest.raises(TransientDownloadError) as raised:
        download_file(as_published(server.url()), HttpLimits(timeout=1, deadline=1))
    elapsed = time.monotonic() - started
    message = str(raised.value)
    assert "lento demais" in message and "1 s" in message and "HTTP_DEADLINE_SECONDS" in message
    assert server.url() in message
    assert elapsed < 10


def test_a_trickling_page_without_length_hits_the_total_deadline(serve):
    page = b"<html><body><h3>2024</h3>" + b" " * 60 + b"</body></html>"
    server = serve(trickle(page, 0.2, Content_Type="text/html", Connection="close"))
    started = time.monotonic()
    with pytest.raises(TransientDownloadError, match="lento demais"):
        fetch_page(server.url("/cgu/terceirizados"), HttpLimits(timeout=1, deadline=1))
    assert time.monotonic() - started < 10


def test_headers_sent_one_byte_at_a_time_hit_the_total_deadline(serve):
    def slow_headers(connection, _):
        connection.sendall(b"HTTP/1.1 200 OK\r\nX-Lento: ")
        for _ in range(60):
            connection.sendall(b"a")
            time.sleep(0.2)
        connection.sendall(b"\r\nContent-Length: 2\r\n\r\nok")

    server = serve(slow_headers)
    started = time.monotonic()
    with pytest.raises(TransientDownloadError, match="lento demais"):
        fetch_page(server.url("/cgu/terceirizados"), HttpLimits(timeout=1, deadline=1))
    assert time.monotonic() - started < 10


# -- 2. a body longer than its Content-Length ----------------------------------------------


def overlong(declared: int, actual: int, pause: float = 0.0):
    """Declares ``declared`` bytes and sends ``actual``: the extra after ``pause`` seconds."""

    def behaviour(connection, _):
        body = csv_body(actual)
        connection.sendall(head(Content_Length=declared, Content_Type="text/csv") + body[:declared])
        time.sleep(pause)
        connection.sendall(body[declared:])

    return behaviour


@pytest.mark.parametrize("pause", [0.0, 0.3])
def test_a_body_longer_than_its_content_length_is_an_error(serve, pause):
    server = serve(overlong(1000, 2000, pause))
    with pytest.raises(TransientDownloadError) as raised:
        download_file(as_published(server.url()), HttpLimits(timeout=2))
    message = str(raised.value)
    assert "maior que o Content-Length" in message and "1000 bytes" in message and server.url() in message
    assert b"connection: close" in server.requests[0].lower()


def test_a_page_longer_than_its_content_length_is_an_error(serve):
    server = serve(overlong(1000, 2000))
    with pytest.raises(TransientDownloadError, match="maior que o Content-Length"):
        fetch_page(server.url("/cgu/terceirizados"), HttpLimits(timeout=2))


def test_a_body_shorter_than_its_content_length_is_truncated(serve):
    def short(connection, _):
        connection.sendall(head(Content_Length=2000, Content_Type="text/csv") + csv_body(995))

    server = serve(short)
    with pytest.raises(TransientDownloadError, match="truncado.*recebidos 995 de 2000 bytes"):
        download_file(as_published(server.url()), HttpLimits(timeout=2))


def test_exact_body_from_a_server_that_keeps_the_connection_open_is_accepted(serve):
    body = csv_body(1000)

    def keep_alive(connection, _):  # ignores "Connection: close" and waits
        connection.sendall(head(Content_Length=1000, Content_Type="text/csv") + body)
        time.sleep(5)

    server = serve(keep_alive)
    started = time.monotonic()
    downloaded = download_file(as_published(server.url()), HttpLimits(timeout=0.5))
    assert downloaded.content == body
    assert time.monotonic() - started < 4  # waited for more bytes at most one read timeout


def test_chunked_body_is_read_whole(serve):
    body = csv_body(3000)

    def chunked(connection, _):
        connection.sendall(head(Transfer_Encoding="chunked", Content_Type="text/csv"))
        for start in range(0, len(body), 1000):
            piece = body[start : start + 1000]
            connection.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        connection.sendall(b"0\r\n\r\n")

    server = serve(chunked)
    assert download_file(as_published(server.url()), HttpLimits(timeout=2)).content == body


# -- 3. size limits ------------------------------------------------------------------------


def test_declared_size_above_the_limit_fails_before_reading_the_body(serve):
    body = csv_body(5000)
    server = serve(trickle(body, 0.2, Content_Length=len(body), Content_Type="text/csv"))  # 1000 s to send
    started = time.monotonic()
    with pytest.raises(DownloadError) as raised:
        download_file(as_published(server.url()), HttpLimits(timeout=2, max_bytes=1000))
    assert not isinstance(raised.value, TransientDownloadError)
    message = str(raised.value)
    assert "MAX_DOWNLOAD_MB" in message and "5000 bytes" in message and "1000 bytes" in message
    assert server.url() in message
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_undeclared_size_above_the_limit_fails_while_reading(serve, framing):
    body = csv_body(50_000)

    def big(connection, _):
        if framing == "chunked":
            connection.sendall(head(Transfer_Encoding="chunked", Content_Type="text/csv"))
            for start in range(0, len(body), 5000):
                connection.sendall(f"{5000:x}\r\n".encode() + body[start : start + 5000] + b"\r\n")
            connection.sendall(b"0\r\n\r\n")
        else:
            connection.sendall(head(Content_Type="text/csv", Connection="close") + body)

    server = serve(big)
    with pytest.raises(DownloadError) as raised:
        download_file(as_published(server.url()), HttpLimits(timeout=2, max_bytes=10_000))
    assert not isinstance(raised.value, TransientDownloadError)
    assert "MAX_DOWNLOAD_MB" in str(raised.value) and "10000 bytes" in str(raised.value)


def zip_bomb(member_size: int) -> bytes:
    """A small XLSX-looking zip whose one sheet inflates to ``member_size`` bytes of zeros."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("xl/worksheets/sheet1.xml", "w") as member:
            zeros = bytes(MB)
            for _ in range(member_size // MB):
                member.write(zeros)
    return buffer.getvalue()


def serve_bytes(serve, body: bytes, content_type: str = "application/octet-stream"):
    return serve(
        lambda connection, _: connection.sendall(head(Content_Length=len(body), Content_Type=content_type) + body)
    )


def test_xlsx_zip_bomb_is_refused_before_parsing(serve):
    bomb = zip_bomb(50 * MB)
    assert len(bomb) < 200_000
    server = serve_bytes(serve, bomb)
    with pytest.raises(DownloadError) as raised:
        download_file(
            as_published(server.url("/a/terceirizados202405.xlsx"), "xlsx"),
            HttpLimits(timeout=2, max_xlsx_uncompressed_bytes=10 * MB),
        )
    assert not isinstance(raised.value, TransientDownloadError)
    message = str(raised.value)
    assert "MAX_XLSX_UNCOMPRESSED_MB" in message and "50 MB" in message and "10 MB" in message


def test_xlsx_under_the_limit_passes(fresh_portal):
    content = (fresh_portal.root / "cgu/terceirizados/arquivos/terceirizados202405.xlsx").read_bytes()
    check_xlsx_archive(content, "x.xlsx", 1 * MB)  # the real sheet of 60 rows: far below 1 MB
    with pytest.raises(DownloadError, match="MAX_XLSX_UNCOMPRESSED_MB"):
        check_xlsx_archive(content, "x.xlsx", 1000)


@pytest.mark.parametrize("cut", ["garbage", "half"])
def test_corrupt_xlsx_is_a_clear_error(serve, fresh_portal, cut):
    real = (fresh_portal.root / "cgu/terceirizados/arquivos/terceirizados202405.xlsx").read_bytes()
    body = b"PK\x03\x04" + b"\x00\x01" * 500 if cut == "garbage" else real[: len(real) // 2]
    server = serve_bytes(serve, body)
    url = server.url("/a/terceirizados202405.xlsx")
    with pytest.raises(DownloadError) as raised:
        download_file(as_published(url, "xlsx"), HttpLimits(timeout=2))
    assert not isinstance(raised.value, TransientDownloadError)
    assert f"O arquivo {url} não é um XLSX válido: o ZIP está corrompido ou incompleto" in str(raised.value)


def lying_zip(real_size: int, declared_size: int) -> bytes:
    """A zip whose sheet declares ``declared_size`` bytes but inflates to ``real_size``
    (the XLSX parser, calamine, would inflate all of it)."""
    import struct

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", bytes(real_size))
    data = bytearray(buffer.getvalue())
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("xl/worksheets/sheet1.xml")
    struct.pack_into("<I", data, info.header_offset + 22, declared_size)  # local header
    central = data.rindex(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, declared_size)  # central directory
    return bytes(data)


def test_xlsx_member_inflating_past_its_declared_size_is_refused(serve):
    lying = lying_zip(5 * MB, 1000)
    assert sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(lying)).infolist()) == 1000
    server = serve_bytes(serve, lying)
    url = server.url("/a/terceirizados202405.xlsx")
    with pytest.raises(DownloadError) as raised:
        download_file(as_published(url, "xlsx"), HttpLimits(timeout=2, max_xlsx_uncompressed_bytes=1 * MB))
    assert (
        f"O arquivo {url} não é um XLSX válido: xl/worksheets/sheet1.xml se descompacta em mais que os "
        "1000 bytes declarados no ZIP" in str(raised.value)
    )


# -- a compressed body the server was not asked for (hostile re-test, 2026-11-30) ---------------

import gzip as gzip_module  # noqa: E402
import zlib  # noqa: E402


def gzipped(body: bytes) -> bytes:
    return gzip_module.compress(body, 9)


def send_encoded(payload: bytes, encoding: str = "gzip", framing: str = "length"):
    def behaviour(connection, _):
        if framing == "length":
            connection.sendall(
                head(Content_Type="text/csv", Content_Encoding=encoding, Content_Length=len(payload)) + payload
            )
        elif framing == "chunked":
            chunk = b"%x\r\n" % len(payload) + payload + b"\r\n0\r\n\r\n"
            connection.sendall(
                head(Content_Type="text/csv", Content_Encoding=encoding, Transfer_Encoding="chunked") + chunk
            )
        else:
            connection.sendall(head(Content_Type="text/csv", Content_Encoding=encoding, Connection="close") + payload)
        connection.shutdown(socket.SHUT_WR)

    return behaviour


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_a_whole_gzip_body_is_decoded(serve, framing):
    body = csv_body(5000)
    server = serve(send_encoded(gzipped(body), framing=framing))
    assert download_file(as_published(server.url()), HttpLimits(timeout=2)).content == body


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_a_gzip_body_cut_before_its_end_is_truncated_not_a_shorter_file(serve, framing):
    """The server compressed although 'Accept-Encoding: identity' was asked, and the gzip
    stream stops before its end (its Content-Length, if any, says the bytes sent): it used to
    decode to the first 40% of the lines and load them as the whole period."""
    body = csv_body(5000)
    compressed = gzipped(body)
    server = serve(send_encoded(compressed[: len(compressed) * 2 // 5], framing=framing))
    with pytest.raises(TransientDownloadError, match="Download truncado") as raised:
        download_file(as_published(server.url()), HttpLimits(timeout=2))
    assert "gzip" in str(raised.value) and server.url() in str(raised.value)


def test_a_gzip_body_inflating_past_the_size_limit_is_refused(serve):
    compressed = gzipped(b"0" * 5_000_000)
    server = serve(send_encoded(compressed))
    with pytest.raises(DownloadError, match="MAX_DOWNLOAD_MB"):
        download_file(as_published(server.url()), HttpLimits(timeout=2, max_bytes=1_000_000))


def test_a_raw_deflate_body_is_decoded(serve):
    body = csv_body(3000)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    server = serve(send_encoded(compressor.compress(body) + compressor.flush(), encoding="deflate"))
    assert download_file(as_published(server.url()), HttpLimits(timeout=2)).content == body


def test_an_encoding_that_was_not_asked_and_is_not_known_is_refused(serve):
    server = serve(send_encoded(b"\x00\x01\x02", encoding="zz-desconhecida"))
    with pytest.raises(DownloadError, match="zz-desconhecida"):
        download_file(as_published(server.url()), HttpLimits(timeout=2))


def test_a_body_ended_only_by_the_closed_connection_is_taken_with_a_warning(serve, caplog):
    """Nothing tells such a body from one cut at a line break: it is taken (a real server may
    send it so, when 'Connection: close' is asked) and the log says it could not be checked."""
    body = csv_body(3000)

    def close_delimited(connection, _):
        connection.sendall(head(Content_Type="text/csv", Connection="close") + body)
        connection.shutdown(socket.SHUT_WR)

    server = serve(close_delimited)
    with caplog.at_level("WARNING", logger="pipelines.download"):
        assert download_file(as_published(server.url()), HttpLimits(timeout=2)).content == body
    assert "não há como confirmar que o arquivo veio inteiro" in caplog.text


def test_a_multi_member_gzip_body_is_decoded_whole(serve):
    """Two gzip members one after the other are one valid gzip body (RFC 1952): the decoder
    used to spin forever on the bytes after the first member's end."""
    body = csv_body(6000)
    server = serve(send_encoded(gzipped(body[:2500]) + gzipped(body[2500:])))
    assert download_file(as_published(server.url()), HttpLimits(timeout=2, deadline=10)).content == body


@pytest.mark.parametrize(("after", "accepted"), [(b"\x00" * 8, True), (b"lixo depois do fim", False)])
def test_bytes_after_the_gzip_stream_are_padding_or_an_error_never_a_hang(serve, after, accepted):
    body = csv_body(4000)
    server = serve(send_encoded(gzipped(body) + after))
    started = time.monotonic()
    if accepted:  # zero padding, which gzip itself ignores
        assert download_file(as_published(server.url()), HttpLimits(timeout=2, deadline=10)).content == body
    else:
        with pytest.raises(DownloadError, match="depois do fim do fluxo comprimido"):
            download_file(as_published(server.url()), HttpLimits(timeout=2, deadline=10))
    assert time.monotonic() - started < 10


def test_a_plain_body_said_to_be_gzip_is_a_clear_error(serve):
    server = serve(send_encoded(csv_body(3000)))
    with pytest.raises(DownloadError, match=r"vem comprimido \(gzip, Content-Encoding\), mas o corpo não é") as raised:
        download_file(as_published(server.url()), HttpLimits(timeout=2, deadline=10))
    assert server.url() in str(raised.value)
