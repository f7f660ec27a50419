-- One row per published period and company (CNPJ): the razão social as published in that
-- period (the most frequent among the company's rows of the period) and the totals of its
-- contracts (contratos_por_periodo).
{{ config(
    materialized='incremental',
    incremental_strategy='marts_periodo',
    on_schema_change='fail',
    meta={'marts': {'fontes': ['historic_transformed', 'contratos_por_periodo'], 'periodo': ['ano', 'mes']}},
    pre_hook="{{ marts_preparar() }}",
    post_hook=["{{ marts_registrar_construcao_completa() }}",
               "{{ ensure_primary_key(['ano', 'mes', 'chave_empresa']) }}"],
) }}

with grafias as (
    select ano, mes, coalesce(cnpj_empresa, '(não informado)') as chave_empresa, razao_social_empresa,
           count(*) as linhas
    from {{ ref('historic_transformed') }}
    where {{ marts_filtro() }}
    group by 1, 2, 3, 4
),

razao_social as (
    select distinct on (ano, mes, chave_empresa) ano, mes, chave_empresa, razao_social_empresa
    from grafias
    order by ano, mes, chave_empresa, razao_social_empresa is null, linhas desc, razao_social_empresa
),

contratos as (
    select
        ano,
        mes,
        chave_empresa,
        min(cnpj_empresa) as cnpj_empresa,
        sum(quantidade_terceirizados)::bigint as quantidade_terceirizados,
        sum(valor_custo_mensal_total) as valor_custo_mensal_total,
        sum(valor_salario_mensal_total) as valor_salario_mensal_total,
        round(sum(valor_custo_mensal_total) / nullif(sum(quantidade_com_custo), 0), 2) as valor_custo_medio,
        count(distinct chave_orgao) as quantidade_orgaos,
        count(distinct chave_contrato) as quantidade_contratos
    from {{ ref('contratos_por_periodo') }}
    where {{ marts_filtro() }}
    group by ano, mes, chave_empresa
)

select
    c.ano,
    c.mes,
    c.chave_empresa,
    c.cnpj_empresa,
    r.razao_social_empresa,
    c.quantidade_terceirizados,
    c.valor_custo_mensal_total,
    c.valor_salario_mensal_total,
    c.valor_custo_medio,
    c.quantidade_orgaos,
    c.quantidade_contratos
from contratos as c
left join razao_social as r on r.ano = c.ano and r.mes = c.mes and r.chave_empresa = c.chave_empresa
