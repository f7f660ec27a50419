-- The newest captured period of raw.terceirizados, unchanged.
with source as (
    select * from {{ source('raw', 'terceirizados') }}
)

select *
from source
where periodo = (select max(periodo) from {{ source('raw', 'terceirizados') }})
