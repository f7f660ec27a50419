-- Every captured period of raw.terceirizados, unchanged.
select * from {{ source('raw', 'terceirizados') }}
