{#- ------------------------------------------------------------------------------------
    Incremental marts (schema marts), built by the historic materialization after
    staging.historic_transformed.

    marts.periodos_construidos records, per mart and published period, what the period's
    rows were built from: the version of each upstream (fonte) and of the mart's own SQL
    (md5 of its code and contract), how many rows the period has, the dbt invocation that
    built it and when. A run rebuilds only the periods whose upstream or SQL changed and
    removes the periods that left the upstream (strategy 'marts_periodo': delete + insert
    of those periods and of their records, in the model's one transaction).

    Upstream versions, read without scanning any table:
    - staging.historic_transformed: per period, the transaction that wrote its rows (xmin
      of the period's first row by primary key). The historic models rewrite a period
      (delete + insert) or the whole table (a new table) whenever its rows change, so
      the xmin changes with them; this holds whether the historic models are incremental
      or tables;
    - another mart: its own record (modelo@construido_em) in marts.periodos_construidos.

    meta.marts in a model's config: fontes (upstream model names, each also ref()'d by the
    model), periodo (the model's year and month columns, or none for a mart without them)
    and granularidade: 'periodo' (only the changed periods are rebuilt) or 'tabela' (any
    change rebuilds the whole table: a contract's summary and a period's comparison with
    the previous one depend on other periods). A 'tabela' mart with a key (meta.marts.chave)
    can also take new periods newer than every period it was built from without a rebuild
    ('anexar', the four-monthly publication): the model merges them into its rows (see
    contratos.sql) and the strategy replaces the rows of those keys.

    Everything is rebuilt (CREATE TABLE AS) on the first run and with --full-refresh; a
    run without a record of the mart (the record table dropped) rebuilds it whole in place.

    The test of totais_por_periodo against staging.historic_transformed (marts_escopo) reads the
    periods built by this dbt invocation (every row with --full-refresh or --vars
    '{verificar_todos_os_periodos: true}'); every other test of the marts reads every row.
    ---------------------------------------------------------------------------------- -#}

{% macro marts_state_relation() -%}
    {{ return(api.Relation.create(database=target.database, schema=generate_schema_name('marts', none),
                                  identifier='periodos_construidos', type='table')) }}
{%- endmacro %}


{% macro marts_meta() -%}
    {%- set meta = (config.get('meta') or {}).get('marts') or {} -%}
    {{ return({'fontes': meta.get('fontes', []), 'periodo': meta.get('periodo', ['ano', 'mes']),
               'granularidade': meta.get('granularidade', 'periodo'), 'chave': meta.get('chave')}) }}
{%- endmacro %}


{# ' (2024-05, 2025-01)' for a log line; '' for none. #}
{% macro marts_labels(periods) -%}
    {{ return(' (' ~ periods | join(', ') ~ ')' if periods else '') }}
{%- endmacro %}


{# A predicate on year and month columns selecting the given 'YYYY-MM' periods; false for none. #}
{% macro marts_period_predicate(periods, columns=['ano', 'mes'], prefix='') -%}
    {%- if not periods -%}
        false
    {%- else -%}
        ({{ prefix }}{{ columns[0] }}, {{ prefix }}{{ columns[1] }}) in (
            {%- for period in periods %}({{ period[:4] | int }}, {{ period[5:7] | int }}){{ ", " if not loop.last }}{% endfor -%}
        )
    {%- endif -%}
{%- endmacro %}


{# The distinct (ano, mes) of a relation with a primary key starting with them: a loose scan
   of the index, a few probes per period instead of reading every row. #}
{% macro marts_loose_periods_sql(relation) -%}
    with recursive periodos_da_fonte as (
        (select ano, mes from {{ relation }} order by ano, mes limit 1)
        union all
        select seguinte.ano, seguinte.mes
        from periodos_da_fonte as atual
        cross join lateral (
            select s.ano, s.mes from {{ relation }} as s
            where (s.ano, s.mes) > (atual.ano, atual.mes)
            order by s.ano, s.mes
            limit 1
        ) as seguinte
    )
    select ano, mes from periodos_da_fonte
{%- endmacro %}


{# Per published period of the upstreams: ano, mes and the upstreams' version (text). #}
{% macro marts_source_versions_sql() -%}
    {%- set parts = [] -%}
    {%- for fonte in marts_meta()['fontes'] -%}
        {%- if fonte == 'historic_transformed' -%}
            {%- set relation = ref(fonte) -%}
            {%- do parts.append("select '" ~ fonte ~ "' as fonte, p.ano, p.mes, "
                ~ "(select '" ~ fonte ~ "@' || h.xmin::text from " ~ relation ~ " as h "
                ~ "where h.ano = p.ano and h.mes = p.mes order by h.id_terceirizado limit 1) as versao "
                ~ "from (" ~ marts_loose_periods_sql(relation) ~ ") as p") -%}
        {%- else -%}
            {%- do parts.append("select '" ~ fonte ~ "' as fonte, r.ano, r.mes, "
                ~ "r.modelo || '@' || to_char(r.construido_em at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') as versao "
                ~ "from " ~ marts_state_relation() ~ " as r where r.modelo = '" ~ fonte ~ "'") -%}
        {%- endif -%}
    {%- endfor -%}
    select ano, mes, string_agg(versao, ' ' order by fonte) as versao
    from (
        {{ parts | join('\n        union all\n        ') }}
    ) as versoes
    group by ano, mes
{%- endmacro %}


{# The version of a mart's logic: its SQL, the SQL of this project's macros it calls (and of
   those they call, three levels down: marts_percentil rounds the quartiles) and the types of
   its contract. A change rebuilds every period. #}
{% macro marts_logic_version(model_name) -%}
    {%- set node = graph.nodes.get('model.' ~ project_name ~ '.' ~ model_name) -%}
    {%- set parts = [node.raw_code if node else ''] -%}
    {%- for column in (node.columns.values() if node else []) -%}
        {%- do parts.append(column.name ~ ' ' ~ column.data_type) -%}
    {%- endfor -%}
    {%- set seen = [] -%}
    {%- set state = {'level': (node.depends_on.macros if node else []) | list} -%}
    {%- for _ in range(3) -%}
        {%- set next_level = [] -%}
        {%- for unique_id in state['level'] | unique | sort
                if unique_id.startswith('macro.' ~ project_name ~ '.') and unique_id not in seen -%}
            {%- do seen.append(unique_id) -%}
            {%- set macro = context[unique_id.split('.')[-1]].macro -%}
            {%- do parts.append(macro.macro_sql) -%}
            {%- do next_level.extend(macro.depends_on.macros) -%}
        {%- endfor -%}
        {%- do state.update({'level': next_level}) -%}
    {%- endfor -%}
    {{ return(local_md5(parts | join('\n'))) }}
{%- endmacro %}


{% macro marts_relation_exists(relation) -%}
    {{ return(run_query("select to_regclass('" ~ relation.schema ~ "." ~ relation.identifier ~ "') is not null")
              .rows[0][0]) }}
{%- endmacro %}


{# What an incremental run of the current mart does: periods ('YYYY-MM') to rebuild and to
   remove, whether every row and record is replaced ('todos'), or, for a 'tabela' mart with a
   key, the new periods to merge into its rows ('anexar'). #}
{% macro marts_plan() -%}
    {%- set state = marts_state_relation() -%}
    {%- set name = this.identifier -%}
    {%- set logic = marts_logic_version(name) -%}
    {%- set recorded = marts_relation_exists(state) -%}
    {%- set query -%}
        with fonte as ({{ marts_source_versions_sql() }}),
        registro as (
            {%- if recorded %}
            select ano, mes, versao_fonte, versao_logica from {{ state }} where modelo = '{{ name }}'
            {%- else %}
            select null::integer as ano, null::smallint as mes, null::text as versao_fonte,
                   null::text as versao_logica where false
            {%- endif %}
        )
        select to_char(make_date(f.ano, f.mes, 1), 'YYYY-MM'), 'reconstruir'
        from fonte as f left join registro as r on r.ano = f.ano and r.mes = f.mes
        where r.ano is null or r.versao_fonte is distinct from f.versao or r.versao_logica <> '{{ logic }}'
        union all
        select to_char(make_date(r.ano, r.mes, 1), 'YYYY-MM'), 'remover'
        from registro as r
        where not exists (select 1 from fonte as f where f.ano = r.ano and f.mes = r.mes)
        union all
        select null, 'registrados:' || count(*) from registro
        union all
        select to_char(make_date(f.ano, f.mes, 1), 'YYYY-MM'), 'fonte' from fonte as f
        union all
        select to_char(make_date(r.ano, r.mes, 1), 'YYYY-MM'), 'registrado' from registro as r
        order by 2, 1
    {%- endset -%}
    {%- set plan = {'reconstruir': [], 'remover': [], 'fonte': [], 'registrado': [], 'todos': false, 'anexar': []} -%}
    {%- for period, kind in run_query(query).rows -%}
        {%- if kind.startswith('registrados:') -%}
            {%- do plan.update({'todos': kind == 'registrados:0'}) -%}
        {%- else -%}
            {%- do plan[kind].append(period) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set meta = marts_meta() -%}
    {%- set built = plan['fonte'] | reject('in', plan['reconstruir']) | list -%}
    {%- set everything = plan['fonte'] and not built -%}
    {%- set whole = meta['granularidade'] == 'tabela' and (plan['reconstruir'] or plan['remover']) -%}
    {#- appended: every period to rebuild is new to the mart (none was built before, e.g. a
        period recaptured) and later than every period it was built from -#}
    {%- set appended = whole and meta['chave'] and not plan['todos'] and not plan['remover'] and built
                       and plan['registrado'] and plan['reconstruir'] | min > plan['registrado'] | max -%}
    {%- if appended -%}
        {%- do plan.update({'anexar': plan['reconstruir']}) -%}
    {%- elif plan['todos'] or everything or whole -%}
        {%- do plan.update({'todos': true, 'reconstruir': plan['fonte']}) -%}
    {%- endif -%}
    {{ return(plan) }}
{%- endmacro %}


{# The model's filter: on an incremental run, the periods to rebuild (prefix: the alias of the
   upstream's year and month); on a full build, every row. #}
{% macro marts_filtro(prefix='') -%}
    {%- if not is_incremental() -%}
        true
    {%- else -%}
        {%- set plan = marts_plan() -%}
        {{ 'true' if plan['todos'] else marts_period_predicate(plan['reconstruir'], ['ano', 'mes'], prefix) }}
    {%- endif -%}
{%- endmacro %}


{# The published periods of the upstream relation to build, for models that aggregate one
   period at a time (a small hash per period instead of one for every period). #}
{% macro marts_periodos_sql(relation) -%}
    select ano, mes from ({{ marts_loose_periods_sql(relation) }}) as publicados where {{ marts_filtro() }}
{%- endmacro %}


{# Record what a statement built for the given periods: the upstreams' version, the mart's
   logic and how many rows each period has in `relation`. only_missing: periods without a record. #}
{% macro marts_record_sql(relation, periods=none, only_missing=false) -%}
    {%- set meta = marts_meta() -%}
    {%- set state = marts_state_relation() -%}
    insert into {{ state }} (modelo, ano, mes, versao_fonte, versao_logica, linhas, id_invocacao, construido_em)
    select '{{ this.identifier }}', f.ano, f.mes, f.versao, '{{ marts_logic_version(this.identifier) }}',
           {{ 'coalesce(c.linhas, 0)' if meta['periodo'] else 'null' }}, '{{ invocation_id }}', now()
    from ({{ marts_source_versions_sql() }}) as f
    {%- if meta['periodo'] %}
    left join (
        select {{ meta['periodo'][0] }} as ano, {{ meta['periodo'][1] }} as mes, count(*) as linhas
        from {{ relation }} group by 1, 2
    ) as c on c.ano = f.ano and c.mes = f.mes
    {%- endif %}
    where {{ 'true' if periods is none else marts_period_predicate(periods, ['ano', 'mes'], 'f.') }}
    {%- if only_missing %}
      and not exists (select 1 from {{ state }} as r
                      where r.modelo = '{{ this.identifier }}' and r.ano = f.ano and r.mes = f.mes)
    {%- endif %}
{%- endmacro %}


{# Custom incremental strategy 'marts_periodo', in the model's transaction; the statement
   that writes the mart comes last (its row count is the one dbt reports).
   Some periods: delete the periods to rebuild or remove and insert the rebuilt rows (dbt's
   temporary relation), after the same for their records.
   New periods merged into a 'tabela' mart ('anexar'): replace the rows of the keys the model
   merged (the temporary relation) and record the new periods.
   Every period (no record of the mart, its SQL changed, or a 'tabela' mart with any change):
   the table is replaced by a new one made from the rebuilt rows, as dbt's full refresh does,
   instead of deleting and inserting every row through the indexes (a post-hook builds the
   keys of the new table; readers wait for the commit and then read the new table). #}
{% macro get_incremental_marts_periodo_sql(arg_dict) -%}
    {%- set target_relation = arg_dict['target_relation'] -%}
    {%- set meta = marts_meta() -%}
    {%- set plan = marts_plan() -%}
    {%- set changed = plan['reconstruir'] + plan['remover'] -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    {%- set state = marts_state_relation() -%}
    {%- set name = target_relation.schema ~ '.' ~ target_relation.identifier -%}
    {%- if plan['todos'] -%}
        {{ log(name ~ ': tabela inteira reconstruída (' ~ (plan['reconstruir'] | length) ~ ' período(s)'
               ~ (', ' ~ (plan['remover'] | length) ~ ' removido(s)' ~ marts_labels(plan['remover'])
                  if plan['remover'] else '') ~ ').', info=true) }}
    {%- elif plan['anexar'] -%}
        {{ log(name ~ ': ' ~ (plan['anexar'] | length) ~ ' período(s) novo(s) anexado(s)'
               ~ marts_labels(plan['anexar']) ~ ', sem reconstruir a tabela.', info=true) }}
    {%- else -%}
        {{ log(name ~ ': ' ~ (plan['reconstruir'] | length) ~ ' período(s) a reconstruir'
               ~ marts_labels(plan['reconstruir']) ~ ', ' ~ (plan['remover'] | length) ~ ' a remover'
               ~ marts_labels(plan['remover']) ~ '.', info=true) }}
    {%- endif %}
    {%- if plan['todos'] %}
    delete from {{ state }} where modelo = '{{ target_relation.identifier }}';
    {%- elif changed %}
    delete from {{ state }}
    where modelo = '{{ target_relation.identifier }}' and {{ marts_period_predicate(changed) }};
    {%- endif %}
    {%- if plan['reconstruir'] %}
    {{ marts_record_sql(arg_dict['temp_relation'], plan['reconstruir']) }};
    {%- endif %}
    {%- if plan['todos'] %}
    drop table {{ target_relation }};
    create table {{ target_relation }} as select {{ columns }} from {{ arg_dict['temp_relation'] }}
    {%- else %}
    {%- if plan['anexar'] %}
    delete from {{ target_relation }}
    where {{ meta['chave'] }} in (select {{ meta['chave'] }} from {{ arg_dict['temp_relation'] }});
    {%- elif changed %}
    delete from {{ target_relation }} where {{ marts_period_predicate(changed, meta['periodo']) }};
    {%- endif %}
    insert into {{ target_relation }} ({{ columns }})
    select {{ columns }} from {{ arg_dict['temp_relation'] }}
    {%- endif %}
{%- endmacro %}


{# Pre-hook: the record table exists; a full build (first run, --full-refresh) starts from an
   empty record of the mart. #}
{% macro marts_preparar() -%}
    {%- set state = marts_state_relation() -%}
    {%- if execute and not marts_relation_exists(state) %}
    do $$
    begin
        create table if not exists {{ state }} (
            modelo text not null,
            ano integer not null,
            mes smallint not null,
            versao_fonte text,
            versao_logica text not null,
            linhas bigint,
            id_invocacao text not null,
            construido_em timestamptz not null,
            primary key (modelo, ano, mes)
        );
        comment on table {{ state }} is 'Construção incremental das tabelas de análise (schema marts): por tabela e período publicado, a versão das fontes e do SQL de que as linhas foram construídas, quantas são, a execução do dbt que as construiu e quando.';
    exception when unique_violation or duplicate_table then
        null;  -- created at the same moment by another mart of the same build (dbt runs them in parallel)
    end
    $$;
    {%- endif %}
    {%- if execute and not is_incremental() %}
    {{ log(this.schema ~ '.' ~ this.identifier ~ ': construção completa ('
           ~ ('--full-refresh' if flags.FULL_REFRESH else 'primeira execução') ~ ').', info=true) }}
    delete from {{ state }} where modelo = '{{ this.identifier }}';
    {%- endif %}
{%- endmacro %}


{# Post-hook: the record of every period built by a full build (periods without a record; an
   incremental run recorded the periods it rebuilt, so none is missing then). #}
{% macro marts_registrar_construcao_completa() -%}
    {%- if execute -%}
        {{ marts_record_sql(this, none, only_missing=true) }}
    {%- endif -%}
{%- endmacro %}


{# The periods built by this dbt invocation, as a predicate on the year and month columns of a
   mart (true with --full-refresh or --vars '{verificar_todos_os_periodos: true}'; false when
   the invocation built none). For a mart without those columns: whether it was rebuilt. #}
{% macro marts_escopo(model_name, columns=['ano', 'mes']) -%}
    {%- if not execute or flags.FULL_REFRESH or var('verificar_todos_os_periodos', false) -%}
        {{ return('true') }}
    {%- endif -%}
    {%- set state = marts_state_relation() -%}
    {%- if not marts_relation_exists(state) -%}
        {{ return('true') }}
    {%- endif -%}
    {%- set built = run_query("select to_char(make_date(ano, mes, 1), 'YYYY-MM') from " ~ state
                              ~ " where modelo = '" ~ model_name ~ "' and id_invocacao = '" ~ invocation_id
                              ~ "' order by 1") -%}
    {%- set periods = built.columns[0].values() | list -%}
    {%- if not columns -%}
        {{ return('true' if periods else 'false') }}
    {%- endif -%}
    {{ return(marts_period_predicate(periods, columns)) }}
{%- endmacro %}


{# A percentile of a sorted array of n numeric values, as percentile_cont computes it (linear
   interpolation between the two nearest ranks) but in exact numeric arithmetic, rounded to
   cents (half away from zero); null for an empty array. fraction: a numeric literal ('0.25'). #}
{% macro marts_percentil(sorted_values, n, fraction) -%}
    {%- set position = fraction ~ ' * (' ~ n ~ ' - 1)' -%}
    {%- set low = sorted_values ~ '[floor(' ~ position ~ ')::integer + 1]' -%}
    {%- set high = sorted_values ~ '[ceil(' ~ position ~ ')::integer + 1]' -%}
    round({{ low }} + ({{ high }} - {{ low }}) * ({{ position }} - floor({{ position }})), 2)
{%- endmacro %}


{#- Pre-hook: columns whose contract type was widened after the marts were first published
    (razao_custo_salario numeric(10,4), the variation percentages numeric(14,2): a cost of
    R$ 2.5 billion on a salary of R$ 1, or a cost growing from R$ 0.01, overflowed them). An
    existing table gets the contract's plain numeric before dbt compares its columns with the
    model's (on_schema_change='fail' would stop every build until a full refresh). Removing
    the precision changes no value and rewrites nothing; a column already plain is left alone
    (no lock taken). -#}
{% macro widen_to_numeric(columns) -%}
    do $alargar$
    begin
    {%- for column in columns %}
        if exists (
            select 1 from information_schema.columns
            where table_schema = '{{ this.schema }}' and table_name = '{{ this.identifier }}'
                and column_name = '{{ column }}' and data_type = 'numeric' and numeric_precision is not null
        ) then
            alter table {{ this }} alter column {{ column }} type numeric;
        end if;
    {%- endfor %}
    end
    $alargar$
{%- endmacro %}
