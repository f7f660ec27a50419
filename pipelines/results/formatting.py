"""Brazilian number and time formats for the results app."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

PLOTLY_SEPARATORS = ",."  # decimal comma, thousands point


def brl(value) -> str:
    """R$ 1.234.567,89"""
    if value is None:
        return "—"
    text = f"{Decimal(value):,.2f}"
    return "R$ " + text.replace(",", "_").replace(".", ",").replace("_", ".")


def integer(value) -> str:
    """1.574.964"""
    if value is None:
        return "—"
    return f"{int(value):,}".replace(",", ".")


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "—"
    seconds = int((end - start) / timedelta(seconds=1))
    minutes, seconds = divmod(max(seconds, 0), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def period_label(year: int, month: int) -> str:
    return f"{month:02d}/{year}"
