"""Scraping the CGU page into published periods."""

import pytest

from bench.portal_generator import default_periods
from pipelines.demo import render_page
from pipelines.errors import PortalStructureError
from pipelines.portal import parse_portal_page

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


def test_month_inside_longer_text():
    html = '<h3>2024</h3><ul><li><a class="internal-link" href="/a/terceirizados202405.csv">Maio de 2024</a></li></ul>'
    [found] = parse_portal_page(html, PAGE_URL)
    assert (found.year, found.month) == (2024, 5)


@pytest.mark.parametrize(
    ("href", "text", "reason"),
    [
        (
            "/a/terceirizados202309.csv",
            "Maio",
            "o nome do arquivo diz 2023-09, mas a página o lista em 2024-05: não se sabe qual vale",
        ),
        (
            "/a/terceirizados.csv",
            "Janeiro de 2025",
            "o texto do link ('Janeiro de 2025') diz outro ano que o título (2024)",
        ),
    ],
)
def test_a_link_naming_another_period_than_its_place_is_unplaced(href, text, reason):
    """A new year's link added to last year's list ('terceirizados202501.csv' or 'Janeiro de
    2025' under 2024) used to become 2024's period, or its ignored second link: the newest
    period was then skipped and the capture said Success."""
    html = year_block("2024", link(href, text), link("/a/terceirizados202401.csv", "Janeiro"))
    listing = parse_portal_page(html, PAGE_URL, today=TODAY)
    assert [f.label for f in listing] == ["2024-01"]
    assert [u.reason for u in listing.unplaced] == [reason]
    with pytest.raises(PortalStructureError, match="estrutura da página mudou"):
        listing.require_all_placed()


@pytest.mark.parametrize(
    "shape",
    [
        "<h3>2025</h3><ul><li><a href='/a/terceirizados202501.csv'>Janeiro</a></li></ul>",
        "<h3>2025</h3><ul><li><a class='external-link' href='/a/terceirizados202501.csv'>Janeiro</a></li></ul>",
        "<h3>2025</h3><ol><li><a class='internal-link' href='/a/terceirizados202501.csv'>Janeiro</a></li></ol>",
        "<h3>2025</h3><p><a class='internal-link' href='/a/terceirizados202501.CSV'>Janeiro</a></p>",
    ],
)
def test_a_new_link_written_another_way_is_still_read(shape):
    """Only ``ul a.internal-link`` used to be read: a new period's link without the class, or
    in another list or a paragraph, was skipped in silence and the capture took the period
    before it as the newest."""
    html = shape + year_block("2024", link("/a/t202409.csv", "Setembro"))
    listing = parse_portal_page(html, PAGE_URL, today=date(2026, 11, 29))
    assert [f.label for f in listing] == ["2025-01", "2024-09"] and listing.unplaced == []


def test_a_data_file_outside_the_month_lists_without_a_month_is_ignored_with_a_warning(caplog):
    html = "<p><a href='/a/consolidado.csv'>Base consolidada</a></p>" + year_block(
        "2024", link("/a/t202409.csv", "Setembro")
    )
    with caplog.at_level("WARNING", logger="pipelines.portal"):
        listing = parse_portal_page(html, PAGE_URL, today=TODAY)
    assert [f.label for f in listing] == ["2024-09"] and listing.unplaced == []
    assert "consolidado.csv" in caplog.text


def test_the_newest_period_linked_to_two_files_is_not_guessed():
    """Both links are unplaced: the latest capture fails naming them, and the historic one loads
    the other periods and fails naming them (it used to load the first, a partial file)."""
    html = year_block(
        "2024",
        link("/a/t202409_parcial.csv", "Setembro"),
        link("/a/t202409.csv", "Setembro"),
        link("/a/t202405.csv", "Maio"),
        link("/a/t202405_b.csv", "Maio"),
    )
    listing = parse_portal_page(html, PAGE_URL, today=TODAY)
    assert [f.url for f in listing] == [f"{HOST}/a/t202405.csv"]  # an older period: the first link, as before
    assert listing.duplicates == {"2024-05": [f"{HOST}/a/t202405_b.csv"]}
    assert [(u.url, u.reason) for u in listing.unplaced] == [
        (
            url,
            "o período 2024-09, o mais recente da página, está em mais de um link, para arquivos diferentes: "
            "não se sabe qual vale",
        )
        for url in (f"{HOST}/a/t202409_parcial.csv", f"{HOST}/a/t202409.csv")
    ]
    with pytest.raises(PortalStructureError, match="t202409_parcial.csv"):
        listing.require_all_placed()


