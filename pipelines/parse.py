"""Bytes of a CGU file -> text rows + quarantined lines. Pure functions, no I/O.

Every value stays text exactly as published (the raw layer changes nothing).
For every file: rows kept + rows quarantined = data rows in the file.

Rows with too many fields (an unquoted ``;`` inside a text field, or a stray ``;``
between fields or at the end of the line) are repaired only when every reading of
the line that gives each column the right kind of value gives the same row; otherwise
they are quarantined with the reason (see ``repair_shifted``).
"""

from __future__ import annotations

import codecs
import csv
import gc
import io
import json
import re
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

from pipelines.constants import MONTHS, SOURCE_COLUMNS, normalise_text
from pipelines.csv_dialect import CSV_DELIMITER, csv_line
from pipelines.errors import SourceFormatError

if TYPE_CHECKING:
    import pandas as pd

BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
ZIP_SIGNATURE = b"PK\x03\x04"  # an XLSX is a ZIP
SOURCE_DELIMITER = ";"  # the CGU's separator (and the local CSVs', see CSV_DELIMITER)
SENTINELS = {"", "<N/I>", "NI", "NULL", "-1", "-2"}
EXPECTED = len(SOURCE_COLUMNS)
PARSED_COLUMNS = SOURCE_COLUMNS + ("linha_origem", "observacao_reparo")
UNNAMED = "__sem_nome_"


def _matches(pattern: str):
    compiled = re.compile(pattern)
    return lambda value: value.strip() in SENTINELS or compiled.fullmatch(value.strip()) is not None


def _is_month(value: str) -> bool:
    return value.strip() in SENTINELS or normalise_text(value) in MONTHS


# What a structured column may hold (sentinels always allowed). Columns absent
# from this map are free text and the only candidates to absorb a stray ';'.
STRUCTURED = {
    "id_terc": _matches(r"\d+"),
    "cd_ug_gestora": _matches(r"\d+"),
    # digits, or the alphanumeric CNPJ issued from July 2026 (12 letters or digits, 2 check digits)
    "nr_cnpj": _matches(r"[\d./-]+|[0-9A-Za-z]{2}\.?[0-9A-Za-z]{3}\.?[0-9A-Za-z]{3}/?[0-9A-Za-z]{4}-?[0-9]{2}"),
    "nr_cpf": _matches(r"[\d*.\-]+"),
    "nr_jornada": _matches(r"\d+([.,]\d+)?"),
    "vl_mensal_salario": _matches(r"-?[\d.,]+"),
    "vl_mensal_custo": _matches(r"-?[\d.,]+"),
    "num_mes_carga": _matches(r"\d{1,2}(\.0)?"),
    "mes_carga": _is_month,
    "ano_carga": _matches(r"\d{4}(\.0)?"),
    "cd_orgao_siafi": _matches(r"-?\d+"),
    "cd_orgao_siape": _matches(r"-?\d+"),
}


@dataclass(frozen=True)
class QuarantinedLine:
    line_number: int
    raw_line: str
    reason: str


@dataclass
class ParsedFile:
    """The outcome of parsing one file.

    ``records`` holds the kept rows as ``(values, line_number, note)``: ``values`` is the
    23 source values (text, in ``SOURCE_COLUMNS`` order) as one line of the local CSV
    (';'-separated, quoted only where needed), ``note`` is the repair note or None. For
    almost every line of a CGU CSV that is the source line itself, so its fields are never
    split and joined again. ``rows`` is the same data as a ``pd.DataFrame``, built on first use.
    """

    records: list[tuple[str, int, str | None]]
    quarantine: list[QuarantinedLine]
    data_rows: int
    encoding: str
    has_header: bool
    notes: list[str] = field(default_factory=list)
    _frame: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def rows(self) -> pd.DataFrame:
        if self._frame is None:
            import pandas as pd  # imported on first use: flows that never build a DataFrame start faster

            values = csv.reader((text for text, _, _ in self.records), delimiter=CSV_DELIMITER)
            frame = pd.DataFrame(
                [[*row, line_number, note] for row, (_, line_number, note) in zip(values, self.records)],
                columns=list(PARSED_COLUMNS),
                dtype=object,
            )
            frame["linha_origem"] = frame["linha_origem"].astype("Int64")
            self._frame = frame
        return self._frame

    @property
    def loaded_rows(self) -> int:
        return len(self.records)

    @property
    def repaired_rows(self) -> int:
        return sum(1 for _, _, note in self.records if note is not None)


