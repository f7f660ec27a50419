"""The cleaning and casting macros never fail and agree with a plain-Python reference
(tests/oracle.py) on any string: money in any format, codes, sentinels, spaces of every kind,
huge and tiny numbers, text (issue 11, value fidelity).

The macros are compiled once by dbt and run on PostgreSQL over a temporary table of
generated strings: one round trip per batch, not per value."""

import random
from decimal import Decimal

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg2.extras import execute_values

from tests import oracle

FIDELITY = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

# The staging steps of the models, on a temporary table: cleaned (cleaning macros on the raw
# text), typed (casting macros on the cleaned text, as transformed does on renamed).
MODELS_SQL = """
drop table if exists pg_temp.fidelity_cleaned, pg_temp.fidelity_typed cascade;
create temp table fidelity_cleaned as
select id, v,
    {{ clean_text('v') }} as text_value,
    {{ clean_code('v') }} as code_value,
    {{ clean_education('v') }} as education,
    {{ clean_decimal('v') }} as amount_text
from pg_temp.fidelity_values;
create temp table fidelity_typed as
select id,
    {{ cbo_code('text_value') }} as cbo,
    {{ cbo_title('text_value') }} as title,
    {{ zero_pad('text_value', 6) }} as ug,
    {{ cnpj('text_value') }} as cnpj,
    {{ safe_integer('text_value') }} as hours,
    {{ safe_numeric('amount_text') }} as amount
from pg_temp.fidelity_cleaned;
create or replace temp view fidelity_raw as select v as education from pg_temp.fidelity_values;
create temp view fidelity_upstream as
select text_value as ug, text_value as cnpj, text_value as hours, amount_text as amount from pg_temp.fidelity_cleaned;
-- split --
select * from (
{{ test_values_nulled(model='pg_temp.fidelity_cleaned', compare_model='pg_temp.fidelity_raw',
                      columns=['education']) }}
) as cleaned_test
union all
select * from (
{{ test_values_nulled(model='pg_temp.fidelity_typed', compare_model='pg_temp.fidelity_upstream',
                      columns=['ug', 'cnpj', 'hours', 'amount']) }}
) as typed_test
-- split --
select c.id, c.text_value, c.code_value, c.education, c.amount_text, t.cbo, t.title, t.ug, t.cnpj, t.hours, t.amount
from pg_temp.fidelity_cleaned as c join pg_temp.fidelity_typed as t using (id) order by c.id
"""
SPACES = list(oracle.WHITESPACE)


@pytest.fixture(scope="module")
def macros(settings):
    from bench.dbtools import compile_inline

    create, nulled, select = compile_inline(settings, MODELS_SQL).split("-- split --")
    conn = psycopg2.connect(**settings.postgres_dsn())
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute("create temp table fidelity_values (id integer, v text)")

    def run(values: list[str]):
        with conn.cursor() as cursor:
            cursor.execute("truncate pg_temp.fidelity_values")
            execute_values(cursor, "insert into pg_temp.fidelity_values values %s", list(enumerate(values)))
            cursor.execute(create)
            cursor.execute(nulled)
            counted = dict(cursor.fetchall())
            cursor.execute(select)
            return cursor.fetchall(), counted

    yield run
    conn.close()


def plain(value):
    return None if isinstance(value, oracle.Nulled) else value


