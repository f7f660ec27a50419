{#- Column-level rules shared by the latest and the historic models. -#}

{# Every Unicode White_Space character (tab, LF, VT, FF, CR, space, NEL, NBSP, the U+2000
   spaces, line and paragraph separators, narrow NBSP, medium mathematical space, ideographic
   space): trim() alone removes only the space, so '\u00a0SEDE\u00a0' or 'NI\u00a0' survived.
   btrim() with this set costs about 1.5x trim() per value (measured; a regular expression that
   skips values with nothing to trim was slower still), so each value is trimmed once. #}
{% macro whitespace() -%}
    E' \t\n\u000b\f\r\u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000'
{%- endmacro %}

{# The value without whitespace at either end. #}
{% macro trimmed(column) -%}
    btrim({{ column }}, {{ whitespace() }})
{%- endmacro %}

{# Trimmed text; the source's "no value" sentinels become NULL. #}
{% macro clean_text(column) -%}
    nullif(nullif(nullif(nullif({{ trimmed(column) }}, ''), '<N/I>'), 'NI'), 'NULL')
{%- endmacro %}

{# SIAFI/SIAPE codes: also -1 and -2 mean "no value". #}
{% macro clean_code(column) -%}
    nullif(nullif({{ clean_text(column) }}, '-1'), '-2')
{%- endmacro %}

{# Money as text with a decimal point, for safe_numeric (README, "Regras de limpeza e conversão"):
   one separator of either kind is the decimal one (2524,37 -> 2524.37; 2524.37 stays); with
   both, the last one is, and the other groups thousands (1.234,56 and 1,234.56 -> 1234.56);
   one separator repeated groups thousands (1.234.567 -> 1234567). A lone separator before
   exactly three digits (1.234, 1,234) is ambiguous: it comes out as 1.234 and safe_numeric
   turns it into NULL. Anything else stays as published (and safe_numeric nulls it).
   The first two cases, every row of the real files, take no regular expression. #}
{% macro clean_decimal(column) -%}
    case
        when strpos({{ column }}, ',') = 0 and {{ column }} not like '%.%.%'
            then {{ clean_text(column) }}
        when strpos({{ column }}, '.') = 0 and {{ column }} not like '%,%,%'
            then replace({{ clean_text(column) }}, ',', '.')
        when {{ clean_text(column) }} ~ '^-?[0-9]{1,3}(\.[0-9]{3})+(,[0-9]+)?$'
            then translate({{ clean_text(column) }}, ',.', '.')
        when {{ clean_text(column) }} ~ '^-?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]+)?$'
            then replace({{ clean_text(column) }}, ',', '')
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


{# ``value``, ``normalized`` (an expression of it), differs from ``expected`` (test load_fields_match_period): a value already equal to
   it is answered without normalizing (NULLs take the plain comparison, which says they differ). #}
{% macro differs_once_normalized(value, normalized, expected) -%}
    case when {{ value }} = {{ expected }} then false else {{ normalized }} is distinct from {{ expected }} end
{%- endmacro %}