# -- a page that changed shape: nothing placed in the wrong period, nothing followed off the portal --

from datetime import date  # noqa: E402
from urllib.parse import urljoin  # noqa: E402

from pipelines.portal import FIRST_PUBLISHED_PERIOD, PortalListing, UnplacedLink  # noqa: E402

TODAY = date(2026, 11, 29)


def link(href, text):
    return f'<li><a class="internal-link" href="{href}">{text}</a></li>'


def year_block(heading, *links):
    return f"<h3>{heading}</h3><ul>{''.join(links)}</ul>"


def test_an_unreadable_year_heading_never_lends_its_links_to_another_year(caplog):
    html = (
        year_block("2025", link("/a/terceirizados202505.xlsx", "Maio"))
        + year_block("2O24", link("/a/terceirizados202409.xlsx", "Setembro"))
        + year_block("2023", link("/a/terceirizados202305.csv", "Maio"))
    )
    with caplog.at_level("WARNING", logger="pipelines.portal"):
        listing = parse_portal_page(html, PAGE_URL, today=TODAY)
    assert isinstance(listing, PortalListing) and listing.files == list(listing)
    assert [f.label for f in listing] == ["2025-05", "2023-05"]  # 2024-09 is not 2025-09
    assert listing.unplaced == [
        UnplacedLink(
            heading="2O24",
            text="Setembro",
            url=f"{HOST}/a/terceirizados202409.xlsx",
            reason="o título <h3> '2O24' não é um ano",
        )
    ]
    assert f"o título <h3> '2O24' não é um ano (link 'Setembro' para {HOST}/a/terceirizados202409.xlsx)" in caplog.text
    with pytest.raises(PortalStructureError) as raised:
        listing.require_all_placed()
    assert str(raised.value).startswith(
        "A estrutura da página mudou: o título <h3> '2O24' não é um ano (link 'Setembro' para "
    )
    assert "não é possível saber qual é o período mais recente" in str(raised.value)


@pytest.mark.parametrize(
    "heading, reason",
    [
        ("2023 e 2024", "o título <h3> '2023 e 2024' tem mais de um ano"),
        ("Veja também", "o título <h3> 'Veja também' não é um ano"),
    ],
)
def test_headings_that_are_not_one_year(heading, reason):
    html = year_block("2024", link("/a/t202405.csv", "Maio")) + year_block(heading, link("/a/t202309.csv", "Setembro"))
    listing = parse_portal_page(html, PAGE_URL, today=TODAY)
    assert [f.label for f in listing] == ["2024-05"]
    assert [u.reason for u in listing.unplaced] == [reason]


def test_blank_headings_stay_harmless_and_links_above_every_heading_are_unplaced():
    html = (
        f"<ul>{link('/a/t202301.csv', 'Janeiro')}</ul>"
        + year_block("2024", link("/a/t202405.csv", "Maio"))
        + "<h3>&nbsp;</h3><h3> \n </h3>"
        + f"<ul>{link('/a/t202401.csv', 'Janeiro')}</ul>"
    )
    listing = parse_portal_page(html, PAGE_URL, today=TODAY)
    assert [f.label for f in listing] == ["2024-05", "2024-01"]
    assert [(u.heading, u.reason) for u in listing.unplaced] == [
        (None, "o link não está abaixo de nenhum título <h3> de ano")
    ]


def test_a_month_link_to_something_else_than_csv_or_xlsx_is_unplaced():
    html = year_block("2024", link("/a/t202405.csv", "Maio"), link("/a/t202401.zip", "Janeiro"))
    listing = parse_portal_page(html, PAGE_URL, today=TODAY)
    assert [f.label for f in listing] == ["2024-05"]
    assert [u.reason for u in listing.unplaced] == ["o link não aponta para um arquivo CSV ou XLSX"]


