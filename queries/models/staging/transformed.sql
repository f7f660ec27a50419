{{ config(materialized='table') }}

{{ terceirizados_transformed(ref('renamed')) }}
