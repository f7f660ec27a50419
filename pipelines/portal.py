"""CGU page HTML -> the list of published files, newest first, and the links that could
not be placed.

The page lists each year as an ``<h3>`` followed by a ``<ul>`` of links
(``a.internal-link``) whose text is the month and whose href is the file; a link to a
CSV/XLSX file elsewhere on the page (without the class, in an ``<ol>`` or a paragraph)
is read the same way.
Real-page noise handled here: unrelated links (the data dictionary PDF),
an empty ``<h3>`` before one year's list, relative hrefs and the same period
linked twice (the first link is kept; for the newest period, two links to different files
are both unplaced: which one is the period's file is not guessed).

A link whose text names a month is never guessed into a period: when its heading
is not one year, its period is implausible (in the future, or before the first
publication), its file name or its text names another period, it is not a CSV/XLSX,
or its address is unsafe (another host than the page's or PORTAL_ALLOWED_HOSTS, a
scheme other than http/https, control characters), it is reported as *unplaced* and
never downloaded.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urljoin, urlparse

from pipelines.constants import DATA_FORMATS, MONTHS, normalise_text
from pipelines.errors import PortalStructureError

if TYPE_CHECKING:
    from bs4 import BeautifulSoup

logger = logging.getLogger("pipelines.portal")

YEAR_PATTERN = re.compile(r"\b(20\d{2})\b")
# A period in a file name: six digits, YYYYMM, not part of a longer number (an upload date
# 20250612 names no period)
FILE_PERIOD_PATTERN = re.compile(r"(?<!\d)(20\d{2})(0[1-9]|1[0-2])(?!\d)")
# A month in a link text, and the year written right after it ("Janeiro de 2025", "janeiro/2025")
MONTH_YEAR_PATTERN = re.compile(r"\b(" + "|".join(MONTHS) + r")\b(?:\W*(?:de\W+)?(20\d{2})\b)?")
# The start of the name of every file the CGU published on the page (terceirizados-201901_1.csv, ...)
OWN_FILE_NAME = re.compile(r"terceirizad", re.IGNORECASE)
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
ALLOWED_SCHEMES = ("http", "https")
# The first period the CGU published on the page (terceirizados-201901_1.csv).
FIRST_PUBLISHED_PERIOD = date(2019, 1, 1)
# Unplaced links named in one error message (every one is logged).
MAX_NAMED_LINKS = 10


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\x00``): safe in logs and in PostgreSQL."""
    return CONTROL_CHARACTERS.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