def check(run, values: list[str]) -> None:
    """Every output equals the reference's; what the reference nulls is what values_nulled counts."""
    rows, counted = run(values)
    assert len(rows) == len(values)
    nulled = dict.fromkeys(("education", "ug", "cnpj", "hours", "amount"), 0)
    for index, text_value, code_value, education, amount_text, cbo, title, ug, cnpj, hours, amount in rows:
        value = values[index]
        expected = {
            "text": oracle.text(value),
            "code": oracle.code(value),
            "education": oracle.education(value),
            "cbo": oracle.cbo_code(value),
            "title": oracle.cbo_title(value),
            "ug": oracle.padded(value, 6),
            "cnpj": oracle.cnpj(value),
            "hours": oracle.hours(value),
            "amount": oracle.money(value),
        }
        got = {
            "text": text_value,
            "code": code_value,
            "education": education,
            "cbo": cbo,
            "title": title,
            "ug": ug,
            "cnpj": cnpj,
            "hours": hours,
            "amount": amount,
        }
        for column, reference in expected.items():
            assert got[column] == plain(reference), (column, value, got[column], reference, amount_text)
            if isinstance(reference, oracle.Nulled):
                nulled[column] += 1
    assert {c: n for c, n in counted.items() if n} == {c: n for c, n in nulled.items() if n}


def amount_texts(number: Decimal, rng_choice) -> str:
    """A number written as the portal (or a spreadsheet) might: decimal comma or point, thousands
    groups, an XLSX float."""
    sign = "-" if number < 0 else ""
    integer, _, fraction = f"{abs(number):f}".partition(".")
    grouped = f"{int(integer):,}"
    style = rng_choice(["point", "comma", "pt_br", "english", "float", "integer"])
    if style == "point":
        return f"{sign}{integer}" + (f".{fraction}" if fraction else "")
    if style == "comma":
        return f"{sign}{integer}" + (f",{fraction}" if fraction else "")
    if style == "pt_br":
        return sign + grouped.replace(",", ".") + (f",{fraction}" if fraction else "")
    if style == "english":
        return sign + grouped + (f".{fraction}" if fraction else "")
    if style == "float":
        return repr(float(number))
    return f"{sign}{integer}"


def alphanumeric_cnpj(base: str) -> str:
    """A CNPJ with these 12 characters and its check digits, written with its punctuation."""
    whole = base + oracle.cnpj_check_digits(base)
    return f"{whole[:2]}.{whole[2:5]}.{whole[5:8]}/{whole[8:12]}-{whole[12:]}"


def padded_with_spaces(draw_or_choice, value: str) -> str:
    left = "".join(draw_or_choice(SPACES) for _ in range(draw_or_choice([0, 0, 1, 2])))
    right = "".join(draw_or_choice(SPACES) for _ in range(draw_or_choice([0, 0, 1, 2])))
    return left + value + right


FIXED = [
    "",
    " ",
    "<N/I>",
    "NI",
    "NI  ",
    "NULL",
    "-1",
    "-2",
    "\u00a0NI\u00a0",
    "\tNULL",
    "\u2003<N/I>\u3000",
    "9999999999,995",
    "9999999999,994",
    "-9999999999,995",
    "9999999999.99",
    "99999999999",
    "0,005",
    "-0,005",
    "1,234.56",
    "1.234,56",
    "1.234",
    "1,234",
    "12.345",
    "123,456",
    "1234.567",
    "0.123",
    "01.234",
    "1.234.567",
    "1,234,567",
    "1.234.567,891",
    "1,2,3",
    "1.2,3",
    ",5",
    "5,",
    "-",
    "--1",
    "+1",
    "1e5",
    "R$ 1,00",
    "１２３",
    "١٤",
    "44",
    "44.0",
    "44,00",
    "14",
    "\u00a044\u00a0",
    "517330 - VIGILANTE",
    "5173 - VIGILANTES",
    "SERVENTE",
    "19.232.342/0001-65",
    "12.ABC.345/01DE-35",  # the alphanumeric CNPJ (from July 2026)
    "12abc34501de35",
    "12ABC34501DE3X",
    "12ABC34501DE351",
    "ABCDEFGHIJKLMN",
    "12ÀBC34501DE35",
    "12ıBC34501DE35",
    "12ＡBC34501DE35",
    "20001",
    "020001",
    "1234567",
    "0." + "0" * 150 + "1",
    "1" * 40,
    "-" + "9" * 12,
    "\u00a0SEDE\u00a0",
    "\tSEDE",
    "SEDE\r\n",
    "\u202fUFJF\u205f",
    "\u0085X\u0085",
    "\u200bSEDE",
]


