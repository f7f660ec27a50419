-- One row per contract (unidade gestora + número do contrato + CNPJ: see schema.yml for why):
-- when it was first and last seen, the periods it is in, its workers and cost in the last
-- period it is in, and its peaks.
-- A contract's summary depends on every period: a change in a period it was built from (a period
-- recaptured or removed, or this SQL changed) rebuilds the whole table. New periods published
-- after every period it was built from (the four-monthly publication) are merged instead: only
-- the contracts present in them are summarised again, from their previous summary and the new
-- periods (the strategy replaces those rows; macros/marts_incremental.sql, 'anexar').
{{ config(
    materialized='incremental',
    incremental_strategy='marts_periodo',
    on_schema_change='fail',
    sql_header="set local parallel_tuple_cost = 0.01; set local work_mem = '64MB';",
    meta={'marts': {'fontes': ['contratos_por_periodo', 'empresas_por_periodo'], 'periodo': none,
                    'granularidade': 'tabela', 'chave': 'chave_contrato'}},
    pre_hook="{{ marts_preparar() }}",
    post_hook=["{{ marts_registrar_construcao_completa() }}", "{{ ensure_primary_key(['chave_contrato']) }}"],
) }}

{%- set appending = is_incremental() and marts_plan()['anexar'] %}

with por_periodo as (
    -- the contract in each period (of the periods to summarise), over the organs its workers work in
    select
        chave_contrato,
        make_date(ano, mes, 1) as periodo,
        ano,
        mes,
        min(chave_empresa) as chave_empresa,
        min(id_unidade_gestora) as id_unidade_gestora,
        min(sigla_unidade_gestora) as sigla_unidade_gestora,
        min(nome_unidade_gestora) as nome_unidade_gestora,
        min(id_contrato) as id_contrato,
        min(cnpj_empresa) as cnpj_empresa,
        min(sigla_orgao_superior_unidade_gestora) as sigla_orgao_superior_unidade_gestora,
        -- the organ with the most workers of the contract in the period
        (array_agg(chave_orgao order by quantidade_terceirizados desc, chave_orgao))[1] as chave_orgao,
        count(*) as quantidade_orgaos,
        sum(quantidade_terceirizados)::bigint as quantidade_terceirizados,
        sum(valor_custo_mensal_total) as valor_custo_mensal_total
    from {{ ref('contratos_por_periodo') }}
    where {{ marts_filtro() }}
    group by chave_contrato, ano, mes
),

resumo_dos_periodos as (
    select
        chave_contrato,
        min(periodo) as primeiro_periodo,
        max(periodo) as ultimo_periodo,
        count(*) as quantidade_periodos,
        string_agg(to_char(periodo, 'YYYY-MM'), ', ' order by periodo) as periodos,
        max(quantidade_terceirizados) as quantidade_terceirizados_pico,
        (array_agg(periodo order by quantidade_terceirizados desc, periodo desc))[1] as periodo_pico_terceirizados,
        max(valor_custo_mensal_total) as valor_custo_mensal_pico,
        (array_agg(periodo order by valor_custo_mensal_total desc, periodo desc))[1] as periodo_pico_custo
    from por_periodo
    group by chave_contrato
),

resumo as (
{%- if appending %}
    -- the new periods merged into the previous summary (they are later than all its periods;
    -- a tie with an earlier peak goes to the newer period, as in a full build)
    select
        n.chave_contrato,
        coalesce(o.primeiro_periodo, n.primeiro_periodo) as primeiro_periodo,
        n.ultimo_periodo,
        coalesce(o.quantidade_periodos, 0) + n.quantidade_periodos as quantidade_periodos,
        concat_ws(', ', o.periodos, n.periodos) as periodos,
        greatest(o.quantidade_terceirizados_pico, n.quantidade_terceirizados_pico) as quantidade_terceirizados_pico,
        case when o.quantidade_terceirizados_pico > n.quantidade_terceirizados_pico then o.periodo_pico_terceirizados
             else n.periodo_pico_terceirizados end as periodo_pico_terceirizados,
        greatest(o.valor_custo_mensal_pico, n.valor_custo_mensal_pico) as valor_custo_mensal_pico,
        case when o.valor_custo_mensal_pico > n.valor_custo_mensal_pico then o.periodo_pico_custo
             else n.periodo_pico_custo end as periodo_pico_custo
    from resumo_dos_periodos as n
    left join {{ this }} as o on o.chave_contrato = n.chave_contrato
{%- else %}
    select * from resumo_dos_periodos
{%- endif %}
)

select
    r.chave_contrato,
    u.id_unidade_gestora,
    u.sigla_unidade_gestora,
    u.nome_unidade_gestora,
    u.id_contrato,
    u.cnpj_empresa,
    e.razao_social_empresa,
    u.sigla_orgao_superior_unidade_gestora,
    u.chave_orgao as chave_orgao_principal,
    u.quantidade_orgaos as quantidade_orgaos_ultimo_periodo,
    r.primeiro_periodo,
    r.ultimo_periodo,
    r.quantidade_periodos,
    r.periodos,
    u.quantidade_terceirizados as quantidade_terceirizados_ultimo_periodo,
    u.valor_custo_mensal_total as valor_custo_mensal_ultimo_periodo,
    r.quantidade_terceirizados_pico,
    r.periodo_pico_terceirizados,
    r.valor_custo_mensal_pico,
    r.periodo_pico_custo
from resumo as r
join por_periodo as u on u.chave_contrato = r.chave_contrato and u.periodo = r.ultimo_periodo
left join {{ ref('empresas_por_periodo') }} as e
    on e.ano = u.ano and e.mes = u.mes and e.chave_empresa = u.chave_empresa