@dataclass(frozen=True)
class PublishedFile:
    """One file published on the portal for one period (year, month)."""

    year: int
    month: int
    url: str
    format: str

    @property
    def period(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def label(self) -> str:
        return f"{self.year}-{self.month:02d}"

    @property
    def file_name(self) -> str:
        return PurePosixPath(unquote(urlparse(self.url).path)).name


@dataclass(frozen=True)
class UnplacedLink:
    """A month link of the page that was not placed in any period, and why (in Portuguese)."""

    heading: str | None  # text of the <h3> the link is under (None: no heading above it)
    text: str
    url: str
    reason: str

    def describe(self) -> str:
        return f"{self.reason} (link '{printable(self.text)}' para {printable(self.url)})"


def describe_unplaced(unplaced: list[UnplacedLink], limit: int = MAX_NAMED_LINKS) -> str:
    """The first ``limit`` unplaced links, described, and how many more there are."""
    text = "; ".join(link.describe() for link in unplaced[:limit])
    if len(unplaced) > limit:
        text += f"; e mais {len(unplaced) - limit} link(s)"
    return text


class PortalListing(list):
    """The placed files, newest first (the list itself: ``listing[0]`` is the newest),
    plus ``unplaced``: the page's month links that could not be placed in a period, and
    ``duplicates``: the other links of a period linked more than once (the first is kept: the
    real page links 2019-09 under two names).

    A list so that code that maps over or indexes the files keeps working; its
    attributes survive pickling (Dask workers)."""

    def __init__(
        self,
        files: Iterable[PublishedFile] = (),
        unplaced: Iterable[UnplacedLink] = (),
        page_url: str = "",
        duplicates: dict[str, list[str]] | None = None,
    ):
        super().__init__(files)
        self.unplaced = list(unplaced)
        self.page_url = page_url
        self.duplicates = dict(duplicates or {})  # period label -> its other links (the first is kept)

    @property
    def files(self) -> list[PublishedFile]:
        return list(self)

    def require_all_placed(self) -> None:
        """Raise ``PortalStructureError`` naming the unplaced links, if any: with a link of
        unknown period on the page, the newest period is unknown too."""
        if self.unplaced:
            raise PortalStructureError(
                f"A estrutura da página mudou: {describe_unplaced(self.unplaced)}. Nenhum período foi carregado: "
                f"com links sem período definido em {self.page_url}, não é possível saber qual é o período mais "
                "recente."
            )


def _month_of(text: str) -> int | None:
    """The month named in a link text ("Maio", " maio ", "Maio de 2024")."""
    for word in re.split(r"[^a-z]+", normalise_text(text)):
        if word in MONTHS:
            return MONTHS[word]
    return None


def _file_format(url: str) -> str | None:
    suffix = PurePosixPath(_file_address(url)[1]).suffix.lower().lstrip(".")
    return suffix if suffix in DATA_FORMATS else None


def _heading_of(link) -> str | None:
    """Text of the nearest preceding non-blank ``<h3>`` (blank headings are skipped)."""
    for heading in link.find_all_previous("h3"):
        text = heading.get_text(" ", strip=True)
        if text:
            return text
    return None


def _year_problem(heading: str | None) -> tuple[int | None, str | None]:
    """(year, None) when the heading names one year, else (None, why not)."""
    if heading is None:
        return None, "o link não está abaixo de nenhum título <h3> de ano"
    years = set(YEAR_PATTERN.findall(heading))
    if len(years) == 1:
        return int(years.pop()), None
    if years:
        return None, f"o título <h3> '{printable(heading)}' tem mais de um ano"
    return None, f"o título <h3> '{printable(heading)}' não é um ano"


def _address_problem(href: str, url: str, page_host: str, allowed_hosts: frozenset[str]) -> str | None:
    """Why the link's address must not be downloaded, or None when it may."""
    if CONTROL_CHARACTERS.search(href):
        return "o endereço contém caracteres de controle (como o byte nulo)"
    parsed = urlparse(url)
    if parsed.scheme.lower() not in ALLOWED_SCHEMES:
        return f"o esquema '{printable(parsed.scheme.lower())}:' não é permitido (só http e https)"
    host = (parsed.hostname or "").lower()
    if not host:
        return "o endereço não tem host"
    if host != page_host and host not in allowed_hosts:
        return (
            f"o link aponta para o host '{printable(host)}', que não é o do portal ({page_host}) nem está em "
            "PORTAL_ALLOWED_HOSTS"
        )
    name = unquote(parsed.path)
    if CONTROL_CHARACTERS.search(name) or "\\" in name:
        return "o nome do arquivo contém caracteres de controle (como o byte nulo) ou barra invertida"
    return None


def _period_problem(year: int, month: int, today: date) -> str | None:
    period = date(year, month, 1)
    label = f"{year}-{month:02d}"
    if period > today.replace(day=1):
        return f"o período {label} está no futuro (hoje é {today.isoformat()})"
    if period < FIRST_PUBLISHED_PERIOD:
        return f"o período {label} é anterior à primeira publicação do portal ({FIRST_PUBLISHED_PERIOD:%Y-%m})"
    return None


def _listed_link(link) -> bool:
    """A link of the page's month lists: ``<a class="internal-link" href=...>`` inside a list
    (``ul``), what the CSS selector ``ul a.internal-link[href]`` selects. Written out instead of
    ``soup.select``: compiling the selector costs the scheduled run ~0.08 s."""
    return "internal-link" in (link.get("class") or ()) and link.find_parent("ul") is not None


def data_file_links(soup: BeautifulSoup) -> list:
    """The page's file links, in page order: those of the month lists (``_listed_link``) and
    every other link to a CSV or XLSX file, wherever it is (without the class, in an ``<ol>``
    or a paragraph): a new period's link written another way is read, not skipped in silence."""
    return [
        link
        for link in soup.find_all("a", href=True)
        if _listed_link(link) or _file_format(urljoin("http://h/", link["href"].strip())) is not None
    ]


def _named_period_problem(found: PublishedFile, text: str) -> str | None:
    """Why the file name or the link text says another period than the page's place, or None.
    Every real file name names its own period (2019-01 to 2024-05); a link of another period
    placed under a year (a new year's link added to last year's list) would otherwise take
    that year's period, or be dropped as its second link, in silence."""
    named = FILE_PERIOD_PATTERN.search(found.file_name)
    if named and (int(named.group(1)), int(named.group(2))) != (found.year, found.month):
        return (
            f"o nome do arquivo diz {named.group(1)}-{named.group(2)}, mas a página o lista em {found.label}: "
            "não se sabe qual vale"
        )
    first_month = MONTH_YEAR_PATTERN.search(normalise_text(text))  # the link's month, maybe with a year
    if first_month and first_month.group(2) and first_month.group(2) != str(found.year):
        return f"o texto do link ('{printable(text)}') diz outro ano que o título ({found.year})"
    return None


def _file_address(url: str) -> tuple[str, str]:
    """Host (any case) and the file's path: %-decoded, normalised ('//', '/./', a trailing '/'),
    without Plone's views of a file ('/@@download/...', '/view')."""
    parsed = urlparse(url)
    path = unquote(parsed.path).split("/@@download")[0]
    path = posixpath.normpath(path) if path else path
    if path.endswith("/view"):
        path = path[: -len("/view")]
    return (parsed.hostname or "").lower(), path


def same_file(url: str, other: str) -> bool:
    """Two links to one file: the same host and path (``_file_address``), whatever the scheme
    and the query ('?download=1')."""
    return _file_address(url) == _file_address(other)


def parse_portal_page(
    html: str, page_url: str, allowed_hosts: Iterable[str] = (), today: date | None = None
) -> PortalListing:
    """Return the unique published periods, newest first, with the links that could not be placed.

    ``allowed_hosts``: hosts besides the page's own whose links may be followed
    (PORTAL_ALLOWED_HOSTS); ``today``: for the "period in the future" check (default:
    the current date). Each unplaced link is logged as a warning. Raises
    ``PortalStructureError`` when the page has no year headings or no placed data-file
    link: a changed page must never look like an empty success.
    """
    today = today or date.today()
    page_host = (urlparse(page_url).hostname or "").lower()
    extra_hosts = frozenset(host.lower() for host in allowed_hosts)
    # imported here: BeautifulSoup (and soupsieve) take ~0.1 s to import, and the flows that read
    # no page (the materializations) import this module too
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    year_headings = [h for h in soup.find_all("h3") if YEAR_PATTERN.search(h.get_text(" ", strip=True))]
    if not year_headings:
        raise PortalStructureError(f"A estrutura da página mudou: nenhum título <h3> com ano encontrado em {page_url}.")

    by_period: dict[tuple[int, int], PublishedFile] = {}
    unplaced: list[UnplacedLink] = []
    duplicates: dict[str, list[str]] = {}
    # unplaced links outside the month lists, or only for want of a year heading: kept unless
    # a placed file's (a "newest file" link above the lists)
    outside: list[UnplacedLink] = []
    for link in data_file_links(soup):
        text = link.get_text(" ", strip=True)
        month = _month_of(text)
        href = link["href"].strip()
        url = urljoin(page_url, href)
        file_format = _file_format(url)
        if month is None and file_format is None:  # not a monthly file (the data dictionary, other pages)
            logger.debug("Link ignorado (não é arquivo de dados mensal): %s", printable(href))
            continue
        name = PurePosixPath(_file_address(url)[1]).name
        if not _listed_link(link) and not (OWN_FILE_NAME.search(name) and (month or FILE_PERIOD_PATTERN.search(name))):
            # a CSV/XLSX elsewhere on the page not named like the CGU's files (another dataset's,
            # in a footer), or named so but with no month in its text nor period in its name
            logger.warning(
                "Link ignorado: arquivo de dados fora das listas de meses, sem nome de arquivo de período dos "
                "terceirizados ('%s', %s).",
                printable(text),
                printable(url),
            )
            continue
        heading = _heading_of(link)
        year, problem = _year_problem(heading)
        address_problem = _address_problem(href, url, page_host, extra_hosts)
        # only for want of a year heading: the same file placed elsewhere settles it
        only_the_heading = problem is not None and address_problem is None
        problem = address_problem or problem
        if problem is None and file_format is None:
            problem = "o link não aponta para um arquivo CSV ou XLSX"
        if problem is None and month is None:  # a data file whose text names no month ("05/2024")
            problem = f"o texto do link ('{printable(text)}') não nomeia um mês"
        if problem is None:
            problem = _period_problem(year, month, today)
        if problem is not None:
            refused = UnplacedLink(heading=heading, text=text, url=url, reason=problem)
            (outside if only_the_heading or not _listed_link(link) else unplaced).append(refused)
            continue
        found = PublishedFile(year=year, month=month, url=url, format=file_format)
        problem = _named_period_problem(found, text)
        if problem is not None:
            refused = UnplacedLink(heading=heading, text=text, url=url, reason=problem)
            (unplaced if _listed_link(link) else outside).append(refused)
            continue
        previous = by_period.get((year, month))
        if previous is None:
            by_period[(year, month)] = found
        elif not same_file(previous.url, found.url):
            duplicates.setdefault(found.label, []).append(found.url)
            logger.warning(
                "Período %s publicado em dois links; mantido o primeiro (%s), ignorado %s.",
                found.label,
                previous.url,
                found.url,
            )

    # a link elsewhere on the page to a file a month list places (a "download the newest file"
    # link above the lists) is that file, not an unplaced one
    placed = [found.url for found in by_period.values()]
    unplaced += [link for link in outside if not any(same_file(link.url, url) for url in placed)]
    for refused in unplaced:
        logger.warning("Link da página não usado: %s.", refused.describe())
    newest = max(by_period, default=None)
    if newest is not None and by_period[newest].label in duplicates:
        # which file is the newest period's is not for the pipeline to guess: neither is used
        kept = by_period.pop(newest)
        for url in (kept.url, *duplicates.pop(kept.label)):
            refused = UnplacedLink(
                heading=str(kept.year),
                text=kept.label,
                url=url,
                reason=f"o período {kept.label}, o mais recente da página, está em mais de um link, para arquivos "
                "diferentes: não se sabe qual vale",
            )
            unplaced.append(refused)
            logger.warning("Link da página não usado: %s.", refused.describe())
    if not by_period:
        named = f" Links não usados: {describe_unplaced(unplaced)}." if unplaced else ""
        raise PortalStructureError(
            f"A estrutura da página mudou: nenhum link de arquivo CSV/XLSX por mês encontrado em {page_url}.{named}"
        )
    files = sorted(by_period.values(), key=lambda f: (f.year, f.month), reverse=True)
    return PortalListing(files, unplaced, page_url, duplicates)
