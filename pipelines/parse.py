"""Bytes of a CGU file -> text rows + quarantined lines. Pure functions, no I/O.

Every value stays text exactly as published (the raw layer changes nothing).
For every file: rows kept + rows quarantined = data rows in the file.

Rows with too many fields (an unquoted ``;`` inside a text field shifts the
columns) are repaired only when exactly one text column can absorb the extra
fields and every structured column (codes, CPF, money, month, year) still
looks right; otherwise they are quarantined with the reason.
"""

from __future__ import annotations

import csv
import gc
import io
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

from pipelines.constants import CSV_DELIMITER, MONTHS, SOURCE_COLUMNS, normalise_text
from pipelines.errors import SourceFormatError

if TYPE_CHECKING:
    import pandas as pd

BOM = b"\xef\xbb\xbf"
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
    "nr_cnpj": _matches(r"[\d./-]+"),
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
                columns=list(PARSED_COLUMNS), dtype=object,
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


def csv_value(value: str) -> str:
    """One value of the local CSV, quoted when it holds the separator, a quote or a line break."""
    if any(ch in value for ch in CSV_DELIMITER + '"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


def csv_line(values: list[str]) -> str:
    """Values as one line of the local CSV (without the line break)."""
    line = CSV_DELIMITER.join(values)
    if line.count(CSV_DELIMITER) == len(values) - 1 and '"' not in line and "\n" not in line and "\r" not in line:
        return line
    return CSV_DELIMITER.join(csv_value(v) for v in values)


def _header_name(value: str) -> str:
    return value.replace("\ufeff", "").replace("ï»¿", "").strip().strip('"').strip().lower()


def _decode_lines(content: bytes) -> tuple[list[str], str]:
    """Split into physical lines and decode them: UTF-8 (with or without BOM), else cp1252/latin-1.

    Decoding line by line keeps a file with a few cp1252 bytes in an otherwise
    UTF-8 file readable without turning its accents into mojibake.
    """
    encoding = "utf-8"
    if content.startswith(BOM):
        content, encoding = content[len(BOM):], "utf-8-sig"
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return [line.rstrip("\r") for line in text.split("\n")], encoding
    lines, used = [], set()
    for raw in content.split(b"\n"):
        raw = raw.rstrip(b"\r")
        if raw.isascii():
            lines.append(raw.decode("ascii"))
            continue
        for candidate in ("utf-8", "cp1252", "latin-1"):
            try:
                lines.append(raw.decode(candidate))
            except UnicodeDecodeError:
                continue
            used.add(candidate)
            break
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


def _has_letter(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


def _valid(row: list[str], columns: list[str]) -> bool:
    return all(STRUCTURED[name](value) for name, value in zip(columns, row) if name in STRUCTURED)


def repair_shifted(fields: list[str], columns: list[str]) -> tuple[list[str], str] | None:
    """Merge the extra fields back into the one text column that can hold them.

    Returns the repaired row and a note, or ``None`` when no merge or more than
    one merge gives a row whose structured columns are all valid.
    """
    extra = len(fields) - len(columns)
    candidates = {}
    for position, name in enumerate(columns):
        if name in STRUCTURED or name.startswith(UNNAMED):
            continue
        # A ';' typed inside a text sits between words: a fragment without letters is
        # more likely a split number (decimal comma, code) than part of the text.
        if not all(_has_letter(fragment) for fragment in fields[position:position + extra + 1]):
            continue
        glued = SOURCE_DELIMITER.join(fields[position:position + extra + 1])
        merged = fields[:position] + [glued] + fields[position + extra + 1:]
        if _valid(merged, columns):
            candidates.setdefault(tuple(merged), name)
    if len(candidates) != 1:
        return None
    (merged, name), = candidates.items()
    return list(merged), f"{extra} ';' a mais dentro de {name}: campos reunidos"


def _looks_like_header(fields: list[str]) -> bool:
    names = {_header_name(f) for f in fields}
    return len(names & set(SOURCE_COLUMNS)) >= EXPECTED // 2


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
    unknown = [n for n in names if n not in SOURCE_COLUMNS]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if missing or unknown or duplicated:
        raise SourceFormatError(
            f"Cabeçalho inesperado em {file_name}: "
            f"colunas ausentes {missing or '-'}, desconhecidas {unknown or '-'}, repetidas {duplicated or '-'}."
        )
    return names


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
            fields = fields if fields is not None else _split(raw_line)
            if _looks_like_header(fields):
                columns = _header_columns(fields, file_name)
                unnamed = [i for i, name in enumerate(columns) if name.startswith(UNNAMED)]
            else:
                columns, has_header = list(SOURCE_COLUMNS), False
            order = None if columns == list(SOURCE_COLUMNS) else [columns.index(c) for c in SOURCE_COLUMNS]
            if lines_are_values and order is None and SOURCE_DELIMITER == CSV_DELIMITER:
                plain_separators = EXPECTED - 1
            if has_header:
                continue
        data_rows += 1
        if plain_separators is not None and raw_line.count(SOURCE_DELIMITER) == plain_separators \
                and '"' not in raw_line and "\x00" not in raw_line \
                and "\r" not in raw_line and raw_line.replace(SOURCE_DELIMITER, "").strip():
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
                reject(line_number, raw_line,
                       f"{len(fields)} campos em vez de {len(columns)}: sobram campos e não há reparo inequívoco")
                continue
            fields, note = repaired
        elif len(fields) < len(columns):
            reject(line_number, raw_line, f"{len(fields)} campos em vez de {len(columns)}: linha incompleta")
            continue
        if unnamed and any(fields[i].strip() for i in unnamed):
            reject(line_number, raw_line, "valor em coluna sem nome no cabeçalho")
            continue
        kept.append((csv_line(fields if order is None else [fields[i] for i in order]), line_number, note))
    if columns is None:
        raise SourceFormatError(f"O arquivo {file_name} não tem nenhuma linha de dados.")
    return kept, quarantine, data_rows, has_header


def parse_csv(content: bytes, file_name: str) -> ParsedFile:
    lines, encoding = _decode_lines(content)
    numbered = ((number, line, None) for number, line in enumerate(lines, start=1))
    kept, quarantine, data_rows, has_header = _parse_records(numbered, file_name, can_repair=True,
                                                             lines_are_values=True)
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


def parse_xlsx(content: bytes, file_name: str) -> ParsedFile:
    from python_calamine import CalamineWorkbook

    try:
        workbook = CalamineWorkbook.from_filelike(io.BytesIO(content))
        sheet_rows = workbook.get_sheet_by_index(0).to_python(skip_empty_area=False)
    except Exception as exc:  # calamine raises its own error types
        raise SourceFormatError(f"Não foi possível ler o XLSX {file_name}: {exc}") from exc

    def rows_fields():
        for number, cells in enumerate(sheet_rows, start=1):
            # inline fast paths for the two common cell types (strings, integral floats)
            fields = [c if type(c) is str else str(int(c)) if type(c) is float and c.is_integer() else cell_text(c)
                      for c in cells]
            while len(fields) > EXPECTED and fields[-1] == "":
                fields.pop()  # empty cells right of the table
            yield number, SOURCE_DELIMITER.join(fields).rstrip(SOURCE_DELIMITER), fields

    kept, quarantine, data_rows, has_header = _parse_records(rows_fields(), file_name, can_repair=False,
                                                             lines_are_values=False)
    if not has_header:
        raise SourceFormatError(f"O XLSX {file_name} não tem a linha de cabeçalho esperada.")
    return ParsedFile(kept, quarantine, data_rows, "xlsx", has_header)


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

