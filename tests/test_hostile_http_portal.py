"""A hostile or changed portal page through the real flows: the latest capture fails
naming what it cannot place, keeping the loaded data; the historic capture loads what it
can place and ends Failed naming the rest; nothing off the portal is downloaded."""

import io
import zipfile

from pipelines.flows import capture_flow, historic_capture_flow
from tests.conftest import query, run_flow

FILES = "/cgu/terceirizados/arquivos"


def link(href, text):
    return f'<li><a class="internal-link" href="{href}">{text}</a></li>'


def page(*blocks):
    return (
        "<html><body>"
        + "".join(f"<h3>{heading}</h3><ul>{''.join(links)}</ul>" for heading, *links in blocks)
        + "</body></html>"
    )


def messages_of(db, run_id):
    return [m for (m,) in query(db, "SELECT mensagem FROM logs.registros WHERE id_execucao = %s ORDER BY 1", (run_id,))]


def run_state(db, run_id):
    [(status, message)] = query(
        db, "SELECT estado_final, mensagem FROM logs.execucoes WHERE id_execucao = %s", (run_id,)
    )
    return status, message


def loaded(db):
    return query(
        db,
        "SELECT to_char(periodo, 'YYYY-MM'), count(*), min(arquivo_origem) FROM raw.terceirizados "
        "GROUP BY 1 ORDER BY 1",
    )


def test_latest_capture_fails_on_an_unreadable_year_heading_and_keeps_the_data(db, fresh_portal):
    good, _ = run_flow(capture_flow, url=fresh_portal.page_url)
    assert good.is_successful()
    before = loaded(db)
    assert [row[0] for row in before] == ["2024-05"]
    # The 2024 heading mistyped with the letter O: its file must not become 2025-09.
    fresh_portal.page_override = page(
        ("2025", link(f"{FILES}/terceirizados_202501.csv", "Janeiro")),
        ("2O24", link(f"{FILES}/terceirizados202309.csv", "Setembro")),
    )
    state, run_id = run_flow(capture_flow, url=fresh_portal.page_url)
    assert state.is_failed()
    status, message = run_state(db, run_id)
    assert status == "Failed"
    assert message.startswith("Falhou: select_newest_period: ")
    assert "A estrutura da página mudou: o título <h3> '2O24' não é um ano (link 'Setembro' para " in message
    assert any(
        m.startswith("Link da página não usado: o título <h3> '2O24' não é um ano")
        and f"{FILES}/terceirizados202309.csv" in m
        for m in messages_of(db, run_id)
    )
    assert loaded(db) == before
    assert fresh_portal.hits.get(f"{FILES}/terceirizados202309.csv") is None
    assert fresh_portal.hits.get(f"{FILES}/terceirizados_202501.csv") is None


def test_latest_capture_never_loads_a_period_in_the_future(db, fresh_portal):
    good, _ = run_flow(capture_flow, url=fresh_portal.page_url)
    assert good.is_successful()
    before = loaded(db)
    months = [
        "Janeiro",
        "Fevereiro",
        "Março",
        "Abril",
        "Maio",
        "Junho",
        "Julho",
        "Agosto",
        "Setembro",
        "Outubro",
        "Novembro",
        "Dezembro",
    ]
    # 504 links up to 2041-12, every one to a real file: the old scraper would load 2041-12.
    fresh_portal.page_override = page(
        *(
            (str(year), *(link(f"{FILES}/terceirizados202405.xlsx", months[m - 1]) for m in range(12, 0, -1)))
            for year in range(2041, 1999, -1)
        )
    )
    state, run_id = run_flow(capture_flow, url=fresh_portal.page_url)
    assert state.is_failed()
    status, message = run_state(db, run_id)
    assert status == "Failed" and "o período 2041-12 está no futuro (hoje é " in message
    assert fresh_portal.hits[f"{FILES}/terceirizados202405.xlsx"] == 1  # the good run only
    assert loaded(db) == before
    assert query(db, "SELECT to_char(periodo, 'YYYY-MM') FROM raw.capturas") == [("2024-05",)]