@pytest.mark.parametrize("text", ["05/2024", "Mai/2024", "May", "Arquivo mais recente"])
def test_a_data_file_link_whose_text_names_no_month_is_unplaced_not_ignored(text):
    """The newest link written another way ("05/2024") used to be skipped in silence (a DEBUG
    line): the capture then took the period before it as the newest and said Success. A CSV or
    XLSX link in the month lists is a published file: without a month it is unplaced, and the
    runs that need the newest period fail naming it."""
    html = year_block("2024", link("/a/base202405.xlsx", text), link("/a/t202401.csv", "Janeiro"))
    listing = parse_portal_page(html, PAGE_URL, today=TODAY)
    assert [f.label for f in listing] == ["2024-01"]
    assert [(u.text, u.reason) for u in listing.unplaced] == [(text, f"o texto do link ('{text}') não nomeia um mês")]
    with pytest.raises(PortalStructureError, match="base202405.xlsx"):
        listing.require_all_placed()


def test_links_to_other_documents_without_a_month_are_still_ignored():
    html = year_block("2024", link("/a/dicionario.pdf", "Dicionário de dados"), link("/a/t202401.csv", "Janeiro"))
    listing = parse_portal_page(html, PAGE_URL, today=TODAY)
    assert [f.label for f in listing] == ["2024-01"] and listing.unplaced == []


def test_periods_in_the_future_or_before_the_first_publication_are_never_placed():
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
    html = "".join(
        year_block(str(year), *(link(f"/a/terceirizados{year}{m:02d}.csv", months[m - 1]) for m in range(12, 0, -1)))
        for year in range(2041, 1999, -1)
    )
    assert html.count("internal-link") == 504
    listing = parse_portal_page(html, PAGE_URL, today=TODAY)
    labels = [f.label for f in listing]
    assert labels[0] == "2026-11" and labels[-1] == "2019-01" and len(labels) == 95
    assert date(2019, 1, 1) == FIRST_PUBLISHED_PERIOD
    reasons = [u.reason for u in listing.unplaced]
    assert len(reasons) == 504 - 95
    assert reasons[0] == "o período 2041-12 está no futuro (hoje é 2026-11-29)"
    assert reasons[-1] == "o período 2000-01 é anterior à primeira publicação do portal (2019-01)"
    with pytest.raises(PortalStructureError) as raised:
        listing.require_all_placed()
    message = str(raised.value)
    assert "2041-12 está no futuro" in message and f"e mais {504 - 95 - 10} link(s)" in message


@pytest.mark.parametrize(
    "href, reason",
    [
        (
            "http://evil.example/terceirizados202401.csv",
            "o link aponta para o host 'evil.example', que não é o do portal (www.gov.br) "
            "nem está em PORTAL_ALLOWED_HOSTS",
        ),
        ("//evil.example/terceirizados202401.csv", "o link aponta para o host 'evil.example'"),
        ("https://www.gov.br@evil.example/terceirizados202401.csv", "o link aponta para o host 'evil.example'"),
        ("file:///etc/terceirizados202401.csv", "o esquema 'file:' não é permitido (só http e https)"),
        ("javascript:alert(1)//terceirizados202401.csv", "o esquema 'javascript:' não é permitido"),
        ("data:text/csv;base64,QUJD", "o esquema 'data:' não é permitido"),
        ("ftp://www.gov.br/terceirizados202401.csv", "o esquema 'ftp:' não é permitido"),
        ("/a/terceirizados\x00202401.csv", "o endereço contém caracteres de controle (como o byte nulo)"),
        ("/a/terceirizados\x1b202401.csv", "o endereço contém caracteres de controle"),
        ("/a/terceirizados%00202401.csv", "o nome do arquivo contém caracteres de controle (como o byte nulo)"),
        (
            "/a/..%5Cterceirizados202401.csv",
            "o nome do arquivo contém caracteres de controle (como o byte nulo) ou barra",
        ),
    ],
)
def test_links_off_the_portal_or_with_unsafe_addresses_are_refused(caplog, href, reason):
    html = year_block("2024", link("/a/terceirizados202405.csv", "Maio"), link(href, "Janeiro"))
    with caplog.at_level("WARNING", logger="pipelines.portal"):
        listing = parse_portal_page(html, PAGE_URL, today=TODAY)
    assert [f.label for f in listing] == ["2024-05"]
    [refused] = listing.unplaced
    assert refused.reason.startswith(reason) and refused.heading == "2024" and refused.text == "Janeiro"
    shown = urljoin(PAGE_URL, href).replace("\x00", "\\x00").replace("\x1b", "\\x1b")  # control bytes escaped
    assert refused.describe() == f"{refused.reason} (link 'Janeiro' para {shown})"
    assert f"Link da página não usado: {refused.describe()}" in caplog.text
    assert "\x00" not in caplog.text and "\x1b" not in caplog.text


