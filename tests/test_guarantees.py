"""Files that must not replace good data, and failures that must be named: each case
ends with the previous data intact and a clear Portuguese message, never Success."""

import os
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.portal_generator import PeriodSpec, PortalServer, build_portal
from pipelines.flows import capture_flow
from tests.conftest import query, run_flow

LABEL = "2023-09"
FILE = "terceirizados202309.csv"


@pytest.fixture
def own_portal(tmp_path):
    """A one-period CSV portal whose file each test may rewrite."""
    built = build_portal(tmp_path, [PeriodSpec(2023, 9, FILE, quirk_rows=False)], rows=50)
    server = PortalServer(built).start()
    yield server, built.root / "cgu/terceirizados/arquivos" / FILE
    server.shutdown()


def run_messages(db, run_id):
    return " ".join(m for (m,) in query(db, "SELECT mensagem FROM logs.registros WHERE id_execucao = %s", (run_id,)))


def run_message(db, run_id) -> str:
    """The run's final message (logs.execucoes)."""
    [(message,)] = query(db, "SELECT mensagem FROM logs.execucoes WHERE id_execucao = %s", (run_id,))
    return message


def capture_good_then(db, own_portal, content: bytes):
    """Capture the good file, replace it with ``content``, capture again; return the second run."""
    server, path = own_portal
    good, _ = run_flow(capture_flow, url=server.page_url)
    assert good.is_successful(), good.message
    before = query(db, "SELECT count(*), min(sha256_arquivo), sum(vl_mensal_custo::numeric) FROM raw.terceirizados")
    assert before[0][0] == 50
    path.write_bytes(content)
    state, run_id = run_flow(capture_flow, url=server.page_url)
    assert state.is_failed()
    # the previous data and its capture record are intact
    assert (
        query(db, "SELECT count(*), min(sha256_arquivo), sum(vl_mensal_custo::numeric) FROM raw.terceirizados")
        == before
    )
    [(loaded, sha)] = query(db, "SELECT linhas_carregadas, sha256_arquivo FROM raw.capturas")
    assert loaded == 50 and sha == before[0][1]
    return run_id


def truncated(line: str) -> str:
    """A line missing its last five fields: never repairable, always quarantined."""
    return line.rsplit(";", 5)[0]


def header(path) -> bytes:
    return path.read_bytes().split(b"\n", 1)[0] + b"\n"


def test_a_file_with_only_the_header_keeps_the_period(db, own_portal):
    run_id = capture_good_then(db, own_portal, header(own_portal[1]))
    [(state, message)] = query(
        db, "SELECT estado_final, mensagem FROM logs.execucoes WHERE id_execucao = %s", (run_id,)
    )
    assert state == "Failed"
    assert "Período 2023-09 recusado" in message and "não tem linhas de dados" in message
    assert "dados anteriores do período foram mantidos" in message
    assert query(
        db,
        "SELECT tentativa_situacao, tentativa_linhas_arquivo, tentativa_linhas_carregaveis, "
        "tentativa_id_execucao FROM raw.capturas",
    ) == [("recusada", 0, 0, run_id)]
    assert "recusado" in run_messages(db, run_id)


@pytest.mark.parametrize("separator", [",", "\t"])
def test_a_file_with_another_separator_fails_naming_it(db, own_portal, separator):
    lines = own_portal[1].read_bytes().decode("utf-8").splitlines()
    other = "\n".join(line.replace(";", separator) for line in lines) + "\n"
    run_id = capture_good_then(db, own_portal, other.encode())
    message = run_message(db, run_id)
    assert f"O arquivo {FILE} parece separado por {separator!r}, não por ';' como os da CGU" in message
    assert "os dados anteriores do período não foram alterados" in message


