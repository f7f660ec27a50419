{#- Generic tests of the marts (models/marts/schema.yml).

    Reconciliation is chained and exact: totais_por_periodo against staging.historic_transformed
    (the periods this dbt invocation built: see marts_escopo; reading all 1.5 million rows on
    every run would cost more than building the changed periods), every other mart against
    totais_por_periodo, every period on every build. Every other test reads every row. -#}


{# The model's per-period totals equal the compared relation's, computed from its rows
   (measures: model column -> aggregate over compare_model), for the periods this invocation
   built (marts_escopo); and both have the same periods (a loose scan of compare_model's key). #}
{% test marts_concilia_com_fonte(model, compare_model, measures) %}
{%- set scope = marts_escopo(model.identifier) -%}
with modelo as (
    select ano, mes
    {%- for column in measures %}, {{ column }} as medida_{{ loop.index }}{% endfor %}
    from {{ model }}
    where {{ scope }}
),

fonte as (
    select ano, mes
    {%- for expression in measures.values() %}, {{ expression }} as medida_{{ loop.index }}{% endfor %}
    from {{ compare_model }}
    where {{ scope }}
    group by ano, mes
),

periodos_fonte as (
    {{ marts_loose_periods_sql(compare_model) }}
),

periodos_modelo as (
    select distinct ano, mes from {{ model }}
)

select coalesce(m.ano, f.ano) as ano, coalesce(m.mes, f.mes) as mes, 'valores diferentes' as problema
from modelo as m
full join fonte as f on f.ano = m.ano and f.mes = m.mes
where m.ano is null or f.ano is null
{%- for column in measures %} or m.medida_{{ loop.index }} is distinct from f.medida_{{ loop.index }}{% endfor %}
union all
select coalesce(m.ano, f.ano), coalesce(m.mes, f.mes),
       case when m.ano is null then 'período ausente do modelo' else 'período ausente da fonte' end
from periodos_modelo as m
full join periodos_fonte as f on f.ano = m.ano and f.mes = m.mes
where m.ano is null or f.ano is null
{% endtest %}


{# The model's totals per period (period_columns; rows matching `where`) equal those of
   totais_por_periodo (measures: totais column -> aggregate over the model), for every period
   on both sides (only_model_periods: only the periods the model has, e.g. the previous
   periods of a comparison, which never include the newest). #}
{% test marts_concilia_com_totais(model, totals, measures, period_columns=['ano', 'mes'], where='true',
                                  only_model_periods=false) %}
with modelo as (
    select {{ period_columns[0] }} as ano, {{ period_columns[1] }} as mes
    {%- for expression in measures.values() %}, {{ expression }} as medida_{{ loop.index }}{% endfor %}
    from {{ model }}
    where ({{ where }}) and {{ period_columns[0] }} is not null
    group by 1, 2
),

totais as (
    select ano, mes
    {%- for column in measures %}, {{ column }} as medida_{{ loop.index }}{% endfor %}
    from {{ totals }}
)

select coalesce(m.ano, t.ano) as ano, coalesce(m.mes, t.mes) as mes,
       m.ano is null as ausente_do_modelo, t.ano is null as ausente_dos_totais
from modelo as m
{{ 'left' if only_model_periods else 'full' }} join totais as t on t.ano = m.ano and t.mes = m.mes
where m.ano is null or t.ano is null
{%- for column in measures %} or m.medida_{{ loop.index }} is distinct from t.medida_{{ loop.index }}{% endfor %}
{% endtest %}


{# contratos against contratos_por_periodo: every contract of it, with its number of periods and
   its first and last period; in the newest period, the workers and cost of the contracts last
   seen in it (every contract of that period). #}
{% test marts_contratos_conciliam(model, compare_model) %}
with pares as (
    select distinct chave_contrato, make_date(ano, mes, 1) as periodo from {{ compare_model }}
),

por_contrato as (
    select chave_contrato, count(*) as periodos, min(periodo) as primeiro, max(periodo) as ultimo
    from pares
    group by chave_contrato
),

mais_recente as (
    select make_date(ano, mes, 1) as periodo, sum(quantidade_terceirizados) as terceirizados,
           sum(valor_custo_mensal_total) as custo
    from {{ compare_model }}
    where (ano, mes) = (select ano, mes from {{ compare_model }} order by ano desc, mes desc limit 1)
    group by 1
),

ultimos as (
    select ultimo_periodo as periodo, sum(quantidade_terceirizados_ultimo_periodo) as terceirizados,
           sum(valor_custo_mensal_ultimo_periodo) as custo
    from {{ model }}
    where ultimo_periodo = (select periodo from mais_recente)
    group by 1
)

select coalesce(m.chave_contrato, f.chave_contrato) as chave, 'períodos do contrato' as problema
from {{ model }} as m
full join por_contrato as f on f.chave_contrato = m.chave_contrato
where m.quantidade_periodos is distinct from f.periodos or m.primeiro_periodo is distinct from f.primeiro
   or m.ultimo_periodo is distinct from f.ultimo
union all
select to_char(r.periodo, 'YYYY-MM'), 'terceirizados e custo do período mais recente'
from mais_recente as r
left join ultimos as u on u.periodo = r.periodo
where u.terceirizados is distinct from r.terceirizados or u.custo is distinct from r.custo
{% endtest %}


{# No negative value in any of the columns (counts and totals), in one pass. #}
{% test marts_nao_negativo(model, columns) %}
select *
from {{ model }}
where {%- for column in columns %} {{ column }} < 0{{ " or" if not loop.last }}{% endfor %}
{% endtest %}


{# Rows where a boolean expression over the row is not true (a null counts as not true). #}
{% test marts_expressao_verdadeira(model, expression) %}
select *
from {{ model }}
where not coalesce({{ expression }}, false)
{% endtest %}


{# Each row's previous period is the previous PUBLISHED period (totais_por_periodo), never an
   unpublished one, and the number of missing periods of the four-month calendar in between
   is right; the first published period has none. #}
{% test marts_periodo_anterior_publicado(model, totals) %}
with publicados as (
    select ano, mes,
           lag(ano) over (order by ano, mes) as ano_anterior,
           lag(mes) over (order by ano, mes) as mes_anterior,
           lag(make_date(ano, mes, 1)) over (order by ano, mes) as periodo_anterior
    from {{ totals }}
),

esperado as (
    select ano, mes, ano_anterior, mes_anterior,
           -- the calendar months 1, 5 and 9 strictly between the two periods
           (select count(*) from generate_series(periodo_anterior + interval '1 month',
                                                 make_date(ano, mes, 1) - interval '1 month', interval '1 month') as m
            where extract(month from m) in (1, 5, 9))::integer as ausentes
    from publicados
)

select v.tipo, v.chave, v.ano, v.mes, v.ano_anterior, v.mes_anterior, v.periodos_ausentes_entre
from {{ model }} as v
left join esperado as e on e.ano = v.ano and e.mes = v.mes
where e.ano is null
   or v.ano_anterior is distinct from e.ano_anterior
   or v.mes_anterior is distinct from e.mes_anterior
   or v.periodos_ausentes_entre is distinct from (case when e.ano_anterior is not null then e.ausentes end)
{% endtest %}


{# The table and every one of its columns have a description in the database (persist_docs). #}
{% test marts_documentado(model) %}
select 'tabela' as sem_descricao
from pg_class as c
where c.oid = '{{ model }}'::regclass and coalesce(obj_description(c.oid, 'pg_class'), '') = ''
union all
select a.attname::text
from pg_attribute as a
where a.attrelid = '{{ model }}'::regclass and a.attnum > 0 and not a.attisdropped
  and coalesce(col_description(a.attrelid, a.attnum), '') = ''
{% endtest %}
