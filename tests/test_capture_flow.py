"""The capture flow end to end: local portal -> raw.terceirizados in PostgreSQL."""

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

    [capture] = query(db, "SELECT linhas_arquivo, linhas_carregadas, linhas_quarentena, formato, arquivo_origem "
                          "FROM raw.capturas")
    assert capture == (expected.data_rows, expected.loaded_rows, len(expected.quarantined_lines), "xlsx",
                       "terceirizados202405.xlsx")
    assert query(db, "SELECT linha_origem FROM raw.terceirizados_quarentena ORDER BY 1") == [
        (n,) for n in expected.quarantined_lines
    ]

    [run] = query(db, "SELECT nome_flow, estado_final, linhas_carregadas FROM logs.execucoes WHERE id_execucao = %s",
                  (run_id,))
    assert run == ("adm_cgu_terceirizados__capture", "Success", expected.loaded_rows)
    messages = [m for (m,) in query(db, "SELECT mensagem FROM logs.registros WHERE id_execucao = %s", (run_id,))]
    assert any("linhas de dados" in m and f"{expected.loaded_rows} carregáveis" in m for m in messages)
    tasks = {t for (t,) in query(db, "SELECT DISTINCT nome_task FROM logs.registros WHERE id_execucao = %s",
                                 (run_id,)) if t}
    assert {"download_cgu_terceirizados_data", "parse_data_into_dataframes", "upload_csv_to_database"} <= tasks
