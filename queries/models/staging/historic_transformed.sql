-- Incremental by period (macros/terceirizados_models.sql): a run rebuilds, in one transaction,
-- only the periods captured since the last verified build (delete + insert) and deletes the
-- periods no longer captured; the first run and --full-refresh build the whole table.
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
               "{{ refresh_statistics() }}"],
) }}

{{ terceirizados_transformed(ref('historic_renamed')) }}
{{ historic_incremental_filter() }}
