{{ config(materialized='table') }}

{{ terceirizados_transformed(ref('historic_renamed')) }}
