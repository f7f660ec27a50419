"""The capture flow end to end: local portal -> raw.terceirizados in PostgreSQL."""

from datetime import UTC
from decimal import Decimal

from pipelines.flows import capture_flow
from tests.conftest import query, run_flow


def test_capture_loads_newest_period_exactly(db, fresh_portal):
    expected = fresh_portal.portal.expectations["2024-05"]
    state, run_id = run_flow(capture_flow, url=fresh_portal.page_url)
    assert state.is_successful(), state.message

    rows = query(db, "SELECT periodo::text, count(*) FROM raw.terceirizados GROUP BY 1")
    assert rows == [("2024-05-01", expected.loaded_rows)]
    assert expected.loaded_rows == expected.data_rows - len(expected.quarantined_lines)
    [(total,)] = query(db, "SELECT sum(vl_mensal_custo::numeric) FROM raw.terceirizados")
    assert total == Decimal(expected.sum_custo)
    loaded = query(db, "SELECT id_terc, nr_cnpj, cd_ug_gestora FROM raw.terceirizados ORDER BY linha_origem")
    assert [list(r) for r in loaded] == [[r[0], r[6], r[2]] for r in expected.loaded]
    # XLSX numeric cells: the leading zero of the CNPJ is lost in raw, kept as text
    assert ("588541000182",) in query(db, "SELECT DISTINCT nr_cnpj FROM raw.terceirizados")

    [capture] = query(
        db, "SELECT linhas_arquivo, linhas_carregadas, linhas_quarentena, formato, arquivo_origem FROM raw.capturas"
    )
    assert capture == (
        expected.data_rows,
        expected.loaded_rows,
        len(expected.quarantined_lines),
        "xlsx",
        "terceirizados202405.xlsx",
    )
    assert query(db, "SELECT linha_origem FROM raw.terceirizados_quarentena ORDER BY 1") == [
        (n,) for n in expected.quarantined_lines
    ]

    [run] = query(
        db, "SELECT nome_flow, estado_final, linhas_carregadas FROM logs.execucoes WHERE id_execucao = %s", (run_id,)
    )
    assert run == ("adm_cgu_terceirizados__capture", "Success", expected.loaded_rows)
    assert query(db, "SELECT mensagem FROM logs.execucoes WHERE id_execucao = %s", (run_id,)) == [
        ("Concluído com sucesso.",)
    ]
    messages = [m for (m,) in query(db, "SELECT mensagem FROM logs.registros WHERE id_execucao = %s", (run_id,))]
    assert any("linhas de dados" in m and f"{expected.loaded_rows} carregáveis" in m for m in messages)
    tasks = {
        t for (t,) in query(db, "SELECT DISTINCT nome_task FROM logs.registros WHERE id_execucao = %s", (run_id,)) if t
    }
    assert {"download_cgu_terceirizados_data", "parse_data_into_dataframes", "upload_csv_to_database"} <= tasks


def test_recapture_replaces_the_period_without_duplicates(db, fresh_portal):
    expected = fresh_portal.portal.expectations["2024-05"]
    first, _ = run_flow(capture_flow, url=fresh_portal.page_url)
    second, second_id = run_flow(capture_flow, url=fresh_portal.page_url)
    assert first.is_successful() and second.is_successful()
    assert query(db, "SELECT count(*), count(DISTINCT linha_origem) FROM raw.terceirizados") == [
        (expected.loaded_rows, expected.loaded_rows)
    ]
    assert query(db, "SELECT count(*) FROM raw.terceirizados_quarentena") == [(len(expected.quarantined_lines),)]
    assert query(db, "SELECT id_execucao FROM raw.capturas") == [(second_id,)]


def test_transient_500_is_retried_then_succeeds(db, fresh_portal):
    path = fresh_portal.file_path("terceirizados202405.xlsx")
    fresh_portal.faults[path] = ["500"]  # first request fails, the retry succeeds
    state, run_id = run_flow(capture_flow, url=fresh_portal.page_url)
    assert state.is_successful()
    assert fresh_portal.hits[path] == 2
    messages = [m for (m,) in query(db, "SELECT mensagem FROM logs.registros WHERE id_execucao = %s", (run_id,))]
    assert any("HTTP 500" in m for m in messages)


