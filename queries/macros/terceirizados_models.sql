{#- The body of each staging step, written once and used by the latest models
    (raw -> cleaned -> renamed -> transformed) and by the historic_* models. -#}

{% macro terceirizados_cleaned(upstream) %}
with source as (
    select * from {{ upstream }}
),

cleaned as (
    select
        {{ clean_text('id_terc') }} as id_terc,
        {{ clean_text('sg_orgao_sup_tabela_ug') }} as sg_orgao_sup_tabela_ug,
        {{ clean_text('cd_ug_gestora') }} as cd_ug_gestora,
        {{ clean_text('nm_ug_tabela_ug') }} as nm_ug_tabela_ug,
        {{ clean_text('sg_ug_gestora') }} as sg_ug_gestora,
        {{ clean_text('nr_contrato') }} as nr_contrato,
        {{ clean_text('nr_cnpj') }} as nr_cnpj,
        {{ clean_text('nm_razao_social') }} as nm_razao_social,
        {{ clean_text('nr_cpf') }} as nr_cpf,
        {{ clean_text('nm_terceirizado') }} as nm_terceirizado,
        {{ clean_text('nm_categoria_profissional') }} as nm_categoria_profissional,
        {{ clean_education('nm_escolaridade') }} as nm_escolaridade,
        {{ clean_text('nr_jornada') }} as nr_jornada,
        {{ clean_text('nm_unidade_prestacao') }} as nm_unidade_prestacao,
        {{ clean_decimal('vl_mensal_salario') }} as vl_mensal_salario,
        {{ clean_decimal('vl_mensal_custo') }} as vl_mensal_custo,
        {{ clean_text('num_mes_carga') }} as num_mes_carga,
        {{ clean_text('mes_carga') }} as mes_carga,
        {{ clean_text('ano_carga') }} as ano_carga,
        {{ clean_text('sg_orgao') }} as sg_orgao,
        {{ clean_text('nm_orgao') }} as nm_orgao,
        {{ clean_code('cd_orgao_siafi') }} as cd_orgao_siafi,
        {{ clean_code('cd_orgao_siape') }} as cd_orgao_siape,
        periodo,
        linha_origem,
        capturado_em
    from source
)

select * from cleaned
{% endmacro %}


{% macro terceirizados_renamed(upstream) %}
with cleaned as (
    select * from {{ upstream }}
),

renamed as (
    select
        -- ids
        extract(year from periodo)::integer as ano,
        extract(month from periodo)::smallint as mes,
        id_terc as id_terceirizado,
        -- dimensions
        sg_orgao_sup_tabela_ug as sigla_orgao_superior_unidade_gestora,
        cd_ug_gestora as id_unidade_gestora,
        sg_ug_gestora as sigla_unidade_gestora,
        nm_ug_tabela_ug as nome_unidade_gestora,
        cd_orgao_siafi as id_orgao_siafi,
        cd_orgao_siape as id_orgao_siape,
        sg_orgao as sigla_orgao,
        nm_orgao as nome_orgao,
        nm_unidade_prestacao as nome_unidade_prestacao,
        nr_contrato as id_contrato,
        nr_cnpj as cnpj_empresa,
        nm_razao_social as razao_social_empresa,
        nr_cpf as cpf,
        nm_terceirizado as nome,
        {{ cbo_code('nm_categoria_profissional') }} as cbo_2002,
        {{ cbo_title('nm_categoria_profissional') }} as categoria_profissional,
        nm_escolaridade as nivel_escolaridade,
        -- measures
        nr_jornada as quantidade_horas_semanais,
        vl_mensal_salario as valor_salario_mensal,
        vl_mensal_custo as valor_custo_mensal,
        -- metadata
        capturado_em
    from cleaned
)

select * from renamed
{% endmacro %}


{% macro terceirizados_transformed(upstream) %}
with renamed as (
    select * from {{ upstream }}
),

transformed as (
    select
        ano,
        mes,
        id_terceirizado,
        sigla_orgao_superior_unidade_gestora,
        {{ zero_pad('id_unidade_gestora', 6) }} as id_unidade_gestora,
        sigla_unidade_gestora,
        nome_unidade_gestora,
        id_orgao_siafi,
        id_orgao_siape,
        sigla_orgao,
        nome_orgao,
        nome_unidade_prestacao,
        id_contrato,
        {{ zero_pad('cnpj_empresa', 14) }} as cnpj_empresa,
        razao_social_empresa,
        cpf,
        nome,
        cbo_2002,
        categoria_profissional,
        nivel_escolaridade,
        {{ safe_integer('quantidade_horas_semanais') }} as quantidade_horas_semanais,
        {{ safe_numeric('valor_salario_mensal') }} as valor_salario_mensal,
        {{ safe_numeric('valor_custo_mensal') }} as valor_custo_mensal,
        capturado_em
    from renamed
)

select * from transformed
{% endmacro %}