def test_historic_capture_loads_what_it_can_place_and_fails_naming_the_rest(db, fresh_portal):
    other_host = fresh_portal.base_url.replace("127.0.0.1", "localhost")
    fresh_portal.page_override = page(
        ("2041", link(f"{FILES}/terceirizados_202101.csv", "Dezembro")),
        ("2024", link(f"{FILES}/terceirizados202405.xlsx", "Maio")),
        ("2O23", link(f"{FILES}/terceirizados202309.csv", "Setembro")),
        ("2022", link(f"{FILES}/terceirizados202205.csv", "Maio")),
        ("2021", link(f"{other_host}{FILES}/terceirizados_202101.csv", "Janeiro")),
        (
            "2019",
            link(f"{FILES}/terceirizados%00201901_1.csv", "Janeiro"),
            link("file:///etc/terceirizados201905.csv", "Maio"),
        ),
    )
    state, run_id = run_flow(historic_capture_flow, url=fresh_portal.page_url)
    assert state.is_failed()
    assert [row[:2] for row in loaded(db)] == [
        ("2022-05", fresh_portal.portal.expectations["2022-05"].loaded_rows),
        ("2024-05", fresh_portal.portal.expectations["2024-05"].loaded_rows),
    ]
    assert fresh_portal.hits.get(f"{FILES}/terceirizados_202101.csv") is None  # neither 2041 nor the other host
    assert fresh_portal.hits.get(f"{FILES}/terceirizados202309.csv") is None
    status, message = run_state(db, run_id)
    assert status == "Failed"
    assert message.startswith("Falhou: summarize_historic_capture: ")
    assert (
        "5 link(s) da página não atribuído(s) a um período, não carregado(s): o período 2041-12 está no futuro"
    ) in message
    for part in (
        "o título <h3> '2O23' não é um ano (link 'Setembro' para ",
        "o link aponta para o host 'localhost', que não é o do portal (127.0.0.1) nem está em "
        "PORTAL_ALLOWED_HOSTS (link 'Janeiro' para " + other_host,
        "o nome do arquivo contém caracteres de controle (como o byte nulo) ou barra invertida (link "
        "'Janeiro' para " + fresh_portal.base_url + FILES + "/terceirizados%00201901_1.csv)",
        "o esquema 'file:' não é permitido (só http e https) (link 'Maio' para file:///etc/terceirizados201905.csv)",
    ):
        assert part in message
    messages = messages_of(db, run_id)
    assert "2 período(s) carregado(s), 0 inalterado(s), 0 com falha" in " ".join(messages)
    warnings = [
        m
        for (m,) in query(
            db,
            "SELECT mensagem FROM logs.registros WHERE id_execucao = %s AND "
            "nivel = 'WARNING' AND mensagem LIKE 'Link da página não usado%%'",
            (run_id,),
        )
    ]
    assert len(warnings) == 5


def test_historic_capture_follows_a_host_listed_in_portal_allowed_hosts(db, fresh_portal, monkeypatch):
    monkeypatch.setenv("PORTAL_ALLOWED_HOSTS", "localhost")
    mirror = fresh_portal.base_url.replace("127.0.0.1", "localhost")
    fresh_portal.page_override = page(
        ("2024", link(f"{FILES}/terceirizados202405.xlsx", "Maio")),
        ("2021", link(f"{mirror}{FILES}/terceirizados_202101.csv", "Janeiro")),
    )
    state, run_id = run_flow(historic_capture_flow, url=fresh_portal.page_url)
    assert state.is_successful(), run_state(db, run_id)
    assert [row[0] for row in loaded(db)] == ["2021-01", "2024-05"]


def test_latest_capture_refuses_a_zip_bomb_and_keeps_the_data(db, fresh_portal, monkeypatch):
    good, _ = run_flow(capture_flow, url=fresh_portal.page_url)
    assert good.is_successful()
    before = loaded(db)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", bytes(3 * 1024 * 1024))
    (fresh_portal.root / FILES.strip("/") / "bomba202405.xlsx").write_bytes(buffer.getvalue())
    fresh_portal.page_override = page(("2024", link(f"{FILES}/bomba202405.xlsx", "Maio")))
    monkeypatch.setenv("MAX_XLSX_UNCOMPRESSED_MB", "1")
    state, run_id = run_flow(capture_flow, url=fresh_portal.page_url)
    assert state.is_failed()
    assert fresh_portal.hits[f"{FILES}/bomba202405.xlsx"] == 1  # not transient: no retry
    status, message = run_state(db, run_id)
    assert message.startswith("Falhou: download_cgu_terceirizados_data: ")
    assert "acima do limite de 1 MB (1048576 bytes) (MAX_XLSX_UNCOMPRESSED_MB)" in message
    assert loaded(db) == before


def test_a_server_too_slow_for_the_deadline_is_retried_then_fails_keeping_the_data(db, fresh_portal, monkeypatch):
    good, _ = run_flow(capture_flow, url=fresh_portal.page_url)
    assert good.is_successful()
    before = loaded(db)
    path = f"{FILES}/terceirizados202405.xlsx"
    fresh_portal.faults[path] = "timeout"  # answers after 3 s; each read would wait HTTP_TIMEOUT_SECONDS=1.5
    monkeypatch.setenv("HTTP_DEADLINE_SECONDS", "1")
    state, run_id = run_flow(capture_flow, url=fresh_portal.page_url)
    assert state.is_failed()
    assert fresh_portal.hits[path] == 1 + 3  # the good run, then the first try and 2 retries
    status, message = run_state(db, run_id)
    assert message.startswith("Falhou: download_cgu_terceirizados_data: ")
    assert (
        f"O servidor está lento demais: {fresh_portal.base_url}{path} não terminou de responder dentro do "
        "prazo total de 1 s (HTTP_DEADLINE_SECONDS)" in message
    )
    assert sum("Nova tentativa" in m for m in messages_of(db, run_id)) == 2
    assert loaded(db) == before