def test_money_that_rounds_past_ten_digits_is_nulled_and_counted_not_an_error(macros):
    """Issue 11: '9999999999,995' rounds to 10^10, which numeric(12,2) cannot hold: the
    cast raised and the whole build failed."""
    rows, counted = macros(["9999999999,995", "-9999999999.999", "9999999999,994", "2524,37"])
    assert [row[-1] for row in rows] == [None, None, Decimal("9999999999.99"), Decimal("2524.37")]
    assert counted["amount"] == 2


def test_every_unicode_space_is_trimmed_before_the_sentinels(macros):
    """Issue 11: trim() removed only spaces: NBSP and tabs reached the typed table and 'NI\\xa0'
    was not a sentinel."""
    rows, _ = macros(["\u00a0SEDE\u00a0", "\tSEDE", "NI\u00a0", "\u2002-2\u2002", " \u2003UFJF\u3000\r\n"])
    assert [(row[1], row[2]) for row in rows] == [
        ("SEDE", "SEDE"),
        ("SEDE", "SEDE"),
        (None, None),
        ("-2", None),
        ("UFJF", "UFJF"),
    ]


def test_an_alphanumeric_cnpj_is_kept_in_upper_case_and_a_malformed_one_counted(macros):
    """From July 2026 the Receita Federal issues alphanumeric CNPJs (12 letters or digits and 2
    check digits) to new companies: they used to become NULL, counted as invalid, and the
    company lost its key in the analyses."""
    values = [
        "12.ABC.345/01DE-35",  # the Receita Federal's example
        "12abc34501de35",
        "19.232.342/0001-65",
        "12ABC34501DE36",  # wrong check digits
        "19.232.342/0OO1-65",  # a numeric CNPJ mistyped (letter O): not a new company
        "12ABC34501DE3X",
        "12ÀBC34501DE35",
    ]
    rows, counted = macros(values)
    assert [row[8] for row in rows] == ["12ABC34501DE35", "12ABC34501DE35", "19232342000165", None, None, None, None]
    assert counted["cnpj"] == 4


def test_money_separators_are_read_by_the_documented_rule(macros):
    values = [
        "1,234.56",
        "1.234,56",
        "1.234.567",
        "1,234,567.8",
        "2524,37",
        "2524.37",
        "5838",
        "1234.567",
        "1.234",
        "1,234",
        "-1.234",
        "12.345",
        "1.2,3",
    ]
    rows, counted = macros(values)
    assert dict(zip(values, (row[-1] for row in rows))) == {
        "1,234.56": Decimal("1234.56"),
        "1.234,56": Decimal("1234.56"),
        "1.234.567": Decimal("1234567.00"),
        "1,234,567.8": Decimal("1234567.80"),
        "2524,37": Decimal("2524.37"),
        "2524.37": Decimal("2524.37"),
        "5838": Decimal("5838.00"),
        "1234.567": Decimal("1234.57"),
        "1.234": None,
        "1,234": None,
        "-1.234": None,
        "12.345": None,
        "1.2,3": None,
    }
    assert counted["amount"] == 5  # ambiguous or malformed: NULL and counted, never a guess


