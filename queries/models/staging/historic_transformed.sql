{{ config(materialized='table', post_hook="{{ primary_key(['ano', 'mes', 'id_terceirizado']) }}") }}

{{ terceirizados_transformed(ref('historic_renamed')) }}
