"""CSV exports that spreadsheet programs open safely.

Excel, LibreOffice and Google Sheets run a cell that begins with ``=``, ``+``, ``-``
or ``@`` (and, in some versions, tab or carriage return) as a formula, so a value such
as ``=HYPERLINK(...)`` in the data would become a live link or command in whoever
opens the file (CSV/formula injection). Text cells that begin with one of these get a
leading apostrophe, which the spreadsheet shows as plain text; numbers are left alone,
so a negative amount stays ``-12.5`` and is still a number.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from numbers import Number

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
TEXT_MARKER = "'"


def spreadsheet_safe(value):
    """A cell value that no spreadsheet program runs as a formula.

    Numbers (int, float, Decimal, numpy numbers) and None come back as they are; any
    other value is exported as text, so its text gets the apostrophe when it begins
    with a formula character."""
    if value is None or isinstance(value, Number):
        return value
    text = value if isinstance(value, str) else str(value)
    return TEXT_MARKER + text if text.startswith(FORMULA_PREFIXES) else text


def csv_stream(header: Iterable, rows: Iterable[Iterable], chunk_rows: int = 5000) -> Iterator[str]:
    """The CSV text of header and rows, every cell through ``spreadsheet_safe``, in
    chunks of ``chunk_rows`` rows (for a streamed HTTP response)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([spreadsheet_safe(cell) for cell in header])
    for count, row in enumerate(rows, start=1):
        writer.writerow([spreadsheet_safe(cell) for cell in row])
        if count % chunk_rows == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
