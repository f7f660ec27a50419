-- One row per published period and education level: the workers, the salaries' total and their
-- distribution (minimum, quartiles, 95th percentile) over the workers with a salary. The chart
-- "salário por escolaridade" of the results app reads it instead of the 1.6 M-row table.
{{ config(
    materialized='incremental',
    incremental_strategy='marts_periodo',
    on_schema_change='fail',
    meta={'marts': {'fontes': ['historic_transformed'], 'periodo': ['ano', 'mes']}},
    pre_hook="{{ marts_preparar() }}",
    post_hook=["{{ marts_registrar_construcao_completa() }}",
               "{{ ensure_primary_key(['ano', 'mes', 'chave_escolaridade']) }}"],
) }}

with grupos as (
    select
        ano,
        mes,
        nivel_escolaridade,
        count(*) as quantidade_terceirizados,
        count(valor_salario_mensal) as quantidade_com_salario,
        coalesce(sum(valor_salario_mensal), 0) as valor_salario_mensal_total,
        coalesce(sum(valor_custo_mensal), 0) as valor_custo_mensal_total,
        array_agg(valor_salario_mensal order by valor_salario_mensal)
            filter (where valor_salario_mensal is not null) as salarios
    from {{ ref('historic_transformed') }}
    where {{ marts_filtro() }}
    group by ano, mes, nivel_escolaridade
)

select
    ano,
    mes,
    coalesce(to_jsonb(nivel_escolaridade)::text, 'null') as chave_escolaridade,
    nivel_escolaridade,
    quantidade_terceirizados,
    quantidade_com_salario,
    valor_salario_mensal_total,
    valor_custo_mensal_total,
    salarios[1] as valor_salario_minimo,
    {{ marts_percentil('salarios', 'quantidade_com_salario', '0.25') }} as valor_salario_primeiro_quartil,
    {{ marts_percentil('salarios', 'quantidade_com_salario', '0.5') }} as valor_salario_mediano,
    {{ marts_percentil('salarios', 'quantidade_com_salario', '0.75') }} as valor_salario_terceiro_quartil,
    {{ marts_percentil('salarios', 'quantidade_com_salario', '0.95') }} as valor_salario_percentil_95,
    salarios[quantidade_com_salario] as valor_salario_maximo
from grupos
