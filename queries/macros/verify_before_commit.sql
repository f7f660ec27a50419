{#- Post-hook: the error-level test `test_name` of a table model (a generic test: the same macro
    schema.yml runs), run INSIDE the model's transaction, after the new table has taken the place
    of the previous one and before the commit. A failing row raises a PostgreSQL error (naming
    the check and up to three failing rows): the transaction rolls back and the previous table
    stays, as with a duplicated primary key.

    dbt's `build` runs a model's tests only after the commit: a failing error-level test then
    fails the run, but the table has already been replaced by the rows that failed it, and the
    next run would find the newest period "already materialized". With these hooks a table with
    rows that fail an error-level check is never published. Those tests carry the tag
    verificado_antes_do_commit in schema.yml: the flows' builds leave them out (reading the
    table again after the commit would give the same answer on the same rows), and the
    on-run-end record of verified periods counts them as passed when the model was built; a
    manual `dbt test` or `dbt build` still runs them. The same tag marks the unique and not-null
    tests of the primary key's columns: the key, created or kept by a post-hook in the same
    transaction, has already verified them.
    A model built by period (incremental_strategy 'periodo': the historic models) is checked on
    the periods this build wrote, as its scoped tests are (`historic_scope_filter`: every row on
    a full build), and so is the model it is compared with: the hook comes after the record of
    the build (`historic_record_full_build`). A failure also undoes the rebuilt periods' delete
    and insert and their records: the previous rows of those periods stay, and the next run
    rebuilds and checks them again.
    tests/test_dbt_overrides.py checks that every error-level test of a model with these hooks
    is covered by one of them or by its primary key, and that the tag is on exactly the tests
    the hooks run. -#}
{% macro verify_before_commit(test_name) -%}
    {%- set test = context.get('test_' ~ test_name) -%}
    {%- if test is none -%}
        {{ exceptions.raise_compiler_error("verify_before_commit: teste genérico desconhecido: " ~ test_name) }}
    {%- endif -%}
    {%- set arguments = kwargs.copy() -%}
    {%- if config.get('incremental_strategy') == 'periodo' -%}
        {%- do arguments.update({'model': historic_scoped_relation(this, 'escopo')}) -%}
        {%- if 'compare_model' in arguments -%}
            {%- do arguments.update({'compare_model': historic_scoped_relation(arguments['compare_model'], 'escopo_comparado')}) -%}
        {%- endif -%}
    {%- else -%}
        {%- do arguments.update({'model': this}) -%}
    {%- endif -%}
    {%- set label = test_name ~ (' (' ~ arguments['column_name'] ~ ')' if 'column_name' in arguments else '') -%}
    {%- set failing = test(**arguments) %}
    do $verificacao$
    declare
        falhas bigint;
        exemplos text;
    begin
        select count(*) into falhas from (
            {{ failing }}
        ) as linhas_que_falham;
        if falhas > 0 then
            -- what failed, in the message: up to three of the failing rows, as PostgreSQL prints them
            select string_agg(exemplo::text, '; ') into exemplos from (
                select * from ({{ failing }}) as linhas_que_falham limit 3
            ) as exemplo;
            raise exception 'verificação % falhou em % (% resultado(s), por exemplo %): a tabela anterior foi mantida',
                '{{ label }}', '{{ this.schema }}.{{ this.identifier }}', falhas, exemplos;
        end if;
    end
    $verificacao$
{%- endmacro %}

