-- A table: the cleaning rules run once; the models and tests downstream read plain columns.
{{ config(materialized='table') }}

{{ terceirizados_cleaned(ref('historic_raw')) }}
