"""The local CSV dialect, written by the parser and the storage and read by ``COPY``:
';'-separated like the CGU's own files (decimal commas need no quoting), UTF-8, quoted
only where a value holds the separator, a quote or a line break."""

from __future__ import annotations

from pipelines.constants import CSV_DELIMITER

__all__ = ["CSV_DELIMITER", "csv_line", "csv_value"]


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
