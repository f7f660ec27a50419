"""Property: a line with stray ';' is repaired into exactly its original row or quarantined
with its raw text, never loaded as a different row (issue 11, value fidelity)."""

import csv

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.portal_generator import (
    ACCENTED_FIRST,
    AGENCIES,
    CATEGORIES,
    COMPANIES,
    EDUCATION,
    FIRST,
    HEADER,
    HOURS,
    LAST,
)
from pipelines.constants import MONTH_NAMES, SOURCE_COLUMNS
from pipelines.parse import STRUCTURED, parse_file

# companies with the alphanumeric CNPJ issued from July 2026, with and without punctuation
NEW_COMPANIES = [("12.ABC.345/01DE-35", "EMPRESA NOVA LTDA"), ("12ABC34501DE35", "NOVA; SERVICOS S A")]

FIDELITY = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Real shapes of the organ columns besides the generator's agencies: in the 2010-2023 files
# sg_orgao, nm_orgao and cd_orgao_siape are empty together, and cd_orgao_siafi is empty more often.
ORGANS = [agency[4:] for agency in AGENCIES] + [("", "", "-2", ""), ("", "", "", ""), ("<N/I>", "<N/I>", "<N/I>", "-1")]
UNITS = ["SEDE", "CAMPUS CENTRO", "GERENCIA REGIONAL", "ANATEL PE", "BLOCO A", "CONJUR", ""]
TEXT_COLUMNS = [i for i, name in enumerate(SOURCE_COLUMNS) if name not in STRUCTURED]
MARKERS = {"<N/I>", "NI", "NULL"}  # machine-written sentinels: no one types a ';' inside them


def money(cents: int, style: str) -> str:
    units, rest = divmod(cents, 100)
    return {
        "comma": f"{units},{rest:02d}",
        "dot": f"{units}.{rest:02d}",
        "xlsx": str(units) if not rest else repr(cents / 100),
    }[style]


@st.composite
def realistic_rows(draw) -> list[str]:
    agency = draw(st.sampled_from(AGENCIES))
    organ = draw(st.sampled_from(ORGANS + [agency[4:]] * 3))
    cnpj, company = draw(st.sampled_from(COMPANIES + NEW_COMPANIES))
    month = draw(st.sampled_from([1, 5, 9]))
    year = draw(st.integers(2019, 2026))
    style = draw(st.sampled_from(["comma", "dot", "xlsx"]))
    salary = draw(st.integers(0, 900_000))
    contract = draw(st.sampled_from(["{:03d}/{}", "Nº {:03d}/{}", "NULL", "{}/{}"])).format(
        draw(st.integers(1, 150)), draw(st.integers(2010, 2026))
    )
    return [
        str(draw(st.integers(1, 9_999_999))),
        agency[0],
        agency[1],
        agency[2],
        agency[3],
        contract,
        cnpj,
        company,
        f"***.{draw(st.integers(0, 999)):03d}.{draw(st.integers(0, 999)):03d}-**",
        " ".join(
            [draw(st.sampled_from(FIRST + ACCENTED_FIRST)), draw(st.sampled_from(LAST)), draw(st.sampled_from(LAST))]
        ),
        draw(st.sampled_from([c for c, _ in CATEGORIES])),
        draw(st.sampled_from([e for e, _ in EDUCATION])),
        draw(st.sampled_from([h for h, _ in HOURS])),
        draw(st.sampled_from(UNITS)),
        money(salary, style),
        money(salary * 2 + draw(st.integers(0, 99)), style),
        str(month),
        MONTH_NAMES[month],
        str(draw(st.sampled_from([year, year - 1]))),
        *organ,
    ]


@st.composite
def shifted_lines(draw) -> tuple[list[str], str]:
    """A realistic row (the truth) and its line with stray ';'. A ';' typed inside a text
    belongs to the value (the truth keeps it); one between fields, at the start or at the end
    of the line is a stray separator (the truth does not have it)."""
    row = draw(realistic_rows())
    for _ in range(draw(st.integers(0, 3))):
        candidates = [i for i in TEXT_COLUMNS if len(row[i]) >= 2 and row[i] not in MARKERS]
        if not candidates:
            break
        column = draw(st.sampled_from(candidates))
        position = draw(st.integers(1, len(row[column]) - 1))
        row[column] = row[column][:position] + ";" + row[column][position:]
    gaps = draw(st.lists(st.integers(0, len(row)), max_size=3))
    if draw(st.booleans()):
        gaps.append(len(row))  # the common case: a ';' at the end of the line
    parts = []
    for index, value in enumerate(row):
        parts.append(";" * gaps.count(index))
        parts.append(value + (";" if index < len(row) - 1 else ""))
    line = "".join(parts) + ";" * gaps.count(len(row))
    return row, line


@given(
    lines=st.lists(shifted_lines(), min_size=1, max_size=8),
    header=st.booleans(),
    crlf=st.booleans(),
    blank_after=st.sets(st.integers(0, 7)),
)
@FIDELITY
def test_stray_separators_give_the_original_row_or_quarantine(lines, header, crlf, blank_after):
    check_file(lines, header, crlf, blank_after)


def check_file(lines, header, crlf, blank_after):
    """Parse one generated file; every line is its original row or quarantined as it is."""
    text_lines = [";".join(HEADER)] if header else []
    expected = {}  # physical line number -> (truth, raw line)
    for index, (row, line) in enumerate(lines):
        text_lines.append(line)
        expected[len(text_lines)] = (row, line)
        if index in blank_after:
            text_lines.append("")
    newline = "\r\n" if crlf else "\n"
    parsed = parse_file((newline.join(text_lines) + newline).encode(), "csv", "propriedade.csv")

    assert parsed.data_rows == len(lines)
    assert parsed.loaded_rows + len(parsed.quarantine) == parsed.data_rows
    for text, line_number, note in parsed.records:
        row, line = expected.pop(line_number)
        assert next(csv.reader([text], delimiter=";")) == row, (line, note)
        assert (note is None) == (line.count(";") == len(row) - 1), (line, note)
    for entry in parsed.quarantine:
        row, line = expected.pop(entry.line_number)
        assert entry.raw_line == line
        assert line.count(";") != len(row) - 1, "uma linha sem ';' a mais não vai para a quarentena"
    assert expected == {}
