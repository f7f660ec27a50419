"""The warning test load_fields_match_period answers, for every row, what its plain form did
before the shortcut for values already written as the period's (queries/tests/generic/quality.sql)."""

from datetime import date

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.conftest import query

# the rule as it was written before the shortcut: normalize every value, then compare
PLAIN_RULE = """
select periodo, linha_origem, num_mes_carga, mes_carga, ano_carga
from public.cargas
where regexp_replace(num_mes_carga, '^0+|\\.0+$', '', 'g')
        is distinct from extract(month from periodo)::integer::text
   or translate(upper(mes_carga), 'ÇÃÁÂ', 'CAAA') is distinct from
      (array['JANEIRO', 'FEVEREIRO', 'MARCO', 'ABRIL', 'MAIO', 'JUNHO', 'JULHO', 'AGOSTO', 'SETEMBRO',
             'OUTUBRO', 'NOVEMBRO', 'DEZEMBRO'])[extract(month from periodo)::integer]
   or regexp_replace(ano_carga, '\\.0+$', '') is distinct from extract(year from periodo)::integer::text
"""

MONTHS = ["JANEIRO", "FEVEREIRO", "MARÇO", "MARCO", "ABRIL", "MAIO", "JUNHO", "JULHO", "AGOSTO"]
MONTHS += ["SETEMBRO", "OUTUBRO", "NOVEMBRO", "DEZEMBRO", "setembro", "Maio", "MAIO ", "JANEIRO.0"]


def near(text_of_number):
    """Values around a number as the files write it: padded, with '.0', spaced, other digits."""
    return st.builds(
        lambda number, zeros, suffix, spaces: " " * spaces + "0" * zeros + text_of_number(number) + suffix,
        st.integers(0, 2030),
        st.integers(0, 2),
        st.sampled_from(["", ".0", ".00", ",0", ".5", "0"]),
        st.integers(0, 1),
    )


values = st.one_of(st.none(), st.text("0129.,- \u00a0٥５", max_size=6))
months = st.one_of(values, near(lambda n: str(n % 13)))
years = st.one_of(values, near(str))
names = st.one_of(st.none(), st.sampled_from(MONTHS), st.text("AÇÃÁÂEIJMNORSTZ ", max_size=9))
NAMES = ["JANEIRO", "FEVEREIRO", "MARCO", "ABRIL", "MAIO", "JUNHO", "JULHO", "AGOSTO", "SETEMBRO"]
NAMES += ["OUTUBRO", "NOVEMBRO", "DEZEMBRO"]


@st.composite
def row(draw):
    """A row whose fields are written as the period's except the one that varies: a row is
    flagged when any field disagrees, so a difference in one field must not be hidden by
    another that disagrees anyway."""
    year, month = draw(st.integers(2010, 2030)), draw(st.integers(1, 12))
    fields = [str(month), NAMES[month - 1], str(year)]
    varies = draw(st.sampled_from([0, 1, 2]))
    if draw(st.integers(0, 9)):  # one row in ten as the files write it
        near_the_period = st.builds(
            lambda before, text, after: before + text + after,
            st.sampled_from(["", " ", "0", "00", "\u00a0", "\t"]),
            st.sampled_from([fields[varies], fields[varies].lower(), fields[varies].replace("C", "Ç")]),
            st.sampled_from(["", " ", ".0", ".00", ",0", "0", "\u00a0"]),
        )
        fields[varies] = draw(st.one_of(near_the_period, near_the_period, (months, names, years)[varies]))
    return (year, month, *fields)


rows = st.lists(row(), min_size=10, max_size=40)


def insert_load_fields(db, table: str, rows) -> None:
    """``table`` (re)created with one row per (year, month, Num_Mes_Carga, Mes_Carga, Ano_Carga)
    of ``rows``, numbered from 0 in linha_origem."""
    with db.cursor() as cursor:
        cursor.execute(
            f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (periodo date, linha_origem integer, "
            "num_mes_carga text, mes_carga text, ano_carga text)"
        )
        cursor.executemany(
            f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s)",
            [(date(year, month, 1), line, *values) for line, (year, month, *values) in enumerate(rows)],
        )


