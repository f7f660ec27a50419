{#- Generic tests of the staging models. Tests that count (values_nulled,
    load_fields_match_period) are declared with severity warn in schema.yml, so
    dbt reports how many rows they found without failing the build.

    Tests of the historic models scoped with `where: "__periodos_em_verificacao__"` read only
    the periods not verified yet (macros/terceirizados_models.sql); tests that compare with
    another model read the same periods of it (scoped_relation). -#}

{# Values present in the upstream columns (after sentinel cleaning) but NULL here:
   invalid values set to NULL by the cleaning, or values a cast could not convert.
   All columns are counted in one pass over each model (one row per column with
   losses; dbt's count is the total number of values nulled). A negative count (values
   that appeared from nowhere) also fails: abs() keeps columns from cancelling out.
   clean_upstream=false: the upstream columns are already cleaned (a model downstream of
   cleaned), so they are counted as they are, without running the cleaning again. #}
{% test values_nulled(model, compare_model, columns, clean_upstream=true) %}
{{ config(fail_calc='coalesce(sum(abs(nulled)), 0)') }}
with upstream as (
    select
    {%- for column in columns %}
        count({{ clean_text(column) if clean_upstream else column }}) as {{ column }}{{ "," if not loop.last }}
    {%- endfor %}
    from {{ scoped_relation(compare_model) }}
),

here as (
    select
    {%- for column in columns %}
        count({{ column }}) as {{ column }}{{ "," if not loop.last }}
    {%- endfor %}
    from {{ model }}
),

counts as (
    {%- for column in columns %}
    select '{{ column }}' as column_name, upstream.{{ column }} - here.{{ column }} as nulled
    from upstream cross join here
    {{ "union all" if not loop.last }}
    {%- endfor %}
)

select column_name, nulled from counts where nulled <> 0
{% endtest %}


{# Per period (ano, mes) and column: the values present upstream that the conversions turned
   into NULL here are at most MAX_NULLED_PERCENT (default 10) of them. values_nulled counts
   them (a warning: a few invalid values are expected); this one fails when a whole column
   stops converting, as when a file's format changes (every amount written "R$ 2.524,37", a
   masked CNPJ, numbers formatted as dates): such a period is refused, never published as a
   column of NULLs. Only when at least 10 values turned NULL: a column with a handful of values
   in a period (3 CNPJs, 1 invalid) is not a format change. One row per period and column over
   the limit. 100 turns it off. #}
{% test nulled_share_at_most(model, compare_model, columns, clean_upstream=true) %}
{%- set limit = nulled_limit() -%}
with upstream as (
    select
        ano,
        mes,
    {%- for column in columns %}
        count({{ clean_text(column) if clean_upstream else column }}) as {{ column }}{{ "," if not loop.last }}
    {%- endfor %}
    from {{ scoped_relation(compare_model) }}
    group by ano, mes
),

here as (
    select
        ano,
        mes,
    {%- for column in columns %}
        count({{ column }}) as {{ column }}{{ "," if not loop.last }}
    {%- endfor %}
    from {{ model }}
    group by ano, mes
),

shares as (
    {%- for column in columns %}
    select
        upstream.ano,
        upstream.mes,
        '{{ column }}' as coluna,
        upstream.{{ column }} as valores,
        upstream.{{ column }} - coalesce(here.{{ column }}, 0) as viraram_nulo
    from upstream left join here on here.ano = upstream.ano and here.mes = upstream.mes
    {{ "union all" if not loop.last }}
    {%- endfor %}
)

{{ shares_over_limit('shares', 'valores', 'viraram_nulo', limit) }}
{% endtest %}


{# Per period (ano, mes) and column: the rows without a value are at most half of the period's
   rows (MAX_NULLED_PERCENT when that is higher: 100 turns it off), when there are at least 10.
   In the real files a salary or cost is missing in about 620 of 3.3 million rows: a column
   missing in most rows of a period is a file whose column came empty (blank or "<N/I>" in every
   row, XLSX formulas without a saved value, error cells), which nulled_share_at_most does not
   see (nothing failed to convert). One row per period and column over the limit. #}
{% test missing_share_at_most(model, columns) %}
{%- set limit = nulled_limit(at_least=50) -%}
with counts as (
    select
        ano,
        mes,
        count(*) as linhas,
    {%- for column in columns %}
        count(*) - count({{ column }}) as {{ column }}{{ "," if not loop.last }}
    {%- endfor %}
    from {{ model }}
    group by ano, mes
),

shares as (
    {%- for column in columns %}
    select ano, mes, '{{ column }}' as coluna, linhas, {{ column }} as sem_valor
    from counts
    {{ "union all" if not loop.last }}
    {%- endfor %}
)

{{ shares_over_limit('shares', 'linhas', 'sem_valor', limit) }}
{% endtest %}


{# The model has exactly as many rows as the compared model. #}
{% test row_count_equals(model, compare_model) %}
with counts as (
    select
        (select count(*) from {{ model }}) as model_rows,
        (select count(*) from {{ scoped_relation(compare_model) }}) as compare_rows
)
select * from counts where model_rows <> compare_rows
{% endtest %}


{# sum(column) equals the sum of the upstream money column (already cleaned text), cast
   with the same rule: no row lost or duplicated, no value changed on the way. #}
{% test sum_matches_source(model, column_name, compare_model, compare_column) %}
with sums as (
    select
        (select coalesce(sum({{ column_name }}), 0) from {{ model }}) as model_sum,
        (select coalesce(sum({{ safe_numeric(compare_column) }}), 0) from {{ scoped_relation(compare_model) }}) as source_sum
)
select * from sums where model_sum <> source_sum
{% endtest %}


{# Rows outside [min_value, max_value]: a plausibility check, declared as warn. #}
{% test value_in_range(model, column_name, min_value, max_value) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} < {{ min_value }} or {{ column_name }} > {{ max_value }}
{% endtest %}


{# No two rows share the combination of columns (a composite primary key).
   When a valid unique index covers exactly these columns and none of them can be NULL
   (the models' primary key), PostgreSQL already guarantees it: the catalog answers and
   the rows are not read (the scan sits behind a one-time filter). Otherwise every row is
   checked (a plain unique index lets rows with NULLs repeat). #}
{% test unique_combination(model, combination_of_columns) %}
with enforced as (
    select 1
    from pg_index as i
    where i.indrelid = '{{ model }}'::regclass
      and i.indisunique and i.indisvalid and i.indpred is null and i.indexprs is null
      and not exists (
          select 1 from pg_attribute as a
          where a.attrelid = i.indrelid and a.attnum = any(i.indkey) and not a.attnotnull)
      and (select array_agg(a.attname::text order by a.attname)
           from pg_attribute as a
           where a.attrelid = i.indrelid and a.attnum = any(i.indkey))
          = array[{% for column in combination_of_columns | sort %}'{{ column }}'{{ ", " if not loop.last }}{% endfor %}]
)

select {{ combination_of_columns | join(', ') }}, count(*) as occurrences
from {{ model }}
where not exists (select 1 from enforced)
group by {{ combination_of_columns | join(', ') }}
having count(*) > 1
{% endtest %}


{# Rows whose Num_Mes_Carga, Mes_Carga or Ano_Carga disagree with the published period: the
   month number without leading zeros or a trailing ".0", the month name in upper case without
   accents, the year without a trailing ".0". A value already written as the period's (every
   row of the real files) is answered by one comparison; only the others are normalized (the
   whole test on the 1.57 million historic rows: 2.7 s with every value normalized, 1.0 s now).
   tests/test_load_fields.py checks on generated values that the shortcut changes no answer. #}
{% test load_fields_match_period(model) %}
select periodo, linha_origem, num_mes_carga, mes_carga, ano_carga
from {{ model }}
where {{ differs_once_normalized('num_mes_carga', "regexp_replace(num_mes_carga, '^0+|\\.0+$', '', 'g')",
                                   'extract(month from periodo)::integer::text') }}
   or {{ differs_once_normalized('mes_carga', "translate(upper(mes_carga), 'ÇÃÁÂ', 'CAAA')", month_name('periodo')) }}
   or {{ differs_once_normalized('ano_carga', "regexp_replace(ano_carga, '\\.0+$', '')",
                                 'extract(year from periodo)::integer::text') }}
{% endtest %}


{#- dbt's get_test_sql with the test's sql_header in front (dbt_project.yml gives every test the
    models' `set local parallel_tuple_cost`, so full scans with regular expressions use both
    cores; dbt 1.11 ignores sql_header in tests). One statement string: `set local` applies to
    the test's query. -#}
{% macro postgres__get_test_sql(main_sql, fail_calc, warn_if, error_if, limit) -%}
    {%- set sql_header = config.get('sql_header') -%}
    {{ sql_header if sql_header }}
    {{ dbt.default__get_test_sql(main_sql, fail_calc, warn_if, error_if, limit) }}
{%- endmacro %}