def _header_name(value: str) -> str:
    return value.replace("\ufeff", "").replace("ï»¿", "").strip().strip('"').strip().lower()


def _cp1252_byte(error: UnicodeDecodeError) -> tuple[str, int]:
    """Decoding error handler: an invalid byte of a UTF-8 line read as cp1252 (latin-1 for the
    five bytes cp1252 leaves undefined), the line's valid UTF-8 kept."""
    byte = error.object[error.start : error.start + 1]
    try:
        return byte.decode("cp1252"), error.start + 1
    except UnicodeDecodeError:
        return byte.decode("latin-1"), error.start + 1


codecs.register_error("terceirizados_cp1252_byte", _cp1252_byte)


def _line_end(carriage_returns: int, line_feeds: int) -> str:
    """LF (or CRLF), unless CR alone ends the lines: many more CRs than LFs (an old Mac export,
    maybe with a stray LF at the end). A CR inside a value of an LF file is one in thousands."""
    return "\r" if carriage_returns > 2 * line_feeds else "\n"


def _utf16_without_bom(content: bytes) -> str | None:
    """'utf-16-le' or 'utf-16-be' when the start reads as Latin text in UTF-16 (nearly every
    other byte zero), else None."""
    start = content[:200]
    if len(start) < 20 or len(start) % 2:
        start = start[: len(start) - len(start) % 2]
    if len(start) < 20:
        return None
    odd, even = start[1::2], start[0::2]
    # Latin text (accents included, U+0000-U+00FF) has one zero byte per character
    if odd.count(0) >= 0.9 * len(odd) and even.count(0) <= 0.1 * len(even):
        return "utf-16-le"
    if even.count(0) >= 0.9 * len(even) and odd.count(0) <= 0.1 * len(odd):
        return "utf-16-be"
    return None


def _decode_lines(content: bytes) -> tuple[list[str], str]:
    """Split into physical lines and decode them: UTF-8 (with or without BOM), else cp1252/latin-1.

    Lines end in LF or CRLF; a file with CR alone (no LF anywhere: old Mac exports) is split on
    CR. Decoding line by line keeps a file with a few cp1252 lines in an otherwise UTF-8 file
    readable without turning its accents into mojibake; in such a file (some line is valid
    UTF-8 with accents), a line that is not valid UTF-8 keeps its valid UTF-8 and only its
    invalid bytes are read as cp1252 (one stray byte does not turn the line's other accents
    into mojibake). In a file without UTF-8 accents, such a line is cp1252.
    """
    encoding = "utf-8"
    utf16 = "utf-16" if content.startswith(UTF16_BOMS) else _utf16_without_bom(content)
    if utf16:  # Excel's "Unicode text"
        text = content.decode(utf16)
        newline = _line_end(text.count("\r"), text.count("\n"))
        return [line.rstrip("\r") for line in text.split(newline)], "utf-16"
    if content.startswith(BOM):
        content, encoding = content[len(BOM) :], "utf-8-sig"
    sample = content[: 1 << 20]  # the line ends of the first MiB: counting 40 MB twice costs ~40 ms
    newline = _line_end(sample.count(b"\r"), sample.count(b"\n"))
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return [line.rstrip("\r") for line in text.split(newline)], encoding
    lines: list[str | bytes] = []
    used = set()
    for raw in content.split(newline.encode()):
        raw = raw.rstrip(b"\r")
        if raw.isascii():
            lines.append(raw.decode("ascii"))
            continue
        try:
            lines.append(raw.decode("utf-8"))
            used.add("utf-8")
        except UnicodeDecodeError:
            lines.append(raw)  # decided below, once the file's other lines are known
    if "utf-8" in used:
        decode = lambda raw: raw.decode("utf-8", "terceirizados_cp1252_byte")  # noqa: E731
    else:
        decode = lambda raw: raw.decode("cp1252", "terceirizados_cp1252_byte")  # noqa: E731
    for index, line in enumerate(lines):
        if isinstance(line, bytes):
            lines[index] = decode(line)
            used.add("cp1252")
    non_utf8 = "/".join(sorted(used - {"utf-8"}))
    if not non_utf8:
        return lines, encoding
    if "utf-8" in used:
        return lines, f"misto (utf-8 e {non_utf8})"
    return lines, non_utf8


def _split(line: str) -> list[str]:
    """Fields of one physical line. Each line is split on its own, so a stray quote
    can never swallow the lines after it."""
    if '"' not in line:
        return line.split(SOURCE_DELIMITER)
    try:
        return next(csv.reader([line], delimiter=SOURCE_DELIMITER, quotechar='"', strict=True))
    except csv.Error:
        return line.split(SOURCE_DELIMITER)


