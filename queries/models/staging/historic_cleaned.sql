-- A table: the cleaning rules run once; the models and tests downstream read plain columns.
-- Unlogged: an intermediate needs no WAL (after a crash it is empty, and the next run rebuilds it whole).
-- Incremental by period (macros/terceirizados_models.sql): a run cleans only the periods captured
-- since the last verified build and removes the periods no longer captured.
{{ config(
    materialized='incremental',
    incremental_strategy='periodo',
    unlogged=true,
    pre_hook="{{ historic_prepare_state() }}",
    post_hook="{{ historic_record_full_build() }}",
) }}

{{ terceirizados_cleaned(ref('historic_raw')) }}
{{ historic_incremental_filter() }}
