{#- Casts that never fail: a value that does not fit becomes NULL (and is counted by
    the values_nulled test). -#}

{% macro safe_integer(column) -%}
    case when {{ column }} ~ '^-?\d{1,9}([.,]0+)?$'
        then split_part(replace({{ column }}, ',', '.'), '.', 1)::integer end
{%- endmacro %}

{% macro safe_numeric(column, precision=12, scale=2) -%}
    case when {{ column }} ~ '^-?\d{1,{{ precision - scale }}}(\.\d+)?$'
        then round({{ column }}::numeric, {{ scale }})::numeric({{ precision }}, {{ scale }}) end
{%- endmacro %}

{# Codes published as numbers lose their leading zeros (XLSX): pad back to width. #}
{% macro zero_pad(column, width) -%}
    case when regexp_replace({{ column }}, '[./-]', '', 'g') ~ '^\d{1,{{ width }}}$'
        then lpad(regexp_replace({{ column }}, '[./-]', '', 'g'), {{ width }}, '0') end
{%- endmacro %}

{# Post-hook: the primary key is built in bulk after the insert, inside the transaction
   that swaps the table, so a duplicate key keeps the previous table. #}
{% macro primary_key(columns) -%}
    alter table {{ this }} add primary key ({{ columns | join(', ') }})
{%- endmacro %}