def test_a_file_where_no_row_loads_keeps_the_period(db, own_portal):
    """A header-less file whose every line is cut short: every line is quarantined."""
    lines = own_portal[1].read_bytes().decode("utf-8").splitlines()[1:]
    cut = "\n".join(truncated(line) for line in lines) + "\n"
    run_id = capture_good_then(db, own_portal, cut.encode())
    message = run_message(db, run_id)
    assert "Período 2023-09 recusado" in message and "nenhuma das 50 linhas" in message
    [(situation, rows, loadable, quarantined)] = query(
        db,
        "SELECT tentativa_situacao, tentativa_linhas_arquivo, tentativa_linhas_carregaveis, "
        "tentativa_linhas_quarentena FROM raw.capturas",
    )
    assert situation == "recusada" and loadable == 0 and quarantined == rows and rows >= 50
    # the refused file's quarantine did not replace the period's quarantine either
    assert query(db, "SELECT count(*) FROM raw.terceirizados_quarentena") == [(0,)]


def test_an_implausible_share_of_quarantined_lines_keeps_the_period(db, own_portal, monkeypatch):
    monkeypatch.setenv("MAX_QUARANTINE_PERCENT", "10")
    lines = own_portal[1].read_bytes().decode("utf-8").splitlines()
    broken = [truncated(line) if 1 <= number <= 10 else line for number, line in enumerate(lines)]  # 10 of 50 = 20%
    run_id = capture_good_then(db, own_portal, ("\n".join(broken) + "\n").encode())
    message = run_message(db, run_id)
    assert "10 de 50 linhas (20,0%)" in message and "MAX_QUARANTINE_PERCENT=10" in message
    assert query(db, "SELECT tentativa_linhas_quarentena, tentativa_linhas_carregaveis FROM raw.capturas") == [(10, 40)]


def test_a_share_within_the_limit_loads_and_records_the_attempt(db, own_portal, monkeypatch):
    monkeypatch.setenv("MAX_QUARANTINE_PERCENT", "25")
    server, path = own_portal
    lines = path.read_bytes().decode("utf-8").splitlines()
    broken = [truncated(line) if 1 <= number <= 10 else line for number, line in enumerate(lines)]
    path.write_bytes(("\n".join(broken) + "\n").encode())
    state, run_id = run_flow(capture_flow, url=server.page_url)
    assert state.is_successful(), state.message
    assert query(
        db,
        "SELECT linhas_carregadas, linhas_quarentena, tentativa_situacao, tentativa_linhas_quarentena, "
        "tentativa_id_execucao FROM raw.capturas",
    ) == [(40, 10, "carregada", 10, run_id)]


def two_period_portal(tmp_path) -> PortalServer:
    """A portal of 2023-09 and 2024-05 (40 rows each), served: its page is for the test to override."""
    built = build_portal(
        tmp_path,
        [PeriodSpec(2023, 9, FILE, quirk_rows=False), PeriodSpec(2024, 5, "terceirizados202405.csv", quirk_rows=False)],
        rows=40,
    )
    return PortalServer(built).start()


NEUTRAL = "terceirizados-maio.csv"  # a name that says no period: only the contents can tell


def with_neutral_copy(server: PortalServer) -> PortalServer:
    """2023-09's file also under a name that names no period (a name that does is refused on the
    page already: tests/test_portal.py)."""
    files = server.root / "cgu/terceirizados/arquivos"
    (files / NEUTRAL).write_bytes((files / FILE).read_bytes())
    return server


def test_a_link_to_the_file_of_another_period_is_refused(db, tmp_path):
    """The page links a period (2024-05) to a file byte for byte identical to another period's
    capture (2023-09's): loading it would put 2023-09's rows under 2024-05 with only warnings.
    The period is refused naming the other period, and nothing of it is loaded."""
    from tests.test_hostile_http_portal import FILES, link, page

    server = two_period_portal(tmp_path)
    try:
        first, _ = run_flow(capture_flow, url=server.page_url)  # 2024-05, the newest
        assert first.is_successful(), first.message
        before = query(
            db, "SELECT to_char(periodo, 'YYYY-MM'), count(*), min(sha256_arquivo) FROM raw.terceirizados GROUP BY 1"
        )
        [(_, _, sha_2024)] = before
        # 2023-09 captured too, then the page's 2024-05 link points to 2023-09's file
        server.page_override = page(("2023", link(f"{FILES}/{FILE}", "Setembro")))
        second, _ = run_flow(capture_flow, url=server.page_url)
        assert second.is_successful(), second.message
        with_neutral_copy(server).page_override = page(
            ("2024", link(f"{FILES}/{NEUTRAL}", "Maio")), ("2023", link(f"{FILES}/{FILE}", "Setembro"))
        )
        state, run_id = run_flow(capture_flow, url=server.page_url)
    finally:
        server.shutdown()
    assert state.is_failed()
    message = run_message(db, run_id)
    assert (
        f"Período 2024-05 recusado: o arquivo {NEUTRAL} é idêntico ao já carregado para 2023-09 (sha256 "
    ) in message
    assert "o link de 2024-05 ou o de 2023-09 aponta para o arquivo errado" in message
    assert "dados anteriores do período foram mantidos" in message
    # 2024-05 keeps its own rows and its record; 2023-09 is untouched
    assert query(db, "SELECT count(*), min(sha256_arquivo) FROM raw.terceirizados WHERE periodo = '2024-05-01'") == [
        (40, sha_2024)
    ]
    assert query(
        db, "SELECT sha256_arquivo = %s, tentativa_situacao FROM raw.capturas WHERE periodo = '2024-05-01'", (sha_2024,)
    ) == [(True, "recusada")]