def test_failed_run_keeps_previous_data_and_still_loads_its_logs(db, fresh_portal):
    expected = fresh_portal.portal.expectations["2024-05"]
    good, _ = run_flow(capture_flow, url=fresh_portal.page_url)
    assert good.is_successful()
    path = fresh_portal.file_path("terceirizados202405.xlsx")
    fresh_portal.faults[path] = "500"  # every attempt fails
    state, run_id = run_flow(capture_flow, url=fresh_portal.page_url)
    assert state.is_failed()
    assert fresh_portal.hits[path] == 1 + 1 + 2  # the good run, then the first try and 2 retries
    assert query(db, "SELECT count(*) FROM raw.terceirizados") == [(expected.loaded_rows,)]
    [(status, message)] = query(
        db, "SELECT estado_final, mensagem FROM logs.execucoes WHERE id_execucao = %s", (run_id,)
    )
    assert status == "Failed"
    assert message.startswith("Falhou: download_cgu_terceirizados_data:") and "HTTP 500" in message
    levels = dict(query(db, "SELECT nivel, count(*) FROM logs.registros WHERE id_execucao = %s GROUP BY 1", (run_id,)))
    assert levels.get("ERROR", 0) >= 1 and levels["INFO"] >= 3


def test_not_found_fails_at_once_without_retries(db, fresh_portal):
    path = fresh_portal.file_path("terceirizados202405.xlsx")
    fresh_portal.faults[path] = "404"
    state, run_id = run_flow(capture_flow, url=fresh_portal.page_url)
    assert state.is_failed()
    assert fresh_portal.hits[path] == 1
    messages = " ".join(
        m for (m,) in query(db, "SELECT mensagem FROM logs.registros WHERE id_execucao = %s", (run_id,))
    )
    assert "HTTP 404" in messages


def test_changed_page_fails_the_flow_with_a_clear_message(db, fresh_portal):
    fresh_portal.page_override = "<html><body><h2>Nova página</h2></body></html>"
    state, run_id = run_flow(capture_flow, url=fresh_portal.page_url)
    assert state.is_failed()
    messages = " ".join(
        m for (m,) in query(db, "SELECT mensagem FROM logs.registros WHERE id_execucao = %s", (run_id,))
    )
    assert "estrutura da página mudou" in messages
    assert query(db, "SELECT estado_final FROM logs.execucoes WHERE id_execucao = %s", (run_id,)) == [("Failed",)]


def test_failure_inside_the_load_transaction_keeps_old_rows(db, fresh_portal, settings, tmp_path):
    import dataclasses

    from pipelines import raw_loads

    good, _ = run_flow(capture_flow, url=fresh_portal.page_url)
    assert good.is_successful()
    [(before, sha)] = query(db, "SELECT count(*), min(sha256_arquivo) FROM raw.terceirizados")
    csv_file = next((settings.data_dir / "csv").rglob("terceirizados_202405.csv"))
    broken = tmp_path / "broken.csv"
    lines = csv_file.read_text(encoding="utf-8").splitlines()
    lines[-1] = lines[-1].rsplit(";", 3)[0] + ";nao-e-numero;;2026-01-01T00:00:00+00:00"  # bad linha_origem
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
    record = dataclasses.replace(
        raw_loads.CaptureRecord(
            period=__import__("datetime").date(2024, 5, 1),
            file_name="x",
            url="u",
            file_format="csv",
            encoding="utf-8",
            sha256="0" * 64,
            etag=None,
            last_modified=None,
            size_bytes=1,
            data_rows=before,
            loaded_rows=before,
            repaired_rows=0,
            quarantined_rows=0,
            notes=None,
            captured_at=__import__("datetime").datetime.now(),
            run_id="broken",
        ),
    )
    import psycopg2
    import pytest

    with pytest.raises(psycopg2.DataError, match="nao-e-numero"):
        raw_loads.load_period(settings, broken, [], record)
    assert query(db, "SELECT count(*), min(sha256_arquivo) FROM raw.terceirizados") == [(before, sha)]
    assert query(db, "SELECT id_execucao FROM raw.capturas") != [("broken",)]


