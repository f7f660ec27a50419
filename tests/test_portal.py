"""Scraping the CGU page into published periods."""

import pytest

from bench.portal_generator import default_periods
from pipelines.errors import PortalStructureError
from pipelines.portal import parse_portal_page
from pipelines.sample_portal import render_page

PAGE_URL = "https://www.gov.br/cgu/pt-br/acesso-a-informacao/dados-abertos/arquivos/terceirizados"
HOST = "https://www.gov.br"


def test_every_period_once_newest_first_with_noise_ignored():
    html = render_page(default_periods(), HOST)
    # the page really has the noise the scraper must survive
    assert "<h3> </h3>" in html and ".pdf" in html and html.count(">2019</h3>") == 2
    files = parse_portal_page(html, PAGE_URL)
    labels = [f.label for f in files]
    assert len(labels) == len(set(labels)) == 24
    assert labels[0] == "2026-09" and labels[-1] == "2019-01"
    assert labels == sorted(labels, reverse=True)
    by_label = {f.label: f for f in files}
    # relative hrefs become absolute; the first link of a doubly-linked period wins
    assert by_label["2019-01"].url == f"{HOST}/cgu/terceirizados/arquivos/terceirizados-201901_1.csv"
    assert by_label["2019-09"].file_name == "terceirizados_201909.csv"
    assert by_label["2024-05"].format == "xlsx" and by_label["2023-09"].format == "csv"
    assert all(f.month in (1, 5, 9) for f in files)


def test_empty_heading_does_not_shift_years():
    html = """<h3>2024</h3><ul><li><a class="internal-link" href="/a/terceirizados202405.xlsx">Maio</a></li></ul>
    <h3></h3><h3>2023</h3><ul><li><a class="internal-link" href="/a/terceirizados202309.csv">setembro</a></li>
    <li><a class="internal-link" href="/a/terceirizados202305.csv">MAIO</a></li></ul>"""
    files = parse_portal_page(html, PAGE_URL)
    assert [(f.year, f.month) for f in files] == [(2024, 5), (2023, 9), (2023, 5)]


def test_month_names_with_accents_and_spaces():
    html = '<h3> Ano 2025 </h3><ul><li><a class="internal-link" href="x202503.csv"> Março </a></li></ul>'
    [found] = parse_portal_page(html, PAGE_URL + "/")
    assert (found.year, found.month, found.url) == (2025, 3, PAGE_URL + "/x202503.csv")


@pytest.mark.parametrize(
    "html, detail",
    [
        ("<html><body><p>Página em manutenção</p></body></html>", "nenhum título"),
        ("<h2>2024</h2><ul><li><a class='internal-link' href='t.csv'>Maio</a></li></ul>", "nenhum título"),
        ("<h3>2024</h3><ul><li><a href='/dicionario.pdf'>Dicionário</a></li></ul>", "nenhum link"),
        ("<h3>2024</h3><ul><li><a class='internal-link' href='/t.pdf'>Maio</a></li></ul>", "nenhum link"),
    ],
)
def test_changed_page_is_a_clear_failure(html, detail):
    with pytest.raises(PortalStructureError, match="estrutura da página mudou") as error:
        parse_portal_page(html, PAGE_URL)
    assert detail in str(error.value)


def test_month_inside_longer_text_and_period_mismatch_warning(caplog):
    html = ('<h3>2024</h3><ul><li><a class="internal-link" href="/a/terceirizados202309.csv">Maio de 2024</a>'
            '</li></ul>')
    with caplog.at_level("WARNING", logger="pipelines.portal"):
        [found] = parse_portal_page(html, PAGE_URL)
    assert (found.year, found.month) == (2024, 5)
    assert "terceirizados202309.csv está listado em 2024-05" in caplog.text