@pytest.fixture(scope="module")
def compiled_rule(settings):
    from bench.dbtools import compile_inline

    return compile_inline(settings, "{{ test_load_fields_match_period(model='public.cargas') }}")


@hypothesis_settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows)
def test_the_shortcut_changes_no_answer(db, compiled_rule, rows):
    insert_load_fields(db, "public.cargas", rows)
    assert sorted(query(db, compiled_rule), key=repr) == sorted(query(db, PLAIN_RULE), key=repr)


def test_the_rule_on_examples(db, compiled_rule):
    examples = [
        ("2024-05-01", 1, "5", "MAIO", "2024", False),  # as the files write it
        ("2024-05-01", 2, "05", "Maio", "2024.0", False),  # normalized: the same period
        ("2024-03-01", 3, "3.0", "MARÇO", "2024", False),
        ("2024-05-01", 4, "5", "MAIO", "2023", True),  # another year
        ("2024-05-01", 5, "9", "MAIO", "2024", True),  # another month number
        ("2024-05-01", 6, "5", "SETEMBRO", "2024", True),  # another month name
        ("2024-05-01", 7, None, "MAIO", "2024", True),  # missing: disagrees
        ("2024-05-01", 8, "5", None, "2024", True),
        ("2024-05-01", 9, "5", "MAIO", None, True),
    ]
    with db.cursor() as cursor:
        cursor.execute(
            "DROP TABLE IF EXISTS public.cargas; CREATE TABLE public.cargas (periodo date, linha_origem integer, "
            "num_mes_carga text, mes_carga text, ano_carga text)"
        )
        cursor.executemany("INSERT INTO public.cargas VALUES (%s, %s, %s, %s, %s)", [e[:5] for e in examples])
    found = sorted(line for _, line, *_ in query(db, compiled_rule))
    assert found == [line for _, line, *_, disagrees in examples if disagrees]


# The capture's refusal of a file of another period (pipelines/load_fields.py) counts a row only
# when one of its load values reads as another period's: every such row must be one the warning
# test reports too, on the values as the cleaning leaves them (trimmed, "no value" markers NULL).
CLEANED_RULE = """
{%- set cleaned -%}
(select periodo, linha_origem, {{ clean_text('num_mes_carga') }} as num_mes_carga,
        {{ clean_text('mes_carga') }} as mes_carga, {{ clean_text('ano_carga') }} as ano_carga
 from public.cargas_brutas) as cleaned
{%- endset -%}
{{ test_load_fields_match_period(model=cleaned) }}
"""

padding = st.sampled_from(["", " ", "\u00a0", "\t", "\u2003", "0", "00"])
markers = st.sampled_from(["", "<N/I>", "NI", "NULL", " NULL ", "-1"])
noise = st.text("0123456789.,MAIOSETBRJNçÇãÃ٥５ \u00a0", max_size=8)


@st.composite
def load_row(draw):
    """A period and three load values. Most rows state the period's own values, as the files
    write them (padded, in other case, with accents), so that one value off the period, near it
    or far from it, decides; the others state another period's, a "no value" marker or noise."""
    year, month = draw(st.integers(2010, 2030)), draw(st.integers(1, 12))
    own = [str(month), NAMES[month - 1], str(year)]
    values = [draw(padding) + draw(st.sampled_from([v, v.lower(), v.replace("C", "Ç")])) + draw(padding) for v in own]
    varies = draw(st.sampled_from([0, 1, 2]))
    other_year, other_month = draw(st.integers(2010, 2030)), draw(st.integers(1, 12))
    other = [str(other_month), NAMES[other_month - 1], str(other_year)][varies]
    suffix = st.sampled_from(["", ".0", ".00", ",0", "0", " "])
    values[varies] = draw(
        st.one_of(
            st.just(values[varies]),
            st.builds(lambda text, end: text + end, st.sampled_from([own[varies], other, other.title()]), suffix),
            markers,
            noise,
        )
    )
    return (year, month, *values)


