{#- Column-level rules shared by the latest and the historic models. -#}

{# Trimmed text; the source's "no value" sentinels become NULL. #}
{% macro clean_text(column) -%}
    nullif(nullif(nullif(nullif(trim({{ column }}), ''), '<N/I>'), 'NI'), 'NULL')
{%- endmacro %}

{# SIAFI/SIAPE codes: also -1 and -2 mean "no value". #}
{% macro clean_code(column) -%}
    case when trim({{ column }}) in ('-1', '-2') then null else {{ clean_text(column) }} end
{%- endmacro %}

{# Money as text with a decimal point: 2524,37 -> 2524.37; 1.234,56 -> 1234.56; 2524.37 stays.
   With a decimal comma, dots are thousands separators: translate() drops them and turns
   the comma into a point (no regular expression: this runs on every row). #}
{% macro clean_decimal(column) -%}
    case when strpos({{ column }}, ',') > 0
        then translate({{ clean_text(column) }}, ',.', '.')
        else {{ clean_text(column) }}
    end
{%- endmacro %}

{# Education level: numbers (14, 26, ... seen in the source) are not a level. #}
{% macro clean_education(column) -%}
    case when {{ clean_text(column) }} ~ '^\d+$' then null else {{ clean_text(column) }} end
{%- endmacro %}

{# "517330 - VIGILANTE" -> '517330'; no 6-digit code -> NULL. #}
{% macro cbo_code(column) -%}
    substring({{ column }} from '^(\d{6})\s*-')
{%- endmacro %}

{# "517330 - VIGILANTE" -> 'VIGILANTE' (any leading code is dropped). #}
{% macro cbo_title(column) -%}
    nullif(regexp_replace({{ column }}, '^\d+\s*-\s*', ''), '')
{%- endmacro %}

{# Month name as the source writes it (without accents), from a date. #}
{% macro month_name(date_column) -%}
    (array['JANEIRO', 'FEVEREIRO', 'MARCO', 'ABRIL', 'MAIO', 'JUNHO', 'JULHO', 'AGOSTO', 'SETEMBRO',
           'OUTUBRO', 'NOVEMBRO', 'DEZEMBRO'])[extract(month from {{ date_column }})::integer]
{%- endmacro %}
