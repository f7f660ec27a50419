"""CGU page HTML -> the list of published files, newest first.

The page lists each year as an ``<h3>`` followed by a ``<ul>`` of links
(``a.internal-link``) whose text is the month and whose href is the file.
Real-page noise handled here: unrelated links (the data dictionary PDF),
an empty ``<h3>`` before one year's list, relative hrefs and the same period
linked twice.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date
from pathlib import PurePosixPath
from urllib.parse import unquote, urljoin, urlparse

from bs4 import BeautifulSoup

from pipelines.constants import DATA_FORMATS, MONTHS, normalise_text
from pipelines.errors import PortalStructureError

logger = logging.getLogger("pipelines.portal")

YEAR_PATTERN = re.compile(r"\b(20\d{2})\b")
FILE_PERIOD_PATTERN = re.compile(r"(20\d{2})(0[1-9]|1[0-2])")


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


def _month_of(text: str) -> int | None:
    """The month named in a link text ("Maio", " maio ", "Maio de 2024")."""
    for word in re.split(r"[^a-z]+", normalise_text(text)):
        if word in MONTHS:
            return MONTHS[word]
    return None


def _file_format(url: str) -> str | None:
    suffix = PurePosixPath(urlparse(url).path).suffix.lower().lstrip(".")
    return suffix if suffix in DATA_FORMATS else None


def _year_of(link) -> int | None:
    """Year of the nearest preceding ``<h3>`` that names a year (empty headings are skipped)."""
    for heading in link.find_all_previous("h3"):
        match = YEAR_PATTERN.search(heading.get_text(" ", strip=True))
        if match:
            return int(match.group(1))
    return None


def parse_portal_page(html: str, page_url: str) -> list[PublishedFile]:
    """Return the unique published periods, newest first.

    Raises ``PortalStructureError`` when the page has no year headings or no
    data-file links: a changed page must never look like an empty success.
    """
    soup = BeautifulSoup(html, "html.parser")
    year_headings = [h for h in soup.find_all("h3") if YEAR_PATTERN.search(h.get_text(" ", strip=True))]
    if not year_headings:
        raise PortalStructureError(
            f"A estrutura da página mudou: nenhum título <h3> com ano encontrado em {page_url}."
        )

    by_period: dict[tuple[int, int], PublishedFile] = {}
    for link in soup.select("ul a.internal-link[href]"):
        month = _month_of(link.get_text(" ", strip=True))
        url = urljoin(page_url, link["href"].strip())
        file_format = _file_format(url)
        if month is None or file_format is None:
            logger.debug("Link ignorado (não é arquivo de dados mensal): %s", url)
            continue
        year = _year_of(link)
        if year is None:
            continue
        found = PublishedFile(year=year, month=month, url=url, format=file_format)
        named = FILE_PERIOD_PATTERN.search(found.file_name)
        if named and (int(named.group(1)), int(named.group(2))) != (year, month):
            logger.warning("O arquivo %s está listado em %s na página; vale o período da página.",
                           found.file_name, found.label)
        previous = by_period.get((year, month))
        if previous is None:
            by_period[(year, month)] = found
        elif previous.url != found.url:
            logger.warning(
                "Período %s publicado em dois links; mantido o primeiro (%s), ignorado %s.",
                found.label, previous.url, found.url,
            )

    if not by_period:
        raise PortalStructureError(
            f"A estrutura da página mudou: nenhum link de arquivo CSV/XLSX por mês encontrado em {page_url}."
        )
    return sorted(by_period.values(), key=lambda f: (f.year, f.month), reverse=True)
