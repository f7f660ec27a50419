-- The error-level tests of schema.yml also run inside the model's transaction, before the commit
-- (macros/verify_before_commit.sql): rows that fail one are never published, the previous table
-- stays. The primary key covers the unique and not-null ones.
{{ config(
    materialized='table',
    post_hook=[
        "{{ primary_key(['ano', 'mes', 'id_terceirizado']) }}",
        "{{ verify_before_commit('row_count_equals', compare_model=ref('raw')) }}",
        "{{ verify_before_commit('accepted_values', column_name='mes', values=[1, 5, 9], quote=false) }}",
        "{{ verify_before_commit('sum_matches_source', column_name='valor_custo_mensal', compare_model=ref('cleaned'), compare_column='vl_mensal_custo') }}",
        "{{ verify_before_commit('nulled_share_at_most', compare_model=ref('renamed'), columns=['id_unidade_gestora', 'cnpj_empresa', 'quantidade_horas_semanais', 'valor_salario_mensal', 'valor_custo_mensal'], clean_upstream=false) }}",
        "{{ verify_before_commit('missing_share_at_most', columns=['valor_salario_mensal', 'valor_custo_mensal']) }}",
        "{{ refresh_statistics(statistics_target=10) }}",
    ],
) }}

{{ terceirizados_transformed(ref('renamed')) }}
