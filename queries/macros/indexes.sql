{#- Post-hooks for a model's table, shared by the historic models and the marts: its primary key
    and indexes, built in bulk once (a full build creates the table; incremental runs insert
    into the existing ones, so a duplicated key fails the run and the table keeps its previous
    rows), and the planner's statistics of what the model wrote. -#}

{# Post-hook: the primary key, built in bulk, only when the table does not have one yet (a full
   rebuild creates the table; incremental runs insert into the existing key). With more
   maintenance memory than the default 64 MB the sort of 1.5 million keys stays in memory
   (measured 8.8 s -> 5.9 s on a loaded 2-core machine). A primary key on other columns (the
   table altered outside the pipeline) fails the build: the flows' builds leave out the unique
   and not-null tests of these columns because this key answers them (tag
   verificado_antes_do_commit), so a key that does not is never taken for it. #}
{% macro ensure_primary_key(columns) -%}
    set local maintenance_work_mem = '512MB';
    do $$
    declare
        existing text[];
    begin
        select array_agg(a.attname::text order by a.attname::text collate "C") into existing
        from pg_constraint as c
        join pg_attribute as a on a.attrelid = c.conrelid and a.attnum = any(c.conkey)
        where c.conrelid = '{{ this }}'::regclass and c.contype = 'p';
        if existing is null then
            alter table {{ this }} add primary key ({{ columns | join(', ') }});
        elsif existing <> array[{% for column in columns | sort %}'{{ column }}'{{ ", " if not loop.last }}{% endfor %}]::text[] then
            raise exception 'a chave primária de {{ this.schema }}.{{ this.identifier }} é (%), não ({{ columns | join(", ") }}): a tabela foi alterada fora do pipeline. Recrie a chave ou reconstrua a tabela (--full-refresh).',
                array_to_string(existing, ', ');
        end if;
    end
    $$
{%- endmacro %}


{# Post-hook: a B-tree index on ``expression`` (a column, with its order if any: e.g.
   'valor_custo_mensal DESC NULLS LAST'), built in bulk only when the table has none with that
   definition (a full rebuild creates the table; incremental runs insert into the existing
   index). For the results app on the large historic table: the first page of a grid sorted by
   cost reads the index instead of sorting every row, and a "contains" filter on an agency's or
   a company's name finds the matching names in the index (one probe per distinct name) and
   reads only their rows. #}
{% macro ensure_index(expression) -%}
    set local maintenance_work_mem = '512MB';
    do $$
    begin
        if not exists (select 1 from pg_index where indrelid = '{{ this }}'::regclass
                       and pg_get_indexdef(indexrelid) ilike '%using btree ({{ expression }})') then
            create index on {{ this }} ({{ expression }});
        end if;
    end
    $$
{%- endmacro %}


{# Post-hook: the planner's statistics of the rows just written (a sample of 30,000 rows, a
   fraction of a second), in the model's transaction. Without them, until autovacuum gets to
   the new table, the planner guesses: a "contains" filter of the results app on a column that
   most rows match was estimated at 0.01% of the rows and read all 1.6 million rows and sorted
   them (0.7 s) instead of walking the key's index to the first 100 matches (milliseconds).
   ``statistics_target``: a smaller sample for a table of one period (10: 3,000 rows instead of
   30,000, up to 10 most common values per column), whose plans need the row count and rough
   frequencies (0.8 s -> 0.07 s on 75,000 rows, in the scheduled run's path). ``set local``
   ends with the model's transaction. #}
{% macro refresh_statistics(statistics_target=none) -%}
    {%- if statistics_target is not none %}set local default_statistics_target = {{ statistics_target | int }};
    {% endif -%}
    analyze {{ this }}
{%- endmacro %}


{# Post-hook: a trigram index (pg_trgm, GIN) on a text column with about one value per row (a
   person's name), for the results app's "contains" filters, which a B-tree cannot serve. Built
   in bulk only when the table has none (a full rebuild creates the table). Where the database
   does not offer pg_trgm, or the user may not create it, the column stays without the index
   (a filter on it then reads the table) and the build goes on. #}
{% macro ensure_trigram_index(column) -%}
    set local maintenance_work_mem = '512MB';
    do $$
    begin
        if not exists (select 1 from pg_extension where extname = 'pg_trgm') then
            begin
                create extension if not exists pg_trgm;
            exception when insufficient_privilege or undefined_file or feature_not_supported then
                raise notice 'pg_trgm indisponível: {{ this }}.{{ column }} fica sem índice de trigramas';
                return;
            end;
        end if;
        if not exists (select 1 from pg_index where indrelid = '{{ this }}'::regclass
                       and pg_get_indexdef(indexrelid) ilike '%using gin ({{ column }} %gin_trgm_ops)') then
            execute format('create index on %s using gin (%I %s.gin_trgm_ops)', '{{ this }}', '{{ column }}',
                           (select n.nspname from pg_extension e join pg_namespace n on n.oid = e.extnamespace
                            where e.extname = 'pg_trgm'));
        end if;
    end
    $$
{%- endmacro %}
