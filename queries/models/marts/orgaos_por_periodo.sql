-- One row per published period and organ (órgão superior da unidade gestora + órgão), from
-- contratos_por_periodo (one row per contract and organ: its rows count the organ's contracts).
{{ config(
    materialized='incremental',
    incremental_strategy='marts_periodo',
    on_schema_change='fail',
    meta={'marts': {'fontes': ['contratos_por_periodo'], 'periodo': ['ano', 'mes']}},
    pre_hook=["{{ marts_preparar() }}", "{{ widen_to_numeric(['razao_custo_salario']) }}"],
    post_hook=["{{ marts_registrar_construcao_completa() }}", "{{ ensure_primary_key(['ano', 'mes', 'chave_orgao']) }}"],
) }}

select
    ano,
    mes,
    chave_orgao,
    sigla_orgao_superior_unidade_gestora,
    sigla_orgao,
    nome_orgao,
    sum(quantidade_terceirizados)::bigint as quantidade_terceirizados,
    sum(valor_custo_mensal_total) as valor_custo_mensal_total,
    sum(valor_salario_mensal_total) as valor_salario_mensal_total,
    round(sum(valor_custo_mensal_total) / nullif(sum(quantidade_com_custo), 0), 2) as valor_custo_medio,
    round(sum(valor_custo_mensal_total) / nullif(sum(valor_salario_mensal_total), 0), 4) as razao_custo_salario,
    count(distinct chave_empresa) as quantidade_empresas,
    count(*) as quantidade_contratos
from {{ ref('contratos_por_periodo') }}
where {{ marts_filtro() }}
group by ano, mes, chave_orgao, sigla_orgao_superior_unidade_gestora, sigla_orgao, nome_orgao