# The columns not in STRUCTURED are text. Most hold names (acronyms and names of agencies, units,
# companies, workers, job titles): a value that is not empty or a sentinel has a letter.
# These two may also hold only digits (contract numbers, numeric education codes).
ALNUM_TEXT = {"nr_contrato", "nm_escolaridade"}
TEXT_SENTINELS = {"", "<N/I>", "NI", "NULL"}
# The organ where the worker is: its acronym, name and SIAPE code are published together or
# all without value (in the 2010-2023 files each of the three is empty in 1,551 rows, evidently
# the same ones; the SIAFI code is empty more often, and '<N/I>', '-1' and '-2' come with or
# without a name). sg_orgao and nm_orgao: both filled, or both without value.
ORGAN_COLUMNS = {"sg_orgao", "nm_orgao"}
LOAD_COLUMNS = {"num_mes_carga", "mes_carga", "ano_carga"}  # empty in 1 of 3.3 million rows
_CODE = re.compile(r"-?\d+")
MAX_EXTRA_FIELDS = 20  # more stray ';' than this in one line: quarantined without searching


def _has_letter(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


def _letter_text(value: str) -> bool:
    return value.strip() in TEXT_SENTINELS or _has_letter(value)


def _alnum_text(value: str) -> bool:
    return value.strip() in TEXT_SENTINELS or any(ch.isalnum() for ch in value)


def _column_check(name: str, organ_filled: bool):
    """What a column may hold in a reading of a line with extra fields (sentinels allowed)."""
    if name in ORGAN_COLUMNS:
        if organ_filled:
            return lambda value: value.strip() not in TEXT_SENTINELS and _has_letter(value)
        return lambda value: value.strip() in TEXT_SENTINELS
    if (name == "cd_orgao_siape" and organ_filled) or name in LOAD_COLUMNS:
        return lambda value: value.strip() != "" and STRUCTURED[name](value)
    if name in STRUCTURED:
        return STRUCTURED[name]
    if name.startswith(UNNAMED):
        return lambda value: value.strip() == ""
    if name in ALNUM_TEXT:
        return _alnum_text
    return _letter_text


def _readings(fields: list[str], columns: list[str], organ_filled: bool) -> list[tuple[tuple[str, ...], tuple]]:
    """The distinct rows (at most two) that the fields can be read as, each with how.

    Each extra field is either a piece of a text column (the pieces are joined again with
    ';'; the first and last pieces are not empty, since a ';' at the edge of a text cannot
    be told from a stray one) or an empty field left by a stray separator (dropped). A
    reading counts when every column holds its kind of value (``_column_check``), with
    the organ's columns all filled or all without value (``organ_filled``). Dynamic
    programming over (field, column): what can follow a position does not depend on how
    it was reached, and two distinct rows are enough to call a line ambiguous.
    """
    n, m = len(fields), len(columns)
    checks = [_column_check(name, organ_filled) for name in columns]
    text = [name not in STRUCTURED and not name.startswith(UNNAMED) for name in columns]
    memo: dict[tuple[int, int], list] = {}

    def solve(i: int, j: int) -> list:
        if (i, j) in memo:
            return memo[(i, j)]
        found: dict[tuple, tuple] = {}
        options = []  # (value or None for a dropped field, next field, next column, step)
        spare = (n - i) - (m - j)
        if j == m:
            if all(f == "" for f in fields[i:]):
                found[()] = tuple(("drop", k, m) for k in range(i, n))
        elif spare >= 0:
            if spare > 0 and fields[i] == "":
                options.append((None, i + 1, j, ("drop", i, j)))
            if checks[j](fields[i]):
                options.append((fields[i], i + 1, j + 1, None))
            if text[j] and spare > 0 and fields[i] != "":
                for end in range(i + 2, i + spare + 2):
                    value = SOURCE_DELIMITER.join(fields[i:end])
                    if fields[end - 1] != "" and checks[j](value):
                        options.append((value, end, j + 1, ("glue", j, i, end)))
        for value, next_field, next_column, step in options:
            for values, how in solve(next_field, next_column):
                found.setdefault(values if value is None else (value,) + values, how if step is None else (step,) + how)
                if len(found) >= 2:
                    break
            if len(found) >= 2:
                break
        memo[(i, j)] = list(found.items())
        return memo[(i, j)]

    return solve(0, 0)


def _repair_note(how: tuple, columns: list[str]) -> str:
    """The repair in words. ``how`` holds ("glue", column, first field, end field) and
    ("drop", field, column before which the empty field was) steps."""
    parts = []
    for step, first, second, *rest in how:
        if step == "glue":
            parts.append(f"{rest[0] - second - 1} ';' a mais dentro de {columns[first]}: campos reunidos")
        elif second == len(columns):
            parts.append("';' a mais no fim da linha: campo vazio descartado")
        elif second == 0:
            parts.append("';' a mais no início da linha: campo vazio descartado")
        else:
            parts.append(f"';' a mais entre {columns[second - 1]} e {columns[second]}: campo vazio descartado")
    return "; ".join(parts)


def repair_shifted(fields: list[str], columns: list[str]) -> tuple[list[str], str] | None:
    """Read a line with extra fields back into its columns, or ``None`` when it cannot be
    read without ambiguity.

    The extra fields come from unquoted ';': inside a text (the text is joined again), or
    stray between fields or at the end of the line (an empty field, dropped). Every way of
    explaining them is tried (``_readings``), and the line is repaired only when exactly
    one row comes out with every column holding its kind of value. Two different rows
    (a name that could end in either column, an empty code that could be either code's)
    mean quarantine: the row is never guessed.

    A unique reading is still refused when it glues a bare code or a sentinel into a text
    ('ANATEL PE;2524' with the cents moved to the salary): that piece was most likely a
    column of its own. This only ever turns a repair into a quarantine.
    """
    extra = len(fields) - len(columns)
    if extra <= 0 or extra > MAX_EXTRA_FIELDS:
        return None
    readings = [reading for organ_filled in (True, False) for reading in _readings(fields, columns, organ_filled)][:2]
    if len(readings) != 1:
        return None
    ((values, how),) = readings
    for step in how:
        if step[0] == "glue" and any(
            piece.strip() in TEXT_SENTINELS - {""} or _CODE.fullmatch(piece.strip())
            for piece in fields[step[2] : step[3]]
        ):
            return None
    return list(values), _repair_note(how, columns)


def _looks_like_header(fields: list[str]) -> bool:
    names = {_header_name(f) for f in fields}
    return len(names & set(SOURCE_COLUMNS)) >= EXPECTED // 2


_YEAR = re.compile(r"(19|20)\d\d")


def _looks_like_data(fields: list[str]) -> bool:
    """A row of a header-less file: its first value is a worker's id, a number in every real
    file (the 3.3 million rows of 2010-2023 read as integers), or (a row without an id, or
    shifted by a stray ';') it has a month's name and a year, as the load fields are written; and
    it has at least half the columns."""
    if len(fields) < EXPECTED // 2:  # a title ("Terceirizados;Maio;2024"), not a row of 23 columns
        return False
    values = [value for value in map(as_cleaned, fields) if value is not None]
    if values and values[0].isascii() and values[0].isdigit():
        return True
    return any(normalise_text(value) in MONTHS for value in values) and any(_YEAR.fullmatch(v) for v in values)


def _is_separator_hint(line: str) -> bool:
    """Excel's first line 'sep=;' (which separator to split on), written by some exports, maybe
    quoted or followed by the row's empty fields ('sep=;;;;')."""
    hint = line.strip().strip('"').lower()
    return hint.startswith(f"sep={SOURCE_DELIMITER}") and set(hint[5:]) <= {SOURCE_DELIMITER, '"'}


def _listed(values: list[str], limit: int = 10, width: int = 40) -> str:
    """At most ``limit`` values, each cut at ``width`` characters, for a message: a broken
    header can hold a whole file (a file with unknown line ends is one line)."""
    shown = [value if len(value) <= width else value[:width] + "…" for value in values[:limit]]
    return repr(shown) + (f" e mais {len(values) - limit}" if len(values) > limit else "")


def _header_columns(fields: list[str], file_name: str) -> list[str]:
    """Map a header row to canonical names; trailing empty names become placeholders."""
    names = [_header_name(f) for f in fields]
    # A trailing ';' on every line gives nameless columns: keep them as placeholders
    # so field counts still match, and check later that they stay empty.
    for position in range(len(names) - 1, -1, -1):
        if names[position] != "":
            break
        names[position] = f"{UNNAMED}{position}"
    missing = [c for c in SOURCE_COLUMNS if c not in names]
    unknown = [n for n in names if n not in SOURCE_COLUMNS and not n.startswith(UNNAMED)]
    duplicated = sorted(name for name, times in Counter(names).items() if times > 1)
    if missing or unknown or duplicated:
        listed = [_listed(names) if names else "-" for names in (missing, unknown, duplicated)]
        raise SourceFormatError(
            f"Cabeçalho inesperado em {file_name}: colunas ausentes {listed[0]}, desconhecidas {listed[1]}, "
            f"repetidas {listed[2]}."
        )
    return names


# What the cleaning trims from both ends of a text (queries/macros/cleaning.sql, whitespace():
# Unicode's White_Space characters; tests/test_parse.py checks that both lists are the same).
TRIMMED = (
    " \t\n\x0b\x0c\r\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
MAX_LINES_NAMED = 5


def as_cleaned(value: str) -> str | None:
    """A text value as the cleaning leaves it (clean_text: trimmed; a "no value" sentinel is None)."""
    trimmed = value.strip(TRIMMED)
    return None if trimmed in TEXT_SENTINELS else trimmed


def _first_value(text: str) -> str:
    """The first value (id_terc) of a kept row's CSV text."""
    if text.startswith('"'):
        return next(csv.reader([text], delimiter=CSV_DELIMITER))[0]
    return text[: text.find(CSV_DELIMITER)]


def _trimmed_values(text: str) -> tuple[str, ...]:
    """A kept row's values as the cleaning trims them."""
    return tuple(value.strip(TRIMMED) for value in next(csv.reader([text], delimiter=CSV_DELIMITER)))


def one_row_per_worker(parsed: ParsedFile) -> ParsedFile:
    """id_terc identifies the worker in a period: staging.transformed's key is (ano, mes,
    id_terceirizado), so a row without one, or two rows with the same one, could never be
    published, and used to fail the whole materialization (every period, in the historic one).
    Such rows go to the quarantine with the reason instead (and count for MAX_QUARANTINE_PERCENT
    like any other): a row whose id is empty or a "no value" sentinel; a row whose id is not a
    number (every real id is: a totals row, a header's text taken for a row); of rows repeated value
    for value (or equal once each value is trimmed), all but the first; of rows that share an
    id with different values, all of them (which one holds is not for the pipeline to guess).
    The id is compared as the cleaning leaves it (trimmed: ``TRIMMED``). A file without such
    rows is returned as it is."""
    records = parsed.records
    keys = [as_cleaned(_first_value(text)) for text, _, _ in records]  # id_terc as the cleaning leaves it
    numeric = all(key is not None and key.isascii() and key.isdigit() for key in keys)
    if numeric and len(set(keys)) == len(keys):
        return parsed
    by_key: dict[str, list[int]] = {}
    reasons: dict[int, str] = {}
    for index, key in enumerate(keys):
        if key is None:
            reasons[index] = "linha sem id_terc (vazio ou marcador de sem valor): não pode ser publicada"
        elif not (key.isascii() and key.isdigit()):
            reasons[index] = f"id_terc {key[:40]!r} não é um número (uma linha de total?): não pode ser publicada"
        else:
            by_key.setdefault(key, []).append(index)
    for key, indexes in by_key.items():
        if len(indexes) == 1:
            continue
        first = indexes[0]
        if all(records[index][0] == records[first][0] for index in indexes):
            for index in indexes[1:]:
                reasons[index] = f"linha repetida: igual à linha {records[first][1]}"
            continue
        if len({_trimmed_values(records[index][0]) for index in indexes}) == 1:  # the same once cleaned
            for index in indexes[1:]:
                reasons[index] = (
                    f"linha repetida: igual à linha {records[first][1]} a menos de espaços nas pontas dos valores"
                )
            continue
        lines = ", ".join(str(records[index][1]) for index in indexes[:MAX_LINES_NAMED])
        more = f" e mais {len(indexes) - MAX_LINES_NAMED}" if len(indexes) > MAX_LINES_NAMED else ""
        for index in indexes:
            reasons[index] = (
                f"id_terc {key[:40]!r} repetido nas linhas {lines}{more} com valores diferentes: não se sabe qual vale"
            )
    return _quarantined(parsed, reasons)


def _quarantined(parsed: ParsedFile, reasons: dict[int, str]) -> ParsedFile:
    """``parsed`` with the kept rows at these indexes moved to the quarantine, with the reasons."""
    records = parsed.records
    refused = [QuarantinedLine(records[index][1], records[index][0], reason) for index, reason in reasons.items()]
    return ParsedFile(
        [record for index, record in enumerate(records) if index not in reasons],
        sorted(parsed.quarantine + refused, key=lambda line: line.line_number),
        parsed.data_rows,
        parsed.encoding,
        parsed.has_header,
        parsed.notes,
    )


MAX_VALUE_CHARACTERS = 500
# The marts' widest key: a contract and an organ, each a JSON array of three values
# (queries/models/marts/contratos_por_periodo.sql), in one B-tree entry of at most 2,704 bytes.
ANALYSIS_KEY_COLUMNS = ("cd_ug_gestora", "nr_contrato", "nr_cnpj", "sg_orgao_sup_tabela_ug", "sg_orgao", "nm_orgao")
MAX_KEY_BYTES = 2400  # with room for the entry's header, the year and month and the arrays' punctuation
MAX_JSON_BYTES_PER_CHARACTER = 6  # a control character is written \u00XX


def no_oversized_values(parsed: ParsedFile) -> ParsedFile:
    """A row with a value longer than MAX_VALUE_CHARACTERS goes to the quarantine. PostgreSQL's
    B-tree indexes (staging.transformed's key, the results app's indexes on company and organ
    names, the marts' keys) hold at most ~2.7 kB of a key: one row with a value of a few kB
    failed every historic materialization after it. 500 characters are at most 2 kB, so a
    one-column key always fits; the marts' keys of several values fit for any realistic text.
    Real values are under 200 characters; a longer one is a broken line (a quote left open
    across lines, two columns glued) rather than a name. The values of the marts' widest key
    (``ANALYSIS_KEY_COLUMNS``, as JSON) must fit in ``MAX_KEY_BYTES`` together: three organ
    names of 500 four-byte characters each used to fail every historic materialization."""
    reasons: dict[int, str] = {}
    for index, (text, _, _) in enumerate(parsed.records):
        if len(text) <= MAX_KEY_BYTES // MAX_JSON_BYTES_PER_CHARACTER:
            continue  # nothing in the line can be too long: almost every row stops here
        try:
            values = next(csv.reader([text], delimiter=CSV_DELIMITER))
        except csv.Error:  # a value past the csv module's own limit (131,072 characters): too long too
            values = text.split(CSV_DELIMITER)
        long = [
            f"{name} ({len(value)})" for name, value in zip(SOURCE_COLUMNS, values) if len(value) > MAX_VALUE_CHARACTERS
        ]
        if long:
            reasons[index] = f"valor com mais de {MAX_VALUE_CHARACTERS} caracteres: {', '.join(long)}"
            continue
        key_bytes = sum(
            len(json.dumps(value, ensure_ascii=False).encode())
            for name, value in zip(SOURCE_COLUMNS, values)
            if name in ANALYSIS_KEY_COLUMNS
        )
        if key_bytes > MAX_KEY_BYTES:
            reasons[index] = (
                f"valores longos demais para a chave das tabelas de análise ({', '.join(ANALYSIS_KEY_COLUMNS)}: "
                f"{key_bytes} bytes, o limite é {MAX_KEY_BYTES})"
            )
    return _quarantined(parsed, reasons) if reasons else parsed


def _parse_records(source_rows, file_name: str, can_repair: bool, lines_are_values: bool):
    """Shared row loop for CSV lines and XLSX rows.

    ``source_rows`` yields (line_number, raw_line, fields); ``fields`` may be None (CSV:
    split only when needed). The first non-blank row decides: a header row, or data in
    the standard column order (header-less file). With ``lines_are_values`` (CSV), a
    line in the standard order with exactly 23 fields, no quote and no control character
    is already the CSV text of its values and is kept as it is.
    """
    kept, quarantine = [], []
    columns, has_header, data_rows = None, True, 0
    unnamed: list[int] = []
    order: list[int] | None = None  # positions of SOURCE_COLUMNS in the file's columns
    plain_separators = None  # separators of a line that can be kept as it is

    def reject(line_number, raw_line, reason):
        quarantine.append(QuarantinedLine(line_number, raw_line, reason))

    for line_number, raw_line, fields in source_rows:
        if raw_line.strip() == "":
            continue  # blank line: not a data row
        if columns is None:
            if _is_separator_hint(raw_line):
                continue
            fields = fields if fields is not None else _split(raw_line)
            if _looks_like_header(fields):
                columns = _header_columns(fields, file_name)
                unnamed = [i for i, name in enumerate(columns) if name.startswith(UNNAMED)]
            elif _looks_like_data(fields):
                columns, has_header = list(SOURCE_COLUMNS), False
            else:
                for other in (",", "\t", "|"):
                    if _looks_like_header(raw_line.split(other)) or _looks_like_data(raw_line.split(other)):
                        raise SourceFormatError(
                            f"O arquivo {file_name} parece separado por {other!r}, não por "
                            f"{SOURCE_DELIMITER!r} como os da CGU: o formato do arquivo mudou? Nada foi "
                            "carregado; os dados anteriores do período não foram alterados."
                        )
                few = f" tem só {len(fields)} campo(s) (um título?) e" if len(fields) < EXPECTED // 2 else ""
                raise SourceFormatError(
                    f"A primeira linha de {file_name}{few} não é o cabeçalho esperado (as {EXPECTED} colunas: "
                    f"{', '.join(SOURCE_COLUMNS[:3])}, …) nem uma linha de dados (que começa pelo id_terc, "
                    f"um número): {_listed(fields)}. O formato do arquivo mudou? Os dados anteriores do "
                    "período não foram alterados."
                )
            order = None if columns == list(SOURCE_COLUMNS) else [columns.index(c) for c in SOURCE_COLUMNS]
            if lines_are_values and order is None and SOURCE_DELIMITER == CSV_DELIMITER:
                plain_separators = EXPECTED - 1
            if has_header:
                continue
        data_rows += 1
        # a header line again (two exports joined): data lines start with the numeric id
        if not raw_line[:1].isdigit():
            fields = fields if fields is not None else _split(raw_line)
            if _looks_like_header(fields):
                named = [_header_name(f) for f in fields]
                if [name for name in named if name] != [name for name in columns if not name.startswith(UNNAMED)]:
                    # the lines after it would be read in another order than theirs (or the first
                    # line was a preamble taken for data, and this is the real header)
                    raise SourceFormatError(
                        f"A linha {line_number} de {file_name} é um cabeçalho com outra ordem de colunas que a "
                        + ("do cabeçalho do arquivo" if has_header else "padrão (o arquivo começa sem cabeçalho)")
                        + ": há algo antes do cabeçalho, ou dois arquivos emendados? Nada foi carregado; os dados "
                        "anteriores do período não foram alterados."
                    )
                reject(line_number, raw_line, "cabeçalho repetido no meio do arquivo (dois arquivos emendados?)")
                continue
        if (
            plain_separators is not None
            and raw_line.count(SOURCE_DELIMITER) == plain_separators
            and '"' not in raw_line
            and "\x00" not in raw_line
            and "\r" not in raw_line
            and raw_line.replace(SOURCE_DELIMITER, "").strip()
        ):
            kept.append((raw_line, line_number, None))
            continue
        if fields is None:
            fields = _split(raw_line)
        if "\x00" in raw_line:
            reject(line_number, raw_line.replace("\x00", "\\0"), "caractere NUL na linha")
            continue
        if not "".join(fields).strip():
            reject(line_number, raw_line, "linha sem nenhum valor")
            continue
        note = None
        if len(fields) > len(columns):
            repaired = repair_shifted(fields, columns) if can_repair else None
            if repaired is None:
                reject(
                    line_number,
                    raw_line,
                    f"{len(fields)} campos em vez de {len(columns)}: sobram campos e não há reparo inequívoco",
                )
                continue
            fields, note = repaired
        elif len(fields) < len(columns):
            if len(fields) < len(columns) - len(unnamed):  # only the header's trailing ';' may be missing
                reject(line_number, raw_line, f"{len(fields)} campos em vez de {len(columns)}: linha incompleta")
                continue
            fields = fields + [""] * (len(columns) - len(fields))
        if unnamed and any(fields[i].strip() for i in unnamed):
            reject(line_number, raw_line, "valor em coluna sem nome no cabeçalho")
            continue
        kept.append((csv_line(fields if order is None else [fields[i] for i in order]), line_number, note))
    if columns is None:
        raise SourceFormatError(f"O arquivo {file_name} não tem nenhuma linha de dados.")
    return kept, quarantine, data_rows, has_header


def parse_csv(content: bytes, file_name: str) -> ParsedFile:
    if content.startswith(ZIP_SIGNATURE):
        raise SourceFormatError(
            f"O arquivo {file_name} é um arquivo ZIP (um XLSX?), não um CSV: o link diz .csv, mas o conteúdo é de "
            "outro formato. Nada foi carregado; os dados anteriores do período não foram alterados."
        )
    lines, encoding = _decode_lines(content)
    numbered = ((number, line, None) for number, line in enumerate(lines, start=1))
    kept, quarantine, data_rows, has_header = _parse_records(
        numbered, file_name, can_repair=True, lines_are_values=True
    )
    notes = [] if has_header else ["arquivo sem cabeçalho: ordem padrão das 23 colunas assumida"]
    return ParsedFile(kept, quarantine, data_rows, encoding, has_header, notes)


def cell_text(value) -> str:
    """An XLSX cell as the text the portal meant (integers without '.0')."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def _first_filled_row(rows) -> list | None:
    for cells in rows:
        if any(cell not in (None, "") for cell in cells):
            return cells
    return None


def _data_sheet(workbook, file_name: str) -> tuple[list, list[str]]:
    """The rows of the workbook's one visible worksheet whose first filled row is the header
    (the common case, one sheet, reads nothing else), and notes on the sheets left out. Hidden
    sheets (an old copy kept by whoever exported the file) are never read; two visible sheets
    with the header (one period split in two, or two copies) or none fail the file, naming the
    sheets, instead of loading a part of it, or the wrong one."""
    from python_calamine import SheetTypeEnum, SheetVisibleEnum

    sheets = [sheet for sheet in workbook.sheets_metadata if sheet.typ == SheetTypeEnum.WorkSheet]
    visible = [sheet.name for sheet in sheets if sheet.visible == SheetVisibleEnum.Visible]
    notes = [f"planilha oculta {sheet.name!r} não lida" for sheet in sheets if sheet.name not in visible]
    if len(visible) == 1 and not notes:
        return workbook.get_sheet_by_name(visible[0]).to_python(skip_empty_area=False), notes
    with_header, others = [], []
    for name in visible:
        rows = workbook.get_sheet_by_name(name).to_python(skip_empty_area=False)
        first = _first_filled_row(rows)
        if first is not None and _looks_like_header([cell_text(cell) for cell in first]):
            with_header.append((name, rows))
        elif first is not None:
            others.append(name)
    if len(with_header) != 1:
        found = "nenhuma" if not with_header else f"{len(with_header)} planilhas"
        raise SourceFormatError(
            f"O XLSX {file_name} tem {found} com o cabeçalho dos terceirizados entre as planilhas visíveis "
            f"{_listed(visible)}"
            + (" (partes do mesmo período ou cópias: não se sabe qual carregar)" if with_header else "")
            + ". O período não foi carregado; os dados anteriores dele não foram alterados."
        )
    notes += [f"planilha {name!r} sem o cabeçalho dos terceirizados não lida" for name in others]
    return with_header[0][1], notes


def parse_xlsx(content: bytes, file_name: str) -> ParsedFile:
    from python_calamine import CalamineWorkbook

    try:
        workbook = CalamineWorkbook.from_filelike(io.BytesIO(content))
        sheet_rows, notes = _data_sheet(workbook, file_name)
    except SourceFormatError:
        raise
    except Exception as exc:  # calamine raises its own error types
        raise SourceFormatError(f"Não foi possível ler o XLSX {file_name}: {exc}") from exc

    def rows_fields():
        for number, cells in enumerate(sheet_rows, start=1):
            # inline fast paths for the two common cell types (strings, integral floats)
            fields = [
                c if type(c) is str else str(int(c)) if type(c) is float and c.is_integer() else cell_text(c)
                for c in cells
            ]
            while len(fields) > EXPECTED and fields[-1] == "":
                fields.pop()  # empty cells right of the table
            yield number, SOURCE_DELIMITER.join(fields).rstrip(SOURCE_DELIMITER), fields

    kept, quarantine, data_rows, has_header = _parse_records(
        rows_fields(), file_name, can_repair=False, lines_are_values=False
    )
    if not has_header:
        raise SourceFormatError(f"O XLSX {file_name} não tem a linha de cabeçalho esperada.")
    return ParsedFile(kept, quarantine, data_rows, "xlsx", has_header, notes)


@contextmanager
def _gc_paused():
    """A file becomes millions of small strings and lists but no reference cycles: the
    cyclic GC would only rescan them again and again (measured: ~20% of the parse time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse_file(content: bytes, file_format: str, file_name: str) -> ParsedFile:
    """Parse a CGU file of any format the portal has used."""
    parsers = {"xlsx": parse_xlsx, "csv": parse_csv}
    if file_format not in parsers:
        raise SourceFormatError(f"Formato de arquivo não suportado: {file_format} ({file_name}).")
    with _gc_paused():
        return parsers[file_format](content, file_name)


def parse_for_load(content: bytes, file_format: str, file_name: str) -> ParsedFile:
    """What the capture loads: ``parse_file``, without the rows that could never be published
    (``no_oversized_values``, ``one_row_per_worker``)."""
    return one_row_per_worker(no_oversized_values(parse_file(content, file_format, file_name)))
