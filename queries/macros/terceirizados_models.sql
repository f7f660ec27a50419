{#- The body of each staging step, written once and used by the latest models
    (raw -> cleaned -> renamed -> transformed) and by the historic_* models. -#}

{% macro terceirizados_cleaned(upstream) %}
with source as (
    select * from {{ upstream }}
),

cleaned as (
    select
        {{ clean_text('id_terc') }} as id_terc,
        {{ clean_text('sg_orgao_sup_tabela_ug') }} as sg_orgao_sup_tabela_ug,
        {{ clean_code('cd_ug_gestora') }} as cd_ug_gestora,
        {{ clean_text('nm_ug_tabela_ug') }} as nm_ug_tabela_ug,
        {{ clean_text('sg_ug_gestora') }} as sg_ug_gestora,
        {{ clean_text('nr_contrato') }} as nr_contrato,
        {{ clean_code('nr_cnpj') }} as nr_cnpj,
        {{ clean_text('nm_razao_social') }} as nm_razao_social,
        {{ clean_text('nr_cpf') }} as nr_cpf,
        {{ clean_text('nm_terceirizado') }} as nm_terceirizado,
        {{ clean_text('nm_categoria_profissional') }} as nm_categoria_profissional,
        {{ clean_education('nm_escolaridade') }} as nm_escolaridade,
        {{ clean_text('nr_jornada') }} as nr_jornada,
        {{ clean_text('nm_unidade_prestacao') }} as nm_unidade_prestacao,
        {{ clean_decimal('vl_mensal_salario') }} as vl_mensal_salario,
        {{ clean_decimal('vl_mensal_custo') }} as vl_mensal_custo,
        {{ clean_text('num_mes_carga') }} as num_mes_carga,
        {{ clean_text('mes_carga') }} as mes_carga,
        {{ clean_text('ano_carga') }} as ano_carga,
        {{ clean_text('sg_orgao') }} as sg_orgao,
        {{ clean_text('nm_orgao') }} as nm_orgao,
        {{ clean_code('cd_orgao_siafi') }} as cd_orgao_siafi,
        {{ clean_code('cd_orgao_siape') }} as cd_orgao_siape,
        periodo,
        linha_origem,
        capturado_em
    from source
)

select * from cleaned
{% endmacro %}


{% macro terceirizados_renamed(upstream) %}
with cleaned as (
    select * from {{ upstream }}
),

renamed as (
    select
        -- ids
        extract(year from periodo)::integer as ano,
        extract(month from periodo)::smallint as mes,
        id_terc as id_terceirizado,
        -- dimensions
        sg_orgao_sup_tabela_ug as sigla_orgao_superior_unidade_gestora,
        cd_ug_gestora as id_unidade_gestora,
        sg_ug_gestora as sigla_unidade_gestora,
        nm_ug_tabela_ug as nome_unidade_gestora,
        cd_orgao_siafi as id_orgao_siafi,
        cd_orgao_siape as id_orgao_siape,
        sg_orgao as sigla_orgao,
        nm_orgao as nome_orgao,
        nm_unidade_prestacao as nome_unidade_prestacao,
        nr_contrato as id_contrato,
        nr_cnpj as cnpj_empresa,
        nm_razao_social as razao_social_empresa,
        nr_cpf as cpf,
        nm_terceirizado as nome,
        {{ cbo_code('nm_categoria_profissional') }} as cbo_2002,
        {{ cbo_title('nm_categoria_profissional') }} as categoria_profissional,
        nm_escolaridade as nivel_escolaridade,
        -- measures
        nr_jornada as quantidade_horas_semanais,
        vl_mensal_salario as valor_salario_mensal,
        vl_mensal_custo as valor_custo_mensal,
        -- metadata
        capturado_em
    from cleaned
)

select * from renamed
{% endmacro %}


{% macro terceirizados_transformed(upstream) %}
with renamed as (
    select * from {{ upstream }}
),

transformed as (
    select
        ano,
        mes,
        id_terceirizado,
        sigla_orgao_superior_unidade_gestora,
        {{ zero_pad('id_unidade_gestora', 6) }} as id_unidade_gestora,
        sigla_unidade_gestora,
        nome_unidade_gestora,
        id_orgao_siafi,
        id_orgao_siape,
        sigla_orgao,
        nome_orgao,
        nome_unidade_prestacao,
        id_contrato,
        {{ cnpj('cnpj_empresa') }} as cnpj_empresa,
        razao_social_empresa,
        cpf,
        nome,
        cbo_2002,
        categoria_profissional,
        nivel_escolaridade,
        {{ safe_integer('quantidade_horas_semanais') }} as quantidade_horas_semanais,
        {{ safe_numeric('valor_salario_mensal') }} as valor_salario_mensal,
        {{ safe_numeric('valor_custo_mensal') }} as valor_custo_mensal,
        capturado_em
    from renamed
)

select * from transformed
{% endmacro %}


{#- ------------------------------------------------------------------------------------
    Incremental by period: historic_cleaned and historic_transformed.

    A period's rows change only when its file is captured again (raw.terceirizados
    replaces a period in one transaction, every row with the same capturado_em) or when
    the SQL that builds them changes. staging.periodos_materializados records, per model and
    period, what each model was built from: the capture (capturado_em), the version of
    the logic (md5 of the compiled cleaning, renaming and casting SQL and of the
    contract's types), the rows and when it was built and verified (its error-level tests
    passed). A run rebuilds, in the model's one transaction, only the periods whose
    capture or logic differ from the record or that were never verified, and deletes the
    periods no longer in raw.terceirizados (strategy 'periodo' below: delete + insert of
    those periods and of their records).

    Everything is rebuilt (dbt's full refresh: CREATE TABLE AS and a swap) on the first
    run, with --full-refresh, when the logic changed, and when the table is missing or
    empty while the record says otherwise (an unlogged table after a crash).

    Tests of these models whose config is `where: "__periodos_em_verificacao__"` see only
    the periods not verified yet (the ones this run rebuilt, or a failed run left
    behind); with --full-refresh, or --vars '{verificar_todos_os_periodos: true}', every
    row. The on-run-end hook marks the periods verified once every test of the model ran
    and none failed (the tests tagged verificado_antes_do_commit, left out of the flows'
    builds, were verified in the model's transaction by a post-hook or by the primary key:
    passed if the model was built).
    ---------------------------------------------------------------------------------- -#}

{% macro historic_state_relation() -%}
    {{ return(api.Relation.create(database=target.database, schema=generate_schema_name('staging', none),
                                  identifier='periodos_materializados', type='table')) }}
{%- endmacro %}


{# raw.terceirizados, from the graph (no source() call: these macros also run in tests and hooks). #}
{% macro historic_source_relation() -%}
    {%- set node = graph.sources.values() | selectattr('source_name', 'equalto', 'raw')
                   | selectattr('name', 'equalto', 'terceirizados') | first -%}
    {{ return(api.Relation.create(database=node.database, schema=node.schema, identifier=node.identifier)) }}
{%- endmacro %}


{# How a model names its period: one date column, or year and month. #}
{% macro historic_period_kind(model_name) -%}
    {{ return('ano_mes' if model_name in ('historic_renamed', 'historic_transformed') else 'periodo') }}
{%- endmacro %}


{# A predicate selecting the given periods ('YYYY-MM-DD' strings) of a model; false when none.
   Literals, so the planner uses the (ano, mes, ...) primary key or the raw (periodo, ...) index. #}
{% macro historic_period_filter(model_name, periods, prefix='') -%}
    {%- if not periods -%}
        false
    {%- elif historic_period_kind(model_name) == 'ano_mes' -%}
        ({{ prefix }}ano, {{ prefix }}mes) in (
            {%- for period in periods %}({{ period[:4] | int }}, {{ period[5:7] | int }}){{ ", " if not loop.last }}{% endfor -%}
        )
    {%- else -%}
        {{ prefix }}periodo in ({% for period in periods %}date '{{ period }}'{{ ", " if not loop.last }}{% endfor %})
    {%- endif -%}
{%- endmacro %}


{# The period of a row of the model, as a date. #}
{% macro historic_period_expression(model_name) -%}
    {{ return('make_date(ano, mes, 1)' if historic_period_kind(model_name) == 'ano_mes' else 'periodo') }}
{%- endmacro %}


{# The version of the logic that builds a model: the md5 of its compiled SQL (the macros of
   every step up to it, with a placeholder input) and of its contract's types. A change in a
   cleaning or casting rule rebuilds every period. #}
{% macro historic_logic_version(model_name) -%}
    {%- set parts = [terceirizados_cleaned('upstream')] -%}
    {%- if model_name == 'historic_transformed' -%}
        {%- do parts.append(terceirizados_renamed('upstream')) -%}
        {%- do parts.append(terceirizados_transformed('upstream')) -%}
        {%- set node = graph.nodes.get('model.' ~ project_name ~ '.' ~ model_name) -%}
        {%- for column in (node.columns.values() if node else []) -%}
            {%- do parts.append(column.name ~ ' ' ~ column.data_type) -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(local_md5(parts | join('\n'))) }}
{%- endmacro %}


{# The capture behind each period of raw.terceirizados: a loose scan of its (periodo,
   linha_origem) index, a few index probes per period instead of reading 1.5 million rows. #}
{% macro historic_source_versions_sql() -%}
    {%- set source = historic_source_relation() -%}
    with recursive periodos as (
        (select periodo from {{ source }} order by periodo limit 1)
        union all
        select (select s.periodo from {{ source }} as s where s.periodo > p.periodo order by s.periodo limit 1)
        from periodos as p
        where p.periodo is not null
    )
    select p.periodo,
           (select s.capturado_em from {{ source }} as s where s.periodo = p.periodo
            order by s.linha_origem limit 1) as capturado_em
    from periodos as p
    where p.periodo is not null
{%- endmacro %}


{# Why a by-period model must be rebuilt whole ('' when an incremental run will do). #}
{% macro historic_full_rebuild_reason(model_name) -%}
    {%- if flags.FULL_REFRESH or config.get('full_refresh') -%}
        {{ return('--full-refresh') }}
    {%- endif -%}
    {%- set state = historic_state_relation() -%}
    {%- set target_name = state.schema ~ '.' ~ model_name -%}
    {%- set found = run_query("select to_regclass('" ~ state.schema ~ "." ~ state.identifier ~ "') is not null, "
                              ~ "to_regclass('" ~ target_name ~ "') is not null") -%}
    {%- set state_exists, target_exists = found.rows[0] -%}
    {%- set recorded = run_query(
            "select count(*), count(*) filter (where versao <> '" ~ historic_logic_version(model_name) ~ "') from "
            ~ state ~ " where modelo = '" ~ model_name ~ "'") if state_exists else none -%}
    {%- if not state_exists or recorded.rows[0][0] == 0 -%}
        {{ return('primeira execução: nenhum período registrado') }}
    {%- elif not target_exists -%}
        {{ return('tabela ausente') }}
    {%- elif recorded.rows[0][1] > 0 -%}
        {{ return('regras de limpeza ou conversão alteradas') }}
    {%- elif not run_query("select exists (select 1 from " ~ target_name ~ ")").rows[0][0] -%}
        {{ return('tabela vazia') }}
    {%- endif -%}
    {{ return('') }}
{%- endmacro %}


{# dbt's should_full_refresh, plus the reasons above for the models built by period. #}
{% macro should_full_refresh() -%}
    {%- set configured = config.get('full_refresh') -%}
    {%- if configured is none -%}
        {%- set configured = flags.FULL_REFRESH -%}
    {%- endif -%}
    {%- if not configured and execute and model is mapping and model.get('resource_type') == 'model'
           and config.get('incremental_strategy') == 'periodo' -%}
        {%- set configured = historic_full_rebuild_reason(model.name) != '' -%}
    {%- endif -%}
    {{ return(configured) }}
{%- endmacro %}


{# The periods to rebuild (capture or logic changed, or never verified) and to remove (no
   longer in raw.terceirizados), as 'YYYY-MM-DD' strings. Only for incremental runs. #}
{% macro historic_plan(model_name) -%}
    {%- set query -%}
        with versoes as ({{ historic_source_versions_sql() }}),
        registro as (select * from {{ historic_state_relation() }} where modelo = '{{ model_name }}')
        select to_char(v.periodo, 'YYYY-MM-DD'), 'reconstruir'
        from versoes as v left join registro as r on r.periodo = v.periodo
        where r.periodo is null or r.capturado_em is distinct from v.capturado_em
           or r.versao <> '{{ historic_logic_version(model_name) }}' or r.verificado_em is null
        union all
        select to_char(r.periodo, 'YYYY-MM-DD'), 'remover'
        from registro as r
        where not exists (select 1 from versoes as v where v.periodo = r.periodo)
        order by 1
    {%- endset -%}
    {%- set plan = {'reconstruir': [], 'remover': []} -%}
    {%- for row in run_query(query).rows -%}
        {%- do plan[row[1]].append(row[0]) -%}
    {%- endfor -%}
    {{ return(plan) }}
{%- endmacro %}


{# ' (2024-05, 2025-01)' for a log line; '' for no period. #}
{% macro historic_labels(periods) -%}
    {%- set labels = [] -%}
    {%- for period in periods -%}{%- do labels.append(period[:7]) -%}{%- endfor -%}
    {{ return(' (' ~ labels | join(', ') ~ ')' if labels else '') }}
{%- endmacro %}


{# The model's filter on an incremental run: only the periods to rebuild. #}
{% macro historic_incremental_filter() -%}
    {%- if is_incremental() -%}
        where {{ historic_period_filter(this.identifier, historic_plan(this.identifier)['reconstruir']) }}
    {%- endif -%}
{%- endmacro %}


{# Record what a statement built: one row per period of `relation` (restricted by `where`). #}
{% macro historic_record_sql(model_name, relation, where='true') -%}
    insert into {{ historic_state_relation() }}
        (modelo, periodo, capturado_em, versao, linhas, construido_em, verificado_em)
    select '{{ model_name }}', {{ historic_period_expression(model_name) }},
           -- rows of two captures in one period would be a bug: recorded as unknown, rebuilt next run
           case when min(capturado_em) = max(capturado_em) then min(capturado_em) end,
           '{{ historic_logic_version(model_name) }}', count(*), now(), null
    from {{ relation }}
    where {{ where }}
    group by 2
{%- endmacro %}


{# Custom incremental strategy 'periodo': in the model's transaction, delete the periods to
   rebuild or remove and insert the rebuilt rows (dbt's temporary relation), and the same for
   their records. The insert comes last: its row count is the one dbt reports. #}
{% macro get_incremental_periodo_sql(arg_dict) -%}
    {%- set target_relation = arg_dict['target_relation'] -%}
    {%- set model_name = target_relation.identifier -%}
    {%- set plan = historic_plan(model_name) -%}
    {%- set changed = plan['reconstruir'] + plan['remover'] -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    {{ log(target_relation.schema ~ '.' ~ model_name ~ ': ' ~ (plan['reconstruir'] | length) ~ ' período(s) a reconstruir'
           ~ historic_labels(plan['reconstruir']) ~ ', ' ~ (plan['remover'] | length) ~ ' a remover'
           ~ historic_labels(plan['remover']) ~ '.', info=true) }}
    {%- if changed %}
    delete from {{ historic_state_relation() }}
    where modelo = '{{ model_name }}' and {{ historic_period_filter('historic_raw', changed) }};
    {{ historic_record_sql(model_name, arg_dict['temp_relation']) }};
    delete from {{ target_relation }} where {{ historic_period_filter(model_name, changed) }};
    {%- endif %}
    insert into {{ target_relation }} ({{ columns }})
    select {{ columns }} from {{ arg_dict['temp_relation'] }}
{%- endmacro %}


{# Pre-hook: the record table exists; a full rebuild starts from an empty record. #}
{% macro historic_prepare_state() -%}
    {%- set state = historic_state_relation() -%}
    create table if not exists {{ state }} (
        modelo text not null,
        periodo date not null,
        capturado_em timestamptz,
        versao text not null,
        linhas bigint not null,
        construido_em timestamptz not null,
        verificado_em timestamptz,
        primary key (modelo, periodo)
    );
    comment on table {{ state }} is 'Construção incremental dos modelos históricos: por modelo e período, a captura (capturado_em) e a versão das regras de que as linhas foram construídas, quantas são, quando foram construídas e quando os testes as verificaram.';
    {%- set reason = historic_full_rebuild_reason(this.identifier) if execute else '' %}
    {%- if reason %}
    {{ log(this.schema ~ '.' ~ this.identifier ~ ': reconstrução completa (' ~ reason ~ ').', info=true) }}
    delete from {{ state }} where modelo = '{{ this.identifier }}';
    {%- endif %}
{%- endmacro %}


{# Post-hook: after a full rebuild, the record of every period built. #}
{% macro historic_record_full_build() -%}
    {%- if execute and should_full_refresh() -%}
        {{ historic_record_sql(this.identifier, this) }}
    {%- endif -%}
{%- endmacro %}


{# on-run-end: mark the periods verified for each by-period model whose tests all ran in this
   invocation and passed (warnings count as passed; a test tagged verificado_antes_do_commit
   that dbt did not run passed inside the model's transaction if the model was built here),
   and whose build, if it ran, succeeded. #}
{% macro historic_mark_verified(results) -%}
    {%- if execute -%}
        {%- set status = {} -%}
        {%- for result in results -%}
            {%- do status.update({result.node.unique_id: result.status | string}) -%}
        {%- endfor -%}
        {%- set verified = [] -%}
        {%- for node in graph.nodes.values()
                if node.resource_type == 'model' and node.config.get('incremental_strategy') == 'periodo' -%}
            {%- set tests = graph.nodes.values() | selectattr('resource_type', 'equalto', 'test')
                            | selectattr('attached_node', 'equalto', node.unique_id) | list -%}
            {%- set ran = (node.unique_id in status) or (tests | map(attribute='unique_id') | select('in', status) | list | length > 0) -%}
            {%- set tests_ok = namespace(value=true) -%}
            {%- for test in tests -%}
                {#- a test left out of the flows' builds (tag verificado_antes_do_commit) was verified
                    in the model's transaction, before the commit (a post-hook ran it, or the
                    primary key answers it): it passed if the model was built -#}
                {%- set before_commit = 'verificado_antes_do_commit' in test.tags and status.get(node.unique_id) == 'success' -%}
                {%- if status.get(test.unique_id) not in ('pass', 'warn') and not (test.unique_id not in status and before_commit) -%}
                    {%- set tests_ok.value = false -%}
                {%- endif -%}
            {%- endfor -%}
            {%- if ran and tests_ok.value and status.get(node.unique_id, 'success') == 'success' -%}
                {%- do verified.append(node.name) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if verified -%}
            {%- set state = historic_state_relation() -%}
            {%- set exists = run_query("select to_regclass('" ~ state.schema ~ "." ~ state.identifier ~ "') is not null") -%}
            {%- if exists.rows[0][0] -%}
                update {{ state }} set verificado_em = now()
                where verificado_em is null and modelo in ('{{ verified | join("', '") }}')
            {%- endif -%}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}


{#- Tests scoped to the periods not verified yet: `where: "__periodos_em_verificacao__"`. -#}
{% macro historic_scope_token() -%}
    {{ return('__periodos_em_verificacao__') }}
{%- endmacro %}


{# The predicate of a scoped test on `relation` (a historic model): every row on a full
   refresh, with --vars '{verificar_todos_os_periodos: true}' or when every period awaits
   verification (true: no filter, the same rows); otherwise the periods whose build is not
   verified yet (none: false, and the test reads no row). #}
{% macro historic_scope_filter(relation) -%}
    {%- if flags.FULL_REFRESH or var('verificar_todos_os_periodos', false) -%}
        {{ return('true') }}
    {%- endif -%}
    {%- set state = historic_state_relation() -%}
    {%- set exists = run_query("select to_regclass('" ~ state.schema ~ "." ~ state.identifier ~ "') is not null") -%}
    {%- if not exists.rows[0][0] -%}
        {{ return('true') }}
    {%- endif -%}
    {%- set periods = run_query("select to_char(periodo, 'YYYY-MM-DD'), bool_or(verificado_em is null) from "
                                ~ state ~ " group by 1 order by 1") -%}
    {%- set pending = [] -%}
    {%- for period, unverified in periods.rows if unverified -%}
        {%- do pending.append(period) -%}
    {%- endfor -%}
    {%- if pending and pending | length == periods.rows | length -%}
        {{ return('true') }}
    {%- endif -%}
    {{ return(historic_period_filter(relation.identifier, pending)) }}
{%- endmacro %}


{# A relation restricted like the test's model: scoped tests compare the same periods. #}
{% macro scoped_relation(relation) -%}
    {%- if config.get('where') == historic_scope_token() -%}
        {{ historic_scoped_relation(relation) }}
    {%- else -%}
        {{ relation }}
    {%- endif -%}
{%- endmacro %}


{# A historic model's relation restricted to the periods being verified (historic_scope_filter). #}
{% macro historic_scoped_relation(relation, alias='scoped') -%}
    {{ return('(select * from ' ~ relation ~ ' where ' ~ historic_scope_filter(relation) ~ ') as ' ~ alias) }}
{%- endmacro %}


{# dbt's get_where_subquery (the `where` config of tests), with the scope token above. #}
{% macro postgres__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where == historic_scope_token() -%}
        {%- set where = historic_scope_filter(relation) -%}
    {%- endif -%}
    {%- if where -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
