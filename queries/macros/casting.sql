{#- Casts that never fail: a value that does not fit becomes NULL (and is counted by
    the values_nulled test). -#}

{#- Digits are [0-9], not \d: a character class that also matched other scripts' digits
    would let a value through to a cast that then fails. -#}

{% macro safe_integer(column) -%}
    case when {{ column }} ~ '^-?[0-9]{1,9}([.,]0+)?$'
        then split_part(replace({{ column }}, ',', '.'), '.', 1)::integer end
{%- endmacro %}

{# Money text from clean_decimal -> numeric(12,2), rounded half away from zero. NULL (and
   counted by values_nulled) when the text is not -?digits[.digits] with at most 10 integer
   digits and 100 characters in all; when it is ambiguous: 1-3 digits, a point and exactly
   three digits (1.234 from '1.234' or '1,234': thousands or decimals?); and when the rounded
   value does not fit (9999999999.995 rounds to 10^10: only a text starting with
   9999999999.99 can). The cheap LIKE tests keep the regular expression and the second cast
   off the common rows. #}
{% macro safe_numeric(column, precision=12, scale=2) -%}
    case when {{ column }} ~ '^-?[0-9]{1,{{ precision - scale }}}(\.[0-9]+)?$' and octet_length({{ column }}) <= 100
            and not ({{ column }} like '%.___' and {{ column }} ~ '^-?[1-9][0-9]{0,2}\.[0-9]{3}$')
        then case
            when ltrim({{ column }}, '-') like '{{ "9" * (precision - scale) }}.%'
                and abs(round({{ column }}::numeric, {{ scale }})) >= 1e{{ precision - scale }} then null
            else round({{ column }}::numeric, {{ scale }})::numeric({{ precision }}, {{ scale }})
        end
    end
{%- endmacro %}

{# Codes published as numbers lose their leading zeros (XLSX): pad back to width. #}
{% macro zero_pad(column, width) -%}
    case when regexp_replace({{ column }}, '[./-]', '', 'g') ~ '^[0-9]{1,{{ width }}}$'
        then lpad(regexp_replace({{ column }}, '[./-]', '', 'g'), {{ width }}, '0') end
{%- endmacro %}

{# CNPJ: digits (with or without . / -) zero-padded to 14, as zero_pad; or the alphanumeric CNPJ
   the Receita Federal issues to new companies from July 2026 (IN RFB 2.229/2024): 12 letters or
   digits and 2 check digits, kept in upper case (the letters are ASCII: any other character, or
   another length, is NULL and counted). #}
{% macro cnpj(column) -%}
    case when regexp_replace({{ column }}, '[./-]', '', 'g') ~ '^[0-9]{1,14}$'
        then lpad(regexp_replace({{ column }}, '[./-]', '', 'g'), 14, '0')
        when regexp_replace({{ column }}, '[./-]', '', 'g') ~ '^[{{ ascii_alphanumeric() }}]{12}[0-9]{2}$'
        then upper(regexp_replace({{ column }}, '[./-]', '', 'g')) end
{%- endmacro %}

{#- Spelled out: a range such as A-Z may follow the collation, not ASCII. -#}
{% macro ascii_alphanumeric() -%}
    0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz
{%- endmacro %}

{# Post-hook: the primary key is built in bulk after the insert, inside the transaction
   that swaps the table, so a duplicate key keeps the previous table. #}
{% macro primary_key(columns) -%}
    alter table {{ this }} add primary key ({{ columns | join(', ') }})
{%- endmacro %}