def first_lines(path, count: int) -> bytes:
    """The header and the first ``count`` data lines: a body cut at a line break."""
    return b"".join(path.read_bytes().splitlines(keepends=True)[: count + 1])


def test_a_period_that_loses_most_of_its_rows_is_refused(db, own_portal):
    """A body cut at a line break with no Content-Length to tell (or an incomplete file
    republished) parses cleanly: 20 of the period's 50 rows would silently replace them."""
    run_id = capture_good_then(db, own_portal, first_lines(own_portal[1], 20))
    message = run_message(db, run_id)
    assert (
        "Período 2023-09 recusado: terceirizados202309.csv tem 20 linhas carregáveis, 60,0% menos que as 50 da "
        "captura anterior do período, acima do limite MAX_ROW_DROP_PERCENT=50 (arquivo truncado ou incompleto? "
        "MAX_ROW_DROP_PERCENT=100 o aceita de propósito)"
    ) in message
    assert query(db, "SELECT tentativa_situacao, tentativa_linhas_carregaveis FROM raw.capturas") == [("recusada", 20)]


@pytest.mark.parametrize(("kept", "limit"), [(30, None), (20, "100")])
def test_a_smaller_file_within_the_limit_replaces_the_period(db, own_portal, monkeypatch, kept, limit):
    """40% fewer rows is within the default limit; MAX_ROW_DROP_PERCENT=100 accepts any file."""
    if limit:
        monkeypatch.setenv("MAX_ROW_DROP_PERCENT", limit)
    server, path = own_portal
    good, _ = run_flow(capture_flow, url=server.page_url)
    assert good.is_successful(), good.message
    path.write_bytes(first_lines(path, kept))
    state, _ = run_flow(capture_flow, url=server.page_url)
    assert state.is_successful(), state.message
    assert query(db, "SELECT count(*) FROM raw.terceirizados") == [(kept,)]


@given(
    previous=st.one_of(st.none(), st.integers(0, 10**7)),
    loaded=st.integers(0, 10**7),
    percent=st.integers(0, 100),
)
def test_a_file_is_refused_exactly_when_it_drops_more_rows_than_the_limit(previous, loaded, percent):
    from pipelines.capture import row_drop

    refusal = row_drop(loaded, previous, percent / 100, "arquivo.csv")
    dropped_too_much = bool(previous) and (previous - loaded) * 100 > percent * previous
    assert (refusal is not None) == dropped_too_much
    if refusal:
        assert refusal.startswith(f"arquivo.csv tem {loaded} linhas carregáveis") and f"as {previous} da" in refusal


