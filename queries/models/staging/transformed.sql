{{ config(materialized='table', post_hook=["{{ primary_key(['ano', 'mes', 'id_terceirizado']) }}", "{{ refresh_statistics() }}"]) }}

{{ terceirizados_transformed(ref('renamed')) }}
