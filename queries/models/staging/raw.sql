-- The newest captured period of raw.terceirizados, unchanged.
-- One plain select, without the usual source CTE: PostgreSQL does not merge a view whose query
-- has a WITH clause into the query that reads it, and the newest period's subquery then keeps
-- the cleaning of staging.cleaned on one core (measured on 75k rows: 0.61 s serial, 0.33 s on
-- two workers).
select *
from {{ source('raw', 'terceirizados') }}
where periodo = (select max(periodo) from {{ source('raw', 'terceirizados') }})