def test_extra_allowed_hosts_are_followed():
    html = year_block(
        "2024",
        link("https://Espelho.Exemplo.org/a/terceirizados202405.csv", "Maio"),
        link("http://outro.example/a/terceirizados202401.csv", "Janeiro"),
    )
    listing = parse_portal_page(html, PAGE_URL, allowed_hosts=("espelho.exemplo.org",), today=TODAY)
    assert [f.url for f in listing] == ["https://Espelho.Exemplo.org/a/terceirizados202405.csv"]
    assert [u.url for u in listing.unplaced] == ["http://outro.example/a/terceirizados202401.csv"]


def test_no_placed_file_is_still_the_clear_no_link_failure_and_names_the_unplaced():
    html = year_block("2024", link("http://evil.example/t202405.csv", "Maio"))
    with pytest.raises(PortalStructureError) as raised:
        parse_portal_page(html, PAGE_URL, today=TODAY)
    assert "nenhum link de arquivo CSV/XLSX por mês" in str(raised.value)
    assert "o link aponta para o host 'evil.example'" in str(raised.value)


def test_listing_survives_pickling_for_dask_workers():
    import pickle

    listing = parse_portal_page(
        year_block("2O24", link("/a/t202405.csv", "Maio")) + year_block("2023", link("/a/t202305.csv", "Maio")),
        PAGE_URL,
        today=TODAY,
    )
    copy = pickle.loads(pickle.dumps(listing))
    assert copy == listing and copy.unplaced == listing.unplaced and copy.page_url == PAGE_URL


# -- the page's file links without a CSS selector (pipelines.portal.data_file_links) --------------

from bs4 import BeautifulSoup  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pipelines.portal import data_file_links  # noqa: E402

_TAGS = ["ul", "ol", "li", "div", "p", "span", "h3"]
_CLASSES = ["internal-link", "internal-link extra", "extra internal-link", "internal-links", "Internal-Link", "", None]


@st.composite
def _pages(draw, depth=0):
    """Random HTML: links with and without the class or the href, inside and outside lists."""
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        if depth < 4 and draw(st.booleans()):
            tag = draw(st.sampled_from(_TAGS))
            parts.append(f"<{tag}>{draw(_pages(depth + 1))}</{tag}>")
        else:
            css = draw(st.sampled_from(_CLASSES))
            href = draw(st.sampled_from([' href="a.csv"', ' href="b.XLSX"', ' href="c.pdf"', ' href=""', ""]))
            attribute = "" if css is None else f' class="{css}"'
            parts.append(f"<a{attribute}{href}>{draw(st.sampled_from(['Maio', 'x', '']))}</a>")
    return "".join(parts)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_pages())
def test_the_file_links_are_those_the_css_selector_selects(html):
    soup = BeautifulSoup(html, "html.parser")
    assert data_file_links(soup) == soup.select("ul a.internal-link[href], a[href$='.csv' i], a[href$='.xlsx' i]")


@pytest.mark.parametrize(
    ("href", "text"),
    [
        ("/a/terceirizados202409.csv", "Setembro (retificado em fev/2025)"),
        ("/a/terceirizados_setembro_2024_20250612.csv", "Setembro"),
    ],
)
def test_an_annotated_text_or_an_upload_date_in_the_name_is_not_another_period(href, text):
    listing = parse_portal_page(year_block("2024", link(href, text)), PAGE_URL, today=TODAY)
    assert [f.label for f in listing] == ["2024-09"] and listing.unplaced == []


