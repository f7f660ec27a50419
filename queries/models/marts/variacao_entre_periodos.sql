-- For organs and companies: each published period against the previous PUBLISHED one. The
-- published periods are those of totais_por_periodo (the distinct periods of
-- staging.historic_transformed): an organ or company absent from a published period counts as
-- zero there (it left, or came in), while a period missing from the portal altogether is not a
-- period at all: the comparison skips to the previous published period and says how many
-- periods of the four-month calendar (January, May, September) are missing in between.
-- Rebuilt whole when any period of its sources changes (each period depends on the previous).
{{ config(
    materialized='incremental',
    incremental_strategy='marts_periodo',
    on_schema_change='fail',
    meta={'marts': {'fontes': ['totais_por_periodo', 'orgaos_por_periodo', 'empresas_por_periodo'],
                    'periodo': ['ano', 'mes'], 'granularidade': 'tabela'}},
    pre_hook=["{{ marts_preparar() }}",
              "{{ widen_to_numeric(['variacao_terceirizados_percentual', 'variacao_custo_percentual']) }}"],
    post_hook=["{{ marts_registrar_construcao_completa() }}",
               "{{ ensure_primary_key(['ano', 'mes', 'tipo', 'chave']) }}"],
) }}

with publicados as (
    select
        ano,
        mes,
        lag(ano) over publicacoes as ano_anterior,
        lag(mes) over publicacoes as mes_anterior,
        -- position in the four-month calendar: January, May and September of each year
        (ano * 3 + (mes - 1) / 4) - lag(ano * 3 + (mes - 1) / 4) over publicacoes - 1 as periodos_ausentes_entre
    from {{ ref('totais_por_periodo') }}
    window publicacoes as (order by ano, mes)
),

valores as (
    select
        'orgao' as tipo,
        ano,
        mes,
        chave_orgao as chave,
        coalesce(sigla_orgao || ' – ' || nome_orgao, nome_orgao, sigla_orgao, '(órgão não informado)') as nome,
        sigla_orgao_superior_unidade_gestora as detalhe,
        quantidade_terceirizados,
        valor_custo_mensal_total
    from {{ ref('orgaos_por_periodo') }}
    union all
    select
        'empresa' as tipo,
        ano,
        mes,
        chave_empresa as chave,
        coalesce(razao_social_empresa, '(razão social não informada)') as nome,
        cnpj_empresa as detalhe,
        quantidade_terceirizados,
        valor_custo_mensal_total
    from {{ ref('empresas_por_periodo') }}
),

pares as (
    -- every organ and company of the period, and of the previous published period
    select p.ano, p.mes, v.tipo, v.chave
    from publicados as p
    join valores as v on v.ano = p.ano and v.mes = p.mes
    union
    select p.ano, p.mes, v.tipo, v.chave
    from publicados as p
    join valores as v on v.ano = p.ano_anterior and v.mes = p.mes_anterior
),

comparados as (
    select
        x.tipo,
        x.chave,
        coalesce(atual.nome, anterior.nome) as nome,
        coalesce(atual.detalhe, anterior.detalhe) as detalhe,
        x.ano,
        x.mes,
        p.ano_anterior,
        p.mes_anterior,
        p.periodos_ausentes_entre,
        case
            when p.ano_anterior is null then 'primeiro_periodo'
            when anterior.chave is null then 'entrou'
            when atual.chave is null then 'saiu'
            else 'permaneceu'
        end as situacao,
        coalesce(atual.quantidade_terceirizados, 0) as quantidade_terceirizados,
        case when p.ano_anterior is not null then coalesce(anterior.quantidade_terceirizados, 0) end
            as quantidade_terceirizados_anterior,
        coalesce(atual.valor_custo_mensal_total, 0) as valor_custo_mensal_total,
        case when p.ano_anterior is not null then coalesce(anterior.valor_custo_mensal_total, 0) end
            as valor_custo_mensal_total_anterior
    from pares as x
    join publicados as p on p.ano = x.ano and p.mes = x.mes
    left join valores as atual
        on atual.tipo = x.tipo and atual.chave = x.chave and atual.ano = x.ano and atual.mes = x.mes
    left join valores as anterior
        on anterior.tipo = x.tipo and anterior.chave = x.chave
       and anterior.ano = p.ano_anterior and anterior.mes = p.mes_anterior
    where {{ marts_filtro() }}
)

select
    tipo,
    chave,
    nome,
    detalhe,
    ano,
    mes,
    ano_anterior,
    mes_anterior,
    periodos_ausentes_entre,
    situacao,
    quantidade_terceirizados,
    quantidade_terceirizados_anterior,
    quantidade_terceirizados - quantidade_terceirizados_anterior as variacao_terceirizados,
    round(100.0 * (quantidade_terceirizados - quantidade_terceirizados_anterior)
          / nullif(quantidade_terceirizados_anterior, 0), 2) as variacao_terceirizados_percentual,
    valor_custo_mensal_total,
    valor_custo_mensal_total_anterior,
    valor_custo_mensal_total - valor_custo_mensal_total_anterior as variacao_custo,
    round(100.0 * (valor_custo_mensal_total - valor_custo_mensal_total_anterior)
          / nullif(valor_custo_mensal_total_anterior, 0), 2) as variacao_custo_percentual
from comparados