def test_fixed_and_seeded_values_match_the_reference(macros):
    rng = random.Random(11)
    values = list(FIXED)
    for _ in range(3000):
        kind = rng.random()
        if kind < 0.5:
            number = Decimal(rng.randint(-(10**12), 10**12)) / Decimal(10) ** rng.choice([0, 1, 2, 2, 3, 4, 6])
            value = amount_texts(number, rng.choice)
        elif kind < 0.7:
            value = "".join(rng.choice("0123456789.,-+ ") for _ in range(rng.randint(1, 16)))
        elif kind < 0.75:  # CNPJ-like: digits, ASCII and other letters, separators
            value = "".join(rng.choice("0123456789ABCXYZaz./-ÀıſＡ") for _ in range(rng.randint(12, 18)))
        elif kind < 0.8:  # an alphanumeric CNPJ with its check digits, sometimes in lower case or mistyped
            value = alphanumeric_cnpj("".join(rng.choice("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(12)))
            value = rng.choice([value, value.lower(), value[:-1] + str((int(value[-1]) + 1) % 10)])
        else:
            value = rng.choice(FIXED)
        values.append(padded_with_spaces(rng.choice, value))
    check(macros, values)


@st.composite
def any_values(draw) -> str:
    kind = draw(st.sampled_from(["amount", "digits", "text", "fixed", "huge", "tiny", "cnpj"]))
    if kind == "amount":
        number = draw(
            st.decimals(
                min_value=-(10**11),
                max_value=10**11,
                places=draw(st.integers(0, 5)),
                allow_nan=False,
                allow_infinity=False,
            )
        )
        value = amount_texts(number, lambda options: draw(st.sampled_from(options)))
    elif kind == "digits":
        value = draw(st.text(alphabet="0123456789.,-+ \u00a0", min_size=1, max_size=18))
    elif kind == "text":
        value = draw(st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=12))
    elif kind == "huge":
        value = str(draw(st.integers(10**9, 10**40))) + draw(st.sampled_from(["", ",99", ".995", ",5"]))
    elif kind == "cnpj":
        value = draw(
            st.one_of(
                st.text(alphabet="0123456789ABCXYZaz./-ÀıſＡ", min_size=12, max_size=18),
                st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=12, max_size=12).map(
                    alphanumeric_cnpj
                ),
            )
        )
    elif kind == "tiny":
        value = "0" + draw(st.sampled_from([",", "."])) + "0" * draw(st.integers(0, 120)) + "5"
    else:
        value = draw(st.sampled_from(FIXED))
    return padded_with_spaces(lambda options: draw(st.sampled_from(options)), value)


@given(values=st.lists(any_values(), min_size=1, max_size=300))
@FIDELITY
def test_casts_never_fail_and_match_the_reference(macros, values):
    check(macros, values)


def test_the_cnpj_cast_keeps_a_create_table_as_parallel(settings, db):
    """The cast is plain expressions: a subquery reading the row (as the check digits were first
    written) keeps PostgreSQL from splitting the CREATE TABLE AS of the staging models among
    workers, which took twice as long."""
    from bench.dbtools import compile_inline

    cast = compile_inline(settings, "{{ cnpj('v') }}")
    with db.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS public.cnpjs; CREATE TABLE public.cnpjs AS SELECT '12ABC34501DE35' AS v")
        cursor.execute(
            "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0; "
            "SET max_parallel_workers_per_gather = 2"
        )
        cursor.execute(f"EXPLAIN SELECT {cast} FROM public.cnpjs")
        plan = "\n".join(line for (line,) in cursor.fetchall())
        cursor.execute("RESET ALL; DROP TABLE public.cnpjs")
    assert "Gather" in plan and "SubPlan" not in plan, plan


def test_a_negative_code_is_never_padded_into_a_code(macros):
    """'-1' and '-2' mean "no value" in the CGU's codes: the UG gestora's and the CNPJ's cast
    used to strip the '-' and pad them into the codes 000001 and 00000000000001 (a company of
    30 workers in the marts). A value that starts with '-' is not a code: NULL and counted."""
    values = ["-1", "-2", "-000001", "-19.232.342/0001-65", "153061", "19.232.342/0001-65"]
    rows, counted = macros(values)
    assert [(row[7], row[8]) for row in rows] == [
        (None, None),
        (None, None),
        (None, None),
        (None, None),
        ("153061", "00000000153061"),
        (None, "19232342000165"),
    ]
    assert (counted["ug"], counted["cnpj"]) == (5, 4)
    check(macros, values)