def test_a_data_file_outside_the_lists_whose_name_names_a_period_is_unplaced():
    """'<h3>2025</h3><p><a href=terceirizados202501.csv>terceirizados202501.csv</a></p>': the
    text names no month, but the name names a period: a published file, never skipped."""
    html = "<h3>2025</h3><p><a href='/a/terceirizados202501.csv'>terceirizados202501.csv</a></p>" + year_block(
        "2024", link("/a/t202409.csv", "Setembro")
    )
    listing = parse_portal_page(html, PAGE_URL, today=TODAY)
    assert [f.label for f in listing] == ["2024-09"]
    assert [u.url for u in listing.unplaced] == [f"{HOST}/a/terceirizados202501.csv"]


@pytest.mark.parametrize(
    "text", ["Setembro (retificado em fevereiro de 2025)", "Setembro (publicado em janeiro/2025)", "Setembro de 2024"]
)
def test_only_a_year_right_after_the_link_s_own_month_counts(text):
    listing = parse_portal_page(year_block("2024", link("/a/t202409.csv", text)), PAGE_URL, today=TODAY)
    assert [f.label for f in listing] == ["2024-09"] and listing.unplaced == []


def test_another_dataset_s_file_elsewhere_on_the_page_is_ignored():
    """A spreadsheet of another dataset in a footer, with a period in its name: ignored with a
    warning (only a file named like the CGU's, terceirizados..., is a period's file)."""
    html = year_block("2024", link("/a/t202409.csv", "Setembro")) + (
        "<footer><a href='/cgu/orcamento_202412.xlsx'>Orçamento (planilha)</a></footer>"
    )
    listing = parse_portal_page(html, PAGE_URL, today=TODAY)
    assert [f.label for f in listing] == ["2024-09"] and listing.unplaced == []


def test_a_link_to_the_newest_file_above_the_lists_is_that_file():
    html = "<p><a href='/a/terceirizados202409.csv'>terceirizados202409.csv</a></p>" + year_block(
        "2024", link("/a/terceirizados202409.csv", "Setembro")
    )
    listing = parse_portal_page(html, PAGE_URL, today=TODAY)
    assert [f.label for f in listing] == ["2024-09"] and listing.unplaced == []


@pytest.mark.parametrize(
    "other",
    [
        "http://www.gov.br/a/terceirizados202409.csv",
        "https://WWW.GOV.BR/a/terceirizados202409.csv",
        "https://www.gov.br/a/terceirizados%32%30%32%34%30%39.csv",
        "https://www.gov.br/a/terceirizados202409.csv?download=1",
        "/a/terceirizados202409.csv/@@download/file/terceirizados202409.csv",
        "/a//terceirizados202409.csv",
        "/a/terceirizados202409.csv/@@download/file",
        "/a/terceirizados202409.csv/view",
        "/a/terceirizados202409.csv/",
        "/a/./terceirizados202409.csv",
    ],
)
def test_other_spellings_of_one_file_are_that_file(other):
    """The newest period linked twice to one file used to be refused as two different files."""
    html = year_block("2024", link("/a/terceirizados202409.csv", "Setembro"), link(other, "Setembro"))
    listing = parse_portal_page(html, PAGE_URL, today=TODAY)
    assert [f.label for f in listing] == ["2024-09"] and listing.duplicates == {} and listing.unplaced == []
    alone = parse_portal_page(year_block("2024", link(other, "Setembro")), PAGE_URL, today=TODAY)
    assert [(f.label, f.format) for f in alone] == [("2024-09", "csv")]


def test_a_listed_link_above_the_headings_to_a_placed_file_is_that_file():
    html = "<ul>" + link("/a/terceirizados202409.csv", "Dados mais recentes (setembro de 2024)") + "</ul>"
    listing = parse_portal_page(
        html + year_block("2024", link("/a/terceirizados202409.csv", "Setembro")), PAGE_URL, today=TODAY
    )
    assert [f.label for f in listing] == ["2024-09"] and listing.unplaced == []


def test_a_file_elsewhere_not_named_like_the_cgu_s_is_ignored_even_with_a_month(caplog):
    html = year_block("2024", link("/a/terceirizados202409.csv", "Setembro")) + (
        "<footer><a href='/cgu/orcamento_202406.xlsx'>Orçamento de junho</a></footer>"
    )
    with caplog.at_level("WARNING", logger="pipelines.portal"):
        listing = parse_portal_page(html, PAGE_URL, today=TODAY)
    assert [f.label for f in listing] == ["2024-09"] and listing.unplaced == []
    assert "orcamento_202406.xlsx" in caplog.text
