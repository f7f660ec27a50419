"""Historic capture (every period, mapped in parallel) and historic materialize."""

from decimal import Decimal

from pipelines import raw_loads
from pipelines.executors import parallel_executor
from pipelines.flows import historic_capture_flow, historic_materialize_flow
from pipelines.settings import load_settings
from tests.conftest import query, run_flow

CONTENT = (
    "SELECT md5(string_agg(row(t.*)::text, '|' ORDER BY periodo, linha_origem)) FROM "
    "(SELECT * FROM raw.terceirizados) t"
)
CONTENT_WITHOUT_TIME = (
    "SELECT md5(string_agg(row(t.*)::text, '|' ORDER BY periodo, linha_origem)) FROM "
    "(SELECT {} FROM raw.terceirizados) t"
)


def content_without_capture_time(db):
    [(columns,)] = query(
        db,
        "SELECT string_agg(column_name, ', ' ORDER BY ordinal_position) FROM "
        "information_schema.columns WHERE table_schema = 'raw' AND table_name = 'terceirizados' "
        "AND column_name <> 'capturado_em'",
    )
    [(digest,)] = query(db, CONTENT_WITHOUT_TIME.format(columns))
    return digest


def capture_all(**parameters):
    return run_flow(historic_capture_flow, executor=parallel_executor(load_settings()), **parameters)


def messages_of(db, run_id):
    return " ".join(m for (m,) in query(db, "SELECT mensagem FROM logs.registros WHERE id_execucao = %s", (run_id,)))


def test_every_period_lands_and_reconciles(db, fresh_portal):
    expectations = fresh_portal.portal.expectations
    state, run_id = capture_all(url=fresh_portal.page_url)
    assert state.is_successful(), state.message
    per_period = dict(query(db, "SELECT to_char(periodo, 'YYYY-MM'), count(*) FROM raw.terceirizados GROUP BY 1"))
    assert per_period == {label: e.loaded_rows for label, e in expectations.items()}
    captures = query(
        db,
        "SELECT to_char(periodo, 'YYYY-MM'), linhas_arquivo, linhas_carregadas, linhas_reparadas, "
        "linhas_quarentena, codificacao FROM raw.capturas ORDER BY 1",
    )
    assert [c[:5] for c in captures] == [
        (label, e.data_rows, e.loaded_rows, e.repaired_rows, len(e.quarantined_lines))
        for label, e in sorted(expectations.items())
    ]
    assert [c[5] for c in captures] == ["utf-8", "utf-8-sig", "cp1252", "utf-8", "xlsx"]
    quarantined = dict(
        query(
            db,
            "SELECT to_char(periodo, 'YYYY-MM'), array_agg(linha_origem ORDER BY linha_origem) "
            "FROM raw.terceirizados_quarentena GROUP BY 1",
        )
    )
    assert quarantined == {label: e.quarantined_lines for label, e in expectations.items()}
    [(loaded, quarantined_total)] = query(
        db, "SELECT linhas_carregadas, linhas_quarentena FROM logs.execucoes WHERE id_execucao = %s", (run_id,)
    )
    assert loaded == sum(e.loaded_rows for e in expectations.values())
    assert quarantined_total == sum(len(e.quarantined_lines) for e in expectations.values())
    messages = messages_of(db, run_id)
    assert "5 período(s) carregado(s), 0 inalterado(s), 0 com falha" in messages
    # records from the worker processes reached the same log
    tasks = {
        t
        for (t,) in query(
            db,
            "SELECT DISTINCT nome_task FROM logs.registros WHERE id_execucao = %s AND logger LIKE 'pipelines.%%'",
            (run_id,),
        )
    }
    assert any(t and t.startswith("capture_period") for t in tasks)


def test_rerun_skips_unchanged_files_and_force_reloads(db, fresh_portal):
    first, _ = capture_all(url=fresh_portal.page_url)
    assert first.is_successful()
    [(before,)] = query(db, CONTENT)
    second, second_id = capture_all(url=fresh_portal.page_url)
    assert second.is_successful()
    assert query(db, CONTENT) == [(before,)]
    messages = messages_of(db, second_id)
    assert "0 período(s) carregado(s), 5 inalterado(s)" in messages
    assert messages.count("arquivo inalterado desde a última captura") == 5
    forced, forced_id = capture_all(url=fresh_portal.page_url, force=True)
    assert forced.is_successful()
    assert "5 período(s) carregado(s)" in messages_of(db, forced_id)
    assert query(db, "SELECT DISTINCT id_execucao FROM raw.capturas") == [(forced_id,)]
    assert query(db, "SELECT count(*) FROM raw.terceirizados") == [
        (sum(e.loaded_rows for e in fresh_portal.portal.expectations.values()),)
    ]


def test_a_failing_period_fails_only_itself(db, fresh_portal):
    fresh_portal.faults[fresh_portal.file_path("terceirizados202205.csv")] = "500"
    state, run_id = capture_all(url=fresh_portal.page_url)
    assert state.is_failed()
    periods = [p for (p,) in query(db, "SELECT DISTINCT to_char(periodo, 'YYYY-MM') FROM raw.terceirizados ORDER BY 1")]
    assert periods == ["2019-01", "2021-01", "2023-09", "2024-05"]
    assert fresh_portal.hits[fresh_portal.file_path("terceirizados202205.csv")] == 3  # 1 try + 2 retries
    messages = messages_of(db, run_id)
    assert "1 período(s) com falha: 2022-05 (terceirizados202205.csv)" in messages and "HTTP 500" in messages
    [(status, message)] = query(
        db, "SELECT estado_final, mensagem FROM logs.execucoes WHERE id_execucao = %s", (run_id,)
    )
    assert status == "Failed" and "2022-05 (terceirizados202205.csv)" in message


