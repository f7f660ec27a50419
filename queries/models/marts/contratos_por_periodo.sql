-- One row per published period, contract (unidade gestora + número do contrato + CNPJ) and organ
-- where the contract's workers work. The finest mart: the per-organ and per-company marts and
-- the contracts' summary are built from it.
-- The results app reads it by period and organ (the primary key) or company (an index).
-- Aggregated one period at a time (a lateral join per period): a small hash per period instead
-- of one over every contract of every period. Money is summed in cents as bigint, whose
-- aggregate state is far smaller than numeric's (the same exact values).
{{ config(
    materialized='incremental',
    incremental_strategy='marts_periodo',
    on_schema_change='fail',
    sql_header="set local parallel_tuple_cost = 0.01; set local work_mem = '64MB';",
    meta={'marts': {'fontes': ['historic_transformed'], 'periodo': ['ano', 'mes']}},
    pre_hook="{{ marts_preparar() }}",
    post_hook=["{{ marts_registrar_construcao_completa() }}",
               "{{ ensure_primary_key(['ano', 'mes', 'chave_contrato', 'chave_orgao']) }}",
               "{{ ensure_index('ano, mes, chave_empresa') }}"],
) }}

with periodos as (
    {{ marts_periodos_sql(ref('historic_transformed')) }}
),

agrupado as (
    select grupo.*
    from periodos as p
    cross join lateral (
        select
            t.ano,
            t.mes,
            t.id_unidade_gestora,
            t.id_contrato,
            t.cnpj_empresa,
            t.sigla_orgao_superior_unidade_gestora,
            t.sigla_orgao,
            t.nome_orgao,
            min(t.sigla_unidade_gestora) as sigla_unidade_gestora,
            min(t.nome_unidade_gestora) as nome_unidade_gestora,
            count(*) as quantidade_terceirizados,
            count(t.valor_custo_mensal) as quantidade_com_custo,
            coalesce(sum((t.valor_custo_mensal * 100)::bigint), 0) as custo_centavos,
            coalesce(sum((t.valor_salario_mensal * 100)::bigint), 0) as salario_centavos
        from {{ ref('historic_transformed') }} as t
        where t.ano = p.ano and t.mes = p.mes
        group by 1, 2, 3, 4, 5, 6, 7, 8
    ) as grupo
)

select
    ano,
    mes,
    jsonb_build_array(id_unidade_gestora, id_contrato, cnpj_empresa)::text as chave_contrato,
    jsonb_build_array(sigla_orgao_superior_unidade_gestora, sigla_orgao, nome_orgao)::text as chave_orgao,
    coalesce(cnpj_empresa, '(não informado)') as chave_empresa,
    id_unidade_gestora,
    sigla_unidade_gestora,
    nome_unidade_gestora,
    id_contrato,
    cnpj_empresa,
    sigla_orgao_superior_unidade_gestora,
    sigla_orgao,
    nome_orgao,
    quantidade_terceirizados,
    quantidade_com_custo,
    custo_centavos / 100.0 as valor_custo_mensal_total,
    salario_centavos / 100.0 as valor_salario_mensal_total
from agrupado