def test_a_redirect_off_the_portal_is_not_followed_and_the_data_stays(db, fresh_portal):
    good, _ = run_flow(capture_flow, url=fresh_portal.page_url)
    assert good.is_successful()
    before = loaded(db)
    path = f"{FILES}/terceirizados202405.xlsx"
    elsewhere = fresh_portal.base_url.replace("127.0.0.1", "localhost") + path  # the same file, another host
    fresh_portal.faults[path] = [("redirect", elsewhere)]
    hits = fresh_portal.hits.get(path, 0)
    state, run_id = run_flow(capture_flow, url=fresh_portal.page_url)
    assert state.is_failed()
    assert fresh_portal.hits[path] == hits + 1  # asked once, not retried, the other host never asked
    status, message = run_state(db, run_id)
    assert message.startswith("Falhou: download_cgu_terceirizados_data: ")
    assert (
        f"{fresh_portal.base_url}{path} redirecionou para {elsewhere}, fora do portal: o host 'localhost' não é o "
        "do portal nem está em PORTAL_ALLOWED_HOSTS"
    ) in message
    assert loaded(db) == before


def test_a_redirect_on_the_portal_or_to_an_allowed_host_is_followed(db, fresh_portal, monkeypatch):
    path = f"{FILES}/terceirizados202405.xlsx"
    fresh_portal.faults[path] = [("redirect", f"{path}?versao=2")]  # relative, same host
    state, run_id = run_flow(capture_flow, url=fresh_portal.page_url)
    assert state.is_successful(), run_state(db, run_id)
    assert fresh_portal.hits[path] == 2
    assert [row[:2] for row in loaded(db)] == [("2024-05", fresh_portal.portal.expectations["2024-05"].loaded_rows)]
    with db.cursor() as cursor:
        cursor.execute("TRUNCATE raw.terceirizados, raw.terceirizados_quarentena, raw.capturas")
    monkeypatch.setenv("PORTAL_ALLOWED_HOSTS", "localhost")
    fresh_portal.faults[path] = [("redirect", fresh_portal.base_url.replace("127.0.0.1", "localhost") + path)]
    state, run_id = run_flow(capture_flow, url=fresh_portal.page_url)
    assert state.is_successful(), run_state(db, run_id)
    assert [row[:2] for row in loaded(db)] == [("2024-05", fresh_portal.portal.expectations["2024-05"].loaded_rows)]


def test_a_page_redirected_off_the_portal_is_not_read(db, fresh_portal):
    from urllib.parse import urlparse

    page_path = urlparse(fresh_portal.page_url).path
    elsewhere = fresh_portal.page_url.replace("127.0.0.1", "localhost")
    fresh_portal.faults[page_path] = [("redirect", elsewhere)]
    state, run_id = run_flow(capture_flow, url=fresh_portal.page_url)
    assert state.is_failed()
    status, message = run_state(db, run_id)
    assert f"{fresh_portal.page_url} redirecionou para {elsewhere}, fora do portal" in message
    assert loaded(db) == []


def test_a_redirect_to_another_scheme_is_not_followed(db, fresh_portal):
    path = f"{FILES}/terceirizados202405.xlsx"
    fresh_portal.faults[path] = [("redirect", "ftp://127.0.0.1/terceirizados202405.xlsx")]
    state, run_id = run_flow(capture_flow, url=fresh_portal.page_url)
    assert state.is_failed()
    status, message = run_state(db, run_id)
    assert (
        f"{fresh_portal.base_url}{path} redirecionou para ftp://127.0.0.1/terceirizados202405.xlsx: o esquema 'ftp:' "
        "não é seguido (só http e https, e nunca de https para http)"
    ) in message
    assert loaded(db) == []


def test_a_redirect_from_https_to_http_is_not_followed():
    import pytest
    import requests

    from pipelines.download import DownloadError, _GuardedSession

    answer = requests.Response()
    answer.status_code, answer.url = 302, "https://portal.gov.br/arquivos/terceirizados202405.xlsx"
    answer.headers["Location"] = "http://portal.gov.br/arquivos/terceirizados202405.xlsx"
    session = _GuardedSession(answer.url, frozenset())
    with pytest.raises(DownloadError, match="o esquema 'http:' não é seguido .*nunca de https para http"):
        session.get_redirect_target(answer)
    answer.headers["Location"] = "https://portal.gov.br/outro/terceirizados202405.xlsx"  # same host, https
    assert session.get_redirect_target(answer) == answer.headers["Location"]