def test_shifted_rows_are_repaired_or_quarantined_in_the_database(db, tmp_path):
    from bench.portal_generator import PortalServer, build_portal, default_periods

    spec = next(s for s in default_periods() if s.label == "2023-09")
    built = build_portal(tmp_path, [spec], rows=40)
    server = PortalServer(built).start()
    try:
        state, _ = run_flow(capture_flow, url=server.page_url)
    finally:
        server.shutdown()
    assert state.is_successful()
    expected = built.expectations["2023-09"]
    assert query(db, "SELECT count(*) FROM raw.terceirizados") == [(expected.loaded_rows,)]
    [(line, note, company)] = query(
        db,
        "SELECT linha_origem, observacao_reparo, nm_razao_social FROM raw.terceirizados "
        "WHERE observacao_reparo IS NOT NULL",
    )
    assert line == 4 and "nm_razao_social" in note and company.endswith("; FILIAL DF")
    quarantined = query(db, "SELECT linha_origem, motivo, linha_bruta FROM raw.terceirizados_quarentena ORDER BY 1")
    assert [q[0] for q in quarantined] == expected.quarantined_lines == [6, 8]
    assert "reparo inequívoco" in quarantined[0][1] and quarantined[0][2].count(";") == 23
    assert query(db, "SELECT linhas_carregadas + linhas_quarentena, linhas_arquivo FROM raw.capturas") == [(40, 40)]


def test_values_that_need_quoting_load_exactly(db, settings):
    import hashlib
    from datetime import datetime

    from bench.portal_generator import HEADER
    from pipelines import capture, storage
    from pipelines.constants import SOURCE_COLUMNS
    from pipelines.download import DownloadedFile
    from pipelines.parse import parse_file
    from pipelines.portal import PublishedFile

    row = [
        "7100000",
        "MCOM",
        "413007",
        "AGENCIA",
        "ANATEL-PE",
        "113/2016",
        "19232342000165",
        "EMPRESA",
        "***.567.058-**",
        "ANTONIO",
        "517330 - VIGILANTE",
        "ENSINO MEDIO COMPLETO",
        "44",
        "ANATEL PE",
        "2524,37",
        "5838,10",
        "5",
        "MAIO",
        "2024",
        "ANATEL",
        "AGENCIA NACIONAL",
        "41231",
        "41231",
    ]

    def variant(id_terc, **values):
        return [id_terc if name == "id_terc" else values.get(name, value) for name, value in zip(SOURCE_COLUMNS, row)]

    bare_cr = ";".join(variant("7100001", nm_terceirizado="ANA\rMARIA", nm_unidade_prestacao="  SALA 1 "))
    quoted = ";".join(
        f'"{v}"' if ";" in v or '"' in v else v
        for v in (
            x.replace('"', '""') if '"' in x else x
            for x in variant("7100002", nm_razao_social='EMPRESA "ALFA"', nm_unidade_prestacao="BLOCO A; SALA 2")
        )
    )
    content = "\n".join([";".join(HEADER), ";".join(row), bare_cr, quoted, ""]).encode()
    published = PublishedFile(2024, 5, "http://h/terceirizados202405.csv", "csv")
    downloaded = DownloadedFile(published, content, hashlib.sha256(content).hexdigest(), None, None, datetime.now(UTC))
    parsed = parse_file(content, "csv", published.file_name)
    csv_file = storage.save_csv(settings.data_dir, parsed, downloaded)
    capture.load_parsed(settings, csv_file, parsed, downloaded, None)
    loaded = query(
        db,
        "SELECT id_terc, nm_terceirizado, nm_razao_social, nm_unidade_prestacao, vl_mensal_salario "
        "FROM raw.terceirizados ORDER BY id_terc",
    )
    assert loaded == [
        ("7100000", "ANTONIO", "EMPRESA", "ANATEL PE", "2524,37"),
        ("7100001", "ANA\rMARIA", "EMPRESA", "  SALA 1 ", "2524,37"),
        ("7100002", "ANTONIO", 'EMPRESA "ALFA"', "BLOCO A; SALA 2", "2524,37"),
    ]


def test_retries_are_recorded_as_structured_events(db, fresh_portal):
    """Readers count retries by the event, never by the wording of the message."""
    fresh_portal.faults[fresh_portal.file_path("terceirizados202405.xlsx")] = ["500", "500"]
    state, run_id = run_flow(capture_flow, url=fresh_portal.page_url)
    assert state.is_successful()
    assert query(
        db,
        "SELECT evento, nome_task, count(*) FROM logs.registros WHERE id_execucao = %s "
        "AND evento IS NOT NULL GROUP BY 1, 2",
        (run_id,),
    ) == [("nova_tentativa", "download_cgu_terceirizados_data", 2)]