def test_historic_models_cover_every_period_and_quirk(db, fresh_portal):
    expectations = fresh_portal.portal.expectations
    captured, _ = capture_all(url=fresh_portal.page_url)
    assert captured.is_successful()
    # the captured periods (a loose scan of the key), newest first: the same as a DISTINCT of every row
    assert (
        raw_loads.captured_periods(load_settings())
        == [period for (period,) in query(db, "SELECT DISTINCT periodo FROM raw.terceirizados ORDER BY 1 DESC")]
        and len(expectations) == 5
    )
    state, run_id = run_flow(historic_materialize_flow)
    assert state.is_successful(), state.message
    per_period = query(
        db,
        "SELECT ano, mes, count(*), sum(valor_custo_mensal) FROM staging.historic_transformed "
        "GROUP BY 1, 2 ORDER BY 1, 2",
    )
    assert per_period == [
        (int(label[:4]), int(label[5:]), e.loaded_rows, Decimal(e.sum_custo))
        for label, e in sorted(expectations.items())
    ]
    assert query(
        db, "SELECT count(*), count(DISTINCT (ano, mes, id_terceirizado)) FROM staging.historic_transformed"
    ) == [(sum(e.loaded_rows for e in expectations.values()),) * 2]
    # cp1252 accents survive; the BOM does not eat the first column; XLSX codes are padded
    assert query(db, "SELECT count(*) > 0 FROM staging.historic_transformed WHERE ano = 2022 AND nome ~ '[ÉÇÃÚ]'") == [
        (True,)
    ]
    assert query(db, "SELECT count(*) FROM staging.historic_transformed WHERE id_terceirizado IS NULL") == [(0,)]
    assert query(
        db, "SELECT DISTINCT cnpj_empresa FROM staging.historic_transformed WHERE razao_social_empresa LIKE 'IPANEMA%%'"
    ) == [("00588541000182",)]
    # the repaired row (';' in the company name) is there, typed like the others
    assert query(
        db, "SELECT count(*) FROM staging.historic_transformed WHERE razao_social_empresa LIKE '%%; FILIAL DF'"
    ) == [(4,)]
    [(rows,)] = query(db, "SELECT linhas_carregadas FROM logs.execucoes WHERE id_execucao = %s", (run_id,))
    assert rows == sum(e.loaded_rows for e in expectations.values())
    tables = {
        t
        for (t,) in query(
            db,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            "'staging' AND table_name LIKE 'historic%%'",
        )
    }
    assert tables == {"historic_raw", "historic_cleaned", "historic_renamed", "historic_transformed"}


def test_dask_cluster_run_matches_the_local_run(db, fresh_portal, monkeypatch):
    import distributed

    local, _ = capture_all(url=fresh_portal.page_url, force=True)
    assert local.is_successful()
    local_content = content_without_capture_time(db)
    with db.cursor() as cursor:
        cursor.execute("TRUNCATE raw.terceirizados, raw.terceirizados_quarentena, raw.capturas")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.scheduler_address)
        executor = parallel_executor(load_settings())
        assert type(executor).__name__ == "DaskExecutor"
        state, run_id = run_flow(historic_capture_flow, executor=executor, url=fresh_portal.page_url)
    assert state.is_successful(), state.message
    assert content_without_capture_time(db) == local_content
    assert "5 período(s) carregado(s)" in messages_of(db, run_id)


def test_a_period_republished_under_another_file_is_reloaded(db, fresh_portal):
    from pipelines import capture
    from pipelines.portal import PublishedFile

    settings = load_settings()
    first = PublishedFile(2024, 5, fresh_portal.base_url + fresh_portal.file_path("terceirizados202405.xlsx"), "xlsx")
    assert capture.capture_period(settings, first, False, "r1")["situacao"] == "carregado"
    assert capture.capture_period(settings, first, False, "r2")["situacao"] == "inalterado"
    # same period, new file name (the portal renamed/replaced it): no conditional request, reloaded.
    # The new file: 2023-09's rows re-exported as May 2024 (their load fields say so; a file whose
    # rows say another period is refused, test_guarantees.py)
    source = fresh_portal.portal.root / "cgu/terceirizados/arquivos/terceirizados202309.csv"
    lines = source.read_bytes().decode("latin-1").split("\n")
    for number, line in enumerate(lines[1:], start=1):
        fields = line.split(";")
        if len(fields) == 23:
            fields[16:19] = ["5", "MAIO", "2024"]
            lines[number] = ";".join(fields)
    (source.parent / "terceirizados202405.csv").write_bytes("\n".join(lines).encode("latin-1"))
    renamed = PublishedFile(2024, 5, fresh_portal.base_url + fresh_portal.file_path("terceirizados202405.csv"), "csv")
    assert capture.capture_period(settings, renamed, False, "r3")["situacao"] == "carregado"
    assert query(db, "SELECT DISTINCT arquivo_origem FROM raw.terceirizados") == [("terceirizados202405.csv",)]
    assert query(db, "SELECT count(*) FROM raw.terceirizados") == [
        (fresh_portal.portal.expectations["2023-09"].loaded_rows,)
    ]
