{{ config(materialized='table', post_hook=["{{ primary_key(['ano', 'mes', 'id_terceirizado']) }}", "{{ refresh_statistics(statistics_target=10) }}"]) }}

{{ terceirizados_transformed(ref('renamed')) }}