@pytest.fixture(scope="module")
def compiled_cleaned_rule(settings):
    from bench.dbtools import compile_inline

    return compile_inline(settings, CLEANED_RULE)


@hypothesis_settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(load_row(), min_size=5, max_size=40))
def test_a_row_the_capture_counts_as_another_periods_is_one_the_warning_reports(db, compiled_cleaned_rule, rows):
    from pipelines.load_fields import names_other_period, read_claim

    insert_load_fields(db, "public.cargas_brutas", rows)
    reported = {line for _, line, *_ in query(db, compiled_cleaned_rule)}
    counted = {
        line
        for line, (year, month, *values) in enumerate(rows)
        if names_other_period(read_claim(*values), date(year, month, 1))
    }
    assert counted <= reported


@pytest.mark.parametrize(
    ("values", "claim"),
    [
        (("5", "MAIO", "2024"), (5, 5, 2024)),  # as the files write them
        ((" 05 ", "Maio", "2024.0"), (5, 5, 2024)),
        (("3.0", "MARÇO", "2024"), (3, 3, 2024)),
        (("12", "dezembro\u00a0", "2019.00"), (12, 12, 2019)),
        (("<N/I>", "NI", "NULL"), (None, None, None)),  # "no value" markers
        (("", "", ""), (None, None, None)),
        (("13", "MAYO", "24"), (None, None, None)),  # not readable without guessing
        (("5,0", "5", "2024,0"), (5, None, 2024)),  # the decimal comma, as the money columns write it
        (("5,5", "MAIO,0", "2024,5"), (None, None, None)),
        (("٥", "MAIO.0", "２０２４"), (None, None, None)),  # digits of other scripts are not read
        (("0", "MAIO", "-1"), (None, 5, None)),
    ],
)
def test_what_the_capture_reads_in_the_load_fields(values, claim):
    from pipelines.load_fields import read_claim

    assert read_claim(*values) == claim


def test_a_file_of_another_period_is_told_from_its_own_rows():
    from collections import Counter

    from pipelines.load_fields import rows_naming_other_periods

    written = Counter({("5", "MAIO", "2023"): 7, ("9", "SETEMBRO", "2023"): 1, ("", "", ""): 1, ("9", "MAIO", "x"): 1})
    written[("05", "Maio", "2023.0")] += 1
    assert rows_naming_other_periods(written, date(2023, 9, 1)) == (9, "2023-05")
    assert rows_naming_other_periods(written, date(2023, 5, 1)) == (2, "2023-09")
    assert rows_naming_other_periods(written, date(2022, 5, 1)) == (10, "2023-05")


def test_the_period_a_file_is_said_to_be_is_another_one_and_the_most_frequent():
    """A row whose month number is the period's and whose name is not names the name's month;
    the period named is the most frequent, not necessarily most of the rows."""
    from collections import Counter

    from pipelines.load_fields import rows_naming_other_periods

    def parsed(*lines):
        return Counter({tuple(fields): count for count, fields in lines})

    september = date(2023, 9, 1)
    assert rows_naming_other_periods(parsed((10, ["9", "MAIO", "2023"])), september) == (10, "2023-05")
    mixed = parsed((4, ["9", "SETEMBRO", "2023"]), (3, ["5", "MAIO", "2023"]), (3, ["", "", "2022"]))
    assert rows_naming_other_periods(mixed, september) == (6, "2023-05")
    assert rows_naming_other_periods(parsed((2, ["9", "SETEMBRO", "2022"])), september) == (2, "2022-09")
