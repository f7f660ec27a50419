{# Helpers of the generic tests nulled_share_at_most and missing_share_at_most (tests/generic/quality.sql). #}

{# The limit of nulled_share_at_most and missing_share_at_most, in percent: MAX_NULLED_PERCENT
   (set from the settings by pipelines/dbt.py), or ``at_least`` when that is higher. #}
{% macro nulled_limit(at_least=0) -%}
    {%- set limit = [env_var('MAX_NULLED_PERCENT', '10') | float, at_least] | max -%}
    {{- return(limit | int if limit == limit | int else limit) -}}
{%- endmacro %}


{# The rows of ``relation`` (ano, mes, coluna, ``total``, ``part``) where ``part`` is more than
   ``limit`` percent of ``total`` and at least 10: a handful is never a format change. #}
{% macro shares_over_limit(relation, total, part, limit) -%}
select ano, mes, coluna, {{ total }}, {{ part }}, {{ limit }} as limite_percentual
from {{ relation }}
where {{ part }} * 100 > {{ limit }} * {{ total }} and {{ part }} >= 10
{%- endmacro %}