def test_the_good_file_back_ends_the_refused_attempt(db, own_portal):
    """A refused file, then the good one back (byte for byte the last load): the historic
    capture skips it as unchanged, and the latest attempt in raw.capturas is no longer the
    refusal (it stayed 'recusada' with the old reason for good)."""
    from pipelines.flows import historic_capture_flow

    server, path = own_portal
    good = path.read_bytes()
    first, _ = run_flow(historic_capture_flow, url=server.page_url)
    assert first.is_successful(), first.message

    def replace(content: bytes, seconds_later: int) -> None:
        """A new file with a later Last-Modified (the server answers 304 within the same second)."""
        path.write_bytes(content)
        os.utime(path, (time.time() + seconds_later, time.time() + seconds_later))

    replace(first_lines(path, 20), 5)
    refused, _ = run_flow(historic_capture_flow, url=server.page_url)
    assert refused.is_failed()
    assert query(db, "SELECT tentativa_situacao FROM raw.capturas") == [("recusada",)]
    replace(good, 10)
    back, run_id = run_flow(historic_capture_flow, url=server.page_url)
    assert back.is_successful(), back.message
    assert query(
        db,
        "SELECT tentativa_situacao, tentativa_motivo, tentativa_sha256 = sha256_arquivo, tentativa_linhas_carregaveis, "
        "tentativa_id_execucao FROM raw.capturas",
    ) == [("carregada", None, True, 50, run_id)]
    assert query(db, "SELECT count(*) FROM raw.terceirizados") == [(50,)]


def test_rows_without_a_worker_id_or_sharing_one_are_quarantined_and_nothing_is_blocked(db, settings):
    """A duplicated or empty id_terc used to pass the capture and then fail the materialization
    on the primary key, for good (the historic one for every period); those rows now go to the
    quarantine with the reason, and the rest of the period is published."""
    from pipelines.flows import historic_materialize_flow, materialize_flow
    from tests.conftest import load_csv_period

    load_csv_period(settings, 2024, 1, {"id_terc": "7100000"}, how_many=2)  # line 3 repeats line 2
    load_csv_period(settings, 2024, 5, {"id_terc": " 7100005\u00a0", "nm_terceirizado": "OUTRO"}, how_many=1)
    quarantined = query(
        db, "SELECT to_char(periodo, 'YYYY-MM'), linha_origem, motivo FROM raw.terceirizados_quarentena"
    )
    assert sorted(quarantined) == [
        ("2024-01", 3, "linha repetida: igual à linha 2"),
        ("2024-05", 2, "id_terc '7100005' repetido nas linhas 2, 7 com valores diferentes: não se sabe qual vale"),
        ("2024-05", 7, "id_terc '7100005' repetido nas linhas 2, 7 com valores diferentes: não se sabe qual vale"),
    ]
    for flow in (materialize_flow, historic_materialize_flow):
        state, _ = run_flow(flow)
        assert state.is_successful(), state.message
    assert query(db, "SELECT count(*) FROM staging.transformed") == [(38,)]
    assert query(db, "SELECT mes, count(*) FROM staging.historic_transformed GROUP BY mes ORDER BY mes") == [
        (1, 39),
        (5, 38),
    ]


def test_a_value_too_long_for_an_index_does_not_stop_the_historic_materialization(db, settings):
    """A value of several kB (here 3,000 CJK characters, ~9 kB) does not fit PostgreSQL's B-tree
    indexes: it used to fail the marts' key, for good. Its row goes to the quarantine."""
    from pipelines.flows import historic_materialize_flow
    from tests.conftest import load_csv_period

    load_csv_period(settings, 2024, 1, {"nr_contrato": "".join(chr(0x4E00 + i) for i in range(3000))}, how_many=1)
    load_csv_period(settings, 2024, 5)
    [(reason,)] = query(db, "SELECT motivo FROM raw.terceirizados_quarentena")
    assert reason == "valor com mais de 500 caracteres: nr_contrato (3000)"
    state, _ = run_flow(historic_materialize_flow)
    assert state.is_successful(), state.message
    assert query(db, "SELECT count(*) FROM staging.historic_transformed") == [(79,)]


def relabelled(path, rows: int, month: str, name: str, year: str) -> bytes:
    """The file with the load fields (Num_Mes_Carga, Mes_Carga, Ano_Carga) of its first ``rows``
    data lines saying another period: a re-exported copy of another period's file, whose bytes
    (and sha256) differ from that period's capture."""
    header_line, *lines = path.read_bytes().decode("utf-8").splitlines()
    assert header_line.split(";")[16:19] == ["Num_Mes_Carga", "Mes_Carga", "Ano_Carga"]
    changed = []
    for number, line in enumerate(lines):
        fields = line.split(";")
        assert len(fields) == 23
        if number < rows:
            fields[16:19] = [month, name, year]
        changed.append(";".join(fields))
    return ("\n".join([header_line, *changed]) + "\n").encode()