def test_the_runs_page_counts_retries_from_the_event(db, fresh_portal):
    from pipelines.results.queries import ResultsRepository, make_engine
    from pipelines.settings import load_settings

    fresh_portal.faults[fresh_portal.file_path("terceirizados202405.xlsx")] = ["500", "500"]
    state, run_id = run_flow(capture_flow, url=fresh_portal.page_url)
    assert state.is_successful()
    with db.cursor() as cursor:  # rewording the message must not change the count
        cursor.execute("UPDATE logs.registros SET mensagem = 'outra redação' WHERE evento = 'nova_tentativa'")
    repository = ResultsRepository(make_engine(load_settings()))
    runs = repository.runs()
    repository.engine.dispose()
    assert runs.loc[runs["id_execucao"] == run_id, "tentativas_agendadas"].tolist() == [2]


def test_every_flow_ends_with_its_outcome_in_portuguese(db, fresh_portal):
    """The final state of flow.run() (the run's message in the Prefect UI) says what happened in
    Portuguese, the same words as logs.execucoes, not Prefect's generic English message."""
    from pipelines.flows import historic_capture_flow, materialize_flow

    def recorded(run_id):
        return query(db, "SELECT estado_final, mensagem FROM logs.execucoes WHERE id_execucao = %s", (run_id,))

    materialized, run_id = run_flow(materialize_flow)  # nothing captured yet
    assert materialized.is_failed()
    assert materialized.message.startswith("Falhou: check_raw_data: ")
    assert "raw.terceirizados está vazia" in materialized.message
    assert recorded(run_id) == [("Failed", materialized.message)]

    captured, run_id = run_flow(capture_flow, url=fresh_portal.page_url)
    assert captured.is_successful() and captured.message == "Concluído com sucesso."
    assert recorded(run_id) == [("Success", "Concluído com sucesso.")]

    path = fresh_portal.file_path("terceirizados202405.xlsx")
    fresh_portal.faults[path] = "404"
    for flow, options in ((capture_flow, {}), (historic_capture_flow, {"force": True})):
        failed, run_id = run_flow(flow, url=fresh_portal.page_url, **options)
        assert failed.is_failed(), flow.name
        assert failed.message.startswith("Falhou: ") and "HTTP 404" in failed.message, failed.message
        assert recorded(run_id) == [("Failed", failed.message)]


def test_a_run_started_like_prefects_agent_ends_with_the_cause_in_portuguese_once(db, fresh_portal):
    """A Prefect agent runs a flow with FlowRunner(flow).run() and no return_tasks: the final
    state carries no task states. The message then comes from the reference tasks, once, and
    logs.execucoes records the same words (never 'Falhou: Falhou: ...')."""
    import uuid

    from prefect.engine.flow_runner import FlowRunner

    from pipelines.flows import historic_capture_flow
    from pipelines.settings import load_settings
    from pipelines.tasks import SETTINGS_KEY

    path = fresh_portal.file_path("terceirizados202405.xlsx")
    fresh_portal.faults[path] = "404"
    for flow, parameters in (
        (historic_capture_flow, {"url": fresh_portal.page_url, "force": True}),
        (capture_flow, {"url": fresh_portal.page_url}),
    ):
        run_id = str(uuid.uuid4())
        state = FlowRunner(flow=flow).run(
            parameters=parameters, context={"flow_run_id": run_id, SETTINGS_KEY: load_settings()}
        )
        assert state.is_failed() and state.result == {}, flow.name
        assert state.message.startswith("Falhou: ") and "Falhou: Falhou" not in state.message, state.message
        assert "Some reference tasks failed" not in state.message
        if flow is historic_capture_flow:  # its summary task fails naming the period and the cause
            assert "2024-05" in state.message and "HTTP 404" in state.message, state.message
        [(final, message)] = query(
            db, "SELECT estado_final, mensagem FROM logs.execucoes WHERE id_execucao = %s", (run_id,)
        )
        assert (final, message) == ("Failed", state.message)


def test_a_failure_is_reported_once_by_the_task_that_failed_not_by_those_it_stopped(db, fresh_portal):
    """The page does not answer: the historic capture names discover_published_files and the
    cause, not Prefect's words for the mapped task that could not run after it."""
    from urllib.parse import urlparse

    from pipelines.flows import historic_capture_flow

    fresh_portal.faults[urlparse(fresh_portal.page_url).path] = "404"
    state, run_id = run_flow(historic_capture_flow, url=fresh_portal.page_url)
    assert state.is_failed()
    assert state.message.startswith("Falhou: discover_published_files: ") and "404" in state.message, state.message
    assert "mapped" not in state.message and "capture_period" not in state.message
    assert query(db, "SELECT mensagem FROM logs.execucoes WHERE id_execucao = %s", (run_id,)) == [(state.message,)]
