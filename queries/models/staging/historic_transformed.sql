-- Incremental by period (macros/terceirizados_models.sql): a run rebuilds, in one transaction,
-- only the periods captured since the last verified build (delete + insert) and deletes the
-- periods no longer captured; the first run and --full-refresh build the whole table.
-- The error-level tests of schema.yml also run inside that transaction, on the periods it wrote
-- (macros/verify_before_commit.sql): rows that fail one are never published.
{{ config(
    materialized='incremental',
    incremental_strategy='periodo',
    on_schema_change='fail',
    pre_hook="{{ historic_prepare_state() }}",
    post_hook=["{{ ensure_primary_key(['ano', 'mes', 'id_terceirizado']) }}",
               "{{ ensure_index('valor_custo_mensal DESC NULLS LAST') }}",
               "{{ ensure_index('razao_social_empresa') }}",
               "{{ ensure_index('nome_orgao') }}",
               "{{ ensure_trigram_index('nome') }}",
               "{{ historic_record_full_build() }}",
               "{{ verify_before_commit('row_count_equals', compare_model=ref('historic_raw')) }}",
               "{{ verify_before_commit('accepted_values', column_name='mes', values=[1, 5, 9], quote=false) }}",
               "{{ verify_before_commit('sum_matches_source', column_name='valor_custo_mensal', compare_model=ref('historic_cleaned'), compare_column='vl_mensal_custo') }}",
               "{{ verify_before_commit('nulled_share_at_most', compare_model=ref('historic_renamed'), columns=['id_unidade_gestora', 'cnpj_empresa', 'quantidade_horas_semanais', 'valor_salario_mensal', 'valor_custo_mensal'], clean_upstream=false) }}",
               "{{ verify_before_commit('missing_share_at_most', columns=['valor_salario_mensal', 'valor_custo_mensal']) }}",
               "{{ refresh_statistics() }}"],
) }}

{{ terceirizados_transformed(ref('historic_renamed')) }}
{{ historic_incremental_filter() }}
