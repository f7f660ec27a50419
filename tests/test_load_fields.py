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


@pytest.fixture(scope="module")
def compiled_rule(settings):
    from bench.dbtools import compile_inline

    return compile_inline(settings, "{{ test_load_fields_match_period(model='public.cargas') }}")


@hypothesis_settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows)
def test_the_shortcut_changes_no_answer(db, compiled_rule, rows):
    with db.cursor() as cursor:
        cursor.execute(
            "DROP TABLE IF EXISTS public.cargas; CREATE TABLE public.cargas (periodo date, linha_origem integer, "
            "num_mes_carga text, mes_carga text, ano_carga text)"
        )
        cursor.executemany(
            "INSERT INTO public.cargas VALUES (%s, %s, %s, %s, %s)",
            [(date(year, month, 1), line, *fields) for line, (year, month, *fields) in enumerate(rows)],
        )
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