def test_a_file_whose_rows_say_another_period_is_refused(db, own_portal):
    """The link of 2023-09 now serves a file whose rows say, in their load fields, that they are
    2023-05's (written as the files write them: a month number with a zero, a name with an
    accent and a year with '.0'). Its sha256 is new, so only the load fields can tell."""
    run_id = capture_good_then(db, own_portal, relabelled(own_portal[1], 26, "05", "Maio", "2023.0"))
    message = run_message(db, run_id)
    assert (
        "Período 2023-09 recusado: 26 de 50 linhas (52,0%) de terceirizados202309.csv dizem nos campos de carga "
        "(Num_Mes_Carga, Mes_Carga, Ano_Carga) ser de outro período que 2023-09 (o mais frequente: 2023-05), acima do "
        "limite MAX_WRONG_PERIOD_PERCENT=50: o link de 2023-09 aponta para o arquivo de outro período?"
    ) in message
    assert "MAX_WRONG_PERIOD_PERCENT=100 o aceita de propósito" in message
    assert "dados anteriores do período foram mantidos" in message
    assert query(db, "SELECT tentativa_situacao, tentativa_linhas_carregaveis FROM raw.capturas") == [("recusada", 50)]


def test_a_first_capture_of_a_file_of_another_period_loads_nothing(db, own_portal):
    """No previous capture to keep: the period stays empty, with the refused attempt recorded."""
    server, path = own_portal
    path.write_bytes(relabelled(path, 50, "9", "SETEMBRO", "2022"))
    state, run_id = run_flow(capture_flow, url=server.page_url)
    assert state.is_failed()
    message = run_message(db, run_id)
    assert "50 de 50 linhas (100,0%)" in message and "(o mais frequente: 2022-09)" in message
    assert query(db, "SELECT count(*) FROM raw.terceirizados") == [(0,)]
    assert query(db, "SELECT tentativa_situacao, linhas_carregadas FROM raw.capturas") == [("recusada", None)]


@pytest.mark.parametrize(
    ("rows", "fields", "limit"),
    [
        (25, ("5", "MAIO", "2023"), None),  # half the rows: not more than the default 50%
        (50, ("5", "MAIO", "2023"), "100"),  # every row, accepted on purpose
        (50, ("<N/I>", "", "NULL"), None),  # load fields missing: they name no period
        (50, ("09", "Setembro ", "2023.0"), None),  # the period's own, written otherwise
    ],
)
def test_a_file_whose_load_fields_do_not_name_another_period_loads(db, own_portal, monkeypatch, rows, fields, limit):
    if limit:
        monkeypatch.setenv("MAX_WRONG_PERIOD_PERCENT", limit)
    server, path = own_portal
    path.write_bytes(relabelled(path, rows, *fields))
    state, _ = run_flow(capture_flow, url=server.page_url)
    assert state.is_successful(), state.message
    assert query(
        db, "SELECT count(*), count(*) FILTER (WHERE num_mes_carga = %s) FROM raw.terceirizados", (fields[0],)
    ) == [(50, rows)]


def test_a_file_of_another_period_is_refused_even_when_no_capture_is_identical(db, tmp_path, monkeypatch):
    """The identical-file check and the load-fields check run in the load's transaction, under the
    file's lock, on the rows copied: when the identical capture is gone (the other period just
    recaptured with a corrected file: here the check answers nothing), the file is still refused
    for what its rows say, never loaded on a stale answer."""
    from pipelines import raw_loads
    from tests.test_hostile_http_portal import FILES, link, page

    server = two_period_portal(tmp_path)
    try:
        server.page_override = page(("2023", link(f"{FILES}/{FILE}", "Setembro")))
        assert run_flow(capture_flow, url=server.page_url)[0].is_successful()
        with_neutral_copy(server).page_override = page(
            ("2024", link(f"{FILES}/{NEUTRAL}", "Maio")), ("2023", link(f"{FILES}/{FILE}", "Setembro"))
        )
        monkeypatch.setattr(raw_loads, "_periods_with_file", lambda cursor, sha256, period: [])
        state, run_id = run_flow(capture_flow, url=server.page_url)
    finally:
        server.shutdown()
    assert state.is_failed()
    message = run_message(db, run_id)
    assert f"Período 2024-05 recusado: 40 de 40 linhas (100,0%) de {NEUTRAL} dizem" in message
    assert "(o mais frequente: 2023-09)" in message
    assert query(db, "SELECT to_char(periodo, 'YYYY-MM'), count(*) FROM raw.terceirizados GROUP BY 1") == [
        ("2023-09", 40)
    ]
    assert query(db, "SELECT tentativa_situacao FROM raw.capturas WHERE periodo = '2024-05-01'") == [("recusada",)]


