-- One row per published period: the totals of staging.historic_transformed that every other
-- mart reconciles with, and the list of published periods (variacao_entre_periodos).
{{ config(
    materialized='incremental',
    incremental_strategy='marts_periodo',
    on_schema_change='fail',
    meta={'marts': {'fontes': ['historic_transformed'], 'periodo': ['ano', 'mes']}},
    pre_hook="{{ marts_preparar() }}",
    post_hook=["{{ marts_registrar_construcao_completa() }}", "{{ ensure_primary_key(['ano', 'mes']) }}"],
) }}

select
    ano,
    mes,
    count(*) as quantidade_terceirizados,
    coalesce(sum(valor_custo_mensal), 0) as valor_custo_mensal_total,
    coalesce(sum(valor_salario_mensal), 0) as valor_salario_mensal_total
from {{ ref('historic_transformed') }}
where {{ marts_filtro() }}
group by ano, mes
