"""What a file's load fields (Num_Mes_Carga, Mes_Carga, Ano_Carga) say about its period.

Every row of a CGU file carries the month and year of its publication (in the real files one
value of each per file). A file whose rows name another period is the wrong file under the
period's link: a re-exported copy of an older file (its bytes, hence its sha256, differ from the
capture of that period, so ``raw_loads``' identical-file check does not catch it) or a link
moved to the wrong period. ``rows_naming_other_periods`` counts such rows, from the values of the
rows the load has just copied (counted by PostgreSQL); the capture undoes the load when they are
more than MAX_WRONG_PERIOD_PERCENT of its rows (``capture.wrong_period``).

A value is read only when it is unambiguous, with the cleaning's own rules (queries/macros:
trimmed, "no value" markers empty; the month number without leading zeros or a trailing ".0",
the month name without case or accents, the year without a trailing ".0"; also ",0", the decimal
comma, which the test does not remove and so reports anyway). A row names another
period only when a value it has read differs from the period's: a missing or unreadable value
names nothing. So every row counted here is also one the warning test load_fields_match_period
reports (tests/test_load_fields.py checks this on generated values against the test's SQL)."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date

from pipelines.constants import MONTHS, normalise_text
from pipelines.parse import as_cleaned

# a trailing ".0" or ",0" (a number exported as decimal, with either decimal separator)
MONTH_NUMBER = re.compile(r"0*([1-9]|1[0-2])(?:[.,]0+)?")
YEAR = re.compile(r"([0-9]{4})(?:[.,]0+)?")

Claim = tuple[int | None, int | None, int | None]  # month by number, month by name, year


def read_claim(number: str, name: str, year: str) -> Claim:
    """The month (by number and by name) and the year the three values state, each None when
    missing or not readable without guessing."""
    number_text, name_text, year_text = as_cleaned(number), as_cleaned(name), as_cleaned(year)
    by_number = MONTH_NUMBER.fullmatch(number_text) if number_text is not None else None
    by_year = YEAR.fullmatch(year_text) if year_text is not None else None
    return (
        int(by_number.group(1)) if by_number else None,
        MONTHS.get(normalise_text(name_text)) if name_text is not None else None,
        int(by_year.group(1)) if by_year else None,
    )


def names_other_period(claim: Claim, period: date) -> bool:
    """True when a value of the claim was read and is not the period's."""
    by_number, by_name, year = claim
    return (
        (by_number is not None and by_number != period.month)
        or (by_name is not None and by_name != period.month)
        or (year is not None and year != period.year)
    )


def claims(written: Counter) -> Counter:
    """How many rows state each (number, name, year) as read by ``read_claim``, from how many
    rows carry each set of written values (each set read once: a file has one or a few)."""
    read: Counter = Counter()
    for values, rows in written.items():
        read[read_claim(*values)] += rows
    return read


def _period_named(claim: Claim, period: date) -> str | None:
    """The whole period ('YYYY-MM') a claim naming another period states, or None when it does
    not state a whole one (its year or both month values unread). Where the two month values
    differ, the one that is not the period's."""
    by_number, by_name, year = claim
    months = [month for month in (by_number, by_name) if month is not None]
    if year is None or not months:
        return None
    month = next((m for m in months if m != period.month), months[0])
    return f"{year:04d}-{month:02d}"


def rows_naming_other_periods(written: Counter, period: date) -> tuple[int, str | None]:
    """From how many rows carry each (Num_Mes_Carga, Mes_Carga, Ano_Carga) as written: (rows
    naming another period than ``period``, the whole period they name most often as 'YYYY-MM',
    or None when none of them names a whole period)."""
    others, named = 0, Counter()
    for claim, rows in claims(written).items():
        if not names_other_period(claim, period):
            continue
        others += rows
        whole = _period_named(claim, period)
        if whole is not None:
            named[whole] += rows
    return others, (named.most_common(1)[0][0] if named else None)