def test_a_share_just_above_the_limit_never_reads_as_the_limit():
    from pipelines.capture import percent_above

    assert percent_above(10001 * 100 / 20000, 50) == "50,01"  # 50,005%
    assert percent_above(52.0, 50) == "52,0"
    assert percent_above(100.0, 50) == "100,0"


def local_files(settings, year: int, month: int) -> dict[str, bytes]:
    """The period's local files (raw file, checksum, CSV, quarantine CSV), by name."""
    found = {}
    for kind in ("raw", "csv"):
        folder = settings.data_dir / kind / f"ano={year}" / f"mes={month:02d}"
        found.update({f"{kind}/{p.name}": p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {})
    return found


@pytest.mark.parametrize("historic", [False, True])
def test_a_refused_file_leaves_the_local_copies_of_the_last_load(db, own_portal, settings, historic):
    """The refusal says the previous data was kept: the local raw file, its checksum and the
    CSVs too, not only the tables (they used to hold the refused file, whose sha256 then
    differed from raw.capturas'). Nothing half-written is left next to them."""
    from pipelines.flows import historic_capture_flow

    flow = historic_capture_flow if historic else capture_flow
    server, path = own_portal
    good, _ = run_flow(flow, url=server.page_url)
    assert good.is_successful(), good.message
    before = local_files(settings, 2023, 9)
    assert sorted(before) == [
        "csv/quarentena_202309.csv",
        "csv/terceirizados_202309.csv",
        f"raw/{FILE}",
        f"raw/{FILE}.sha256",
    ]
    [(sha,)] = query(db, "SELECT sha256_arquivo FROM raw.capturas")
    assert before[f"raw/{FILE}.sha256"].decode().split()[0] == sha
    path.write_bytes(first_lines(path, 20))
    os.utime(path, (time.time() + 5, time.time() + 5))
    refused, _ = run_flow(flow, url=server.page_url)
    assert refused.is_failed()
    assert query(db, "SELECT tentativa_situacao FROM raw.capturas") == [("recusada",)]
    assert local_files(settings, 2023, 9) == before


def test_local_files_are_published_inside_the_load_and_stale_pending_files_go(db, own_portal, settings, monkeypatch):
    """The period's files are replaced before the load commits, under the period's lock: two
    captures publish in the order they commit, and a crash between the two leaves the database
    behind (the next capture loads again), never the files behind a load that a later capture
    skips as unchanged. Pending files of a capture killed a day ago are removed."""
    from pipelines import storage

    server, _ = own_portal
    folder = settings.data_dir / "raw" / "ano=2023" / "mes=09"
    folder.mkdir(parents=True, exist_ok=True)
    old, recent = folder / f"{FILE}.pendente-morta", folder / f"{FILE}.pendente-viva"
    for leftover in (old, recent):
        leftover.write_bytes(b"de uma captura interrompida")
    os.utime(old, (time.time() - 2 * 86400, time.time() - 2 * 86400))
    seen_at_publish = []
    publish = storage.publish

    def watched(data_dir, downloaded):
        seen_at_publish.append(query(db, "SELECT count(*) FROM raw.capturas"))  # another connection
        return publish(data_dir, downloaded)

    monkeypatch.setattr(storage, "publish", watched)
    state, _ = run_flow(capture_flow, url=server.page_url)
    assert state.is_successful(), state.message
    assert seen_at_publish == [[(0,)]]  # published before the load's commit was visible
    assert query(db, "SELECT count(*) FROM raw.capturas") == [(1,)]
    assert not old.exists() and recent.exists()
    recent.unlink()
