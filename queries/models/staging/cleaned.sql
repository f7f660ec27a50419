-- A table: the cleaning rules run once; the models and tests downstream read plain columns.
-- Unlogged: an intermediate that every run rebuilds needs no WAL (after a crash it is empty until the next run).
{{ config(materialized='table', unlogged=true) }}

{{ terceirizados_cleaned(ref('raw')) }}
