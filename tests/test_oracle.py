"""The independent oracle (tests/oracle.py) against the real flows: historic capture and
historic materialize of a portal with every format and quirk, including the value-fidelity
ones (Unicode padding, sentinels with NBSP, money that overflows or is ambiguous, grouped
thousands, ';' at the end of a line or between fields). Every cell of
staging.historic_transformed must be what the documented rules give (issue 11)."""

import pytest

from bench.portal_generator import PortalServer, build_portal
from pipelines.executors import parallel_executor
from pipelines.flows import historic_capture_flow, historic_materialize_flow
from pipelines.settings import load_settings
from tests import oracle
from tests.conftest import query, run_flow
from tests.test_materialize import warnings_of

NULL_COUNTED_IN_TRANSFORMED = (
    "id_unidade_gestora",
    "cnpj_empresa",
    "quantidade_horas_semanais",
    "valor_salario_mensal",
    "valor_custo_mensal",
)


@pytest.fixture(scope="module")
def fidelity_portal(tmp_path_factory):
    built = build_portal(tmp_path_factory.mktemp("portal_fidelidade"), rows=60, fidelity=True)
    server = PortalServer(built).start()
    yield server
    server.shutdown()


def oracle_periods(portal) -> list[oracle.Period]:
    files = portal.root / "cgu" / "terceirizados" / "arquivos"
    read = {"csv": oracle.read_csv, "xlsx": oracle.read_xlsx}
    return [read[spec.format]((files / spec.file_name).read_bytes(), spec.year, spec.month) for spec in portal.specs]


def test_historic_transformed_matches_the_oracle_cell_by_cell(db, fidelity_portal):
    captured, _ = run_flow(
        historic_capture_flow, executor=parallel_executor(load_settings()), url=fidelity_portal.page_url
    )
    assert captured.is_successful(), captured.message
    state, run_id = run_flow(historic_materialize_flow)
    assert state.is_successful(), state.message

    periods = oracle_periods(fidelity_portal.portal)
    expected = oracle.expected_rows(periods)
    columns = ", ".join(oracle.TYPED_COLUMNS)
    actual = {
        (row[0], row[1], row[2]): dict(zip(oracle.TYPED_COLUMNS, row))
        for row in query(db, f"SELECT {columns} FROM staging.historic_transformed")
    }

    mismatches = [f"linha {key}: só no pipeline" for key in actual.keys() - expected.keys()]
    mismatches += [f"linha {key}: só no oráculo" for key in expected.keys() - actual.keys()]
    nulled = dict.fromkeys(NULL_COUNTED_IN_TRANSFORMED + ("nivel_escolaridade",), 0)
    for key in sorted(expected.keys() & actual.keys(), key=repr):
        for column in oracle.TYPED_COLUMNS:
            reference = expected[key][column]
            if isinstance(reference, oracle.Nulled):
                nulled[column] += 1
                reference = None
            if actual[key][column] != reference:
                mismatches.append(
                    f"coluna {column}, chave {key}: pipeline={actual[key][column]!r}, oráculo={reference!r}"
                )
    assert not mismatches, f"{len(mismatches)} divergência(s):\n" + "\n".join(mismatches[:50])

    # the quirks are there: the comparison is not vacuous
    assert sum(nulled[c] for c in ("valor_salario_mensal", "valor_custo_mensal")) >= 3 * len(periods)
    assert query(
        db,
        "SELECT count(*) FROM staging.historic_transformed WHERE nome_unidade_prestacao = 'SEDE' "
        "AND id_terceirizado IN (SELECT id_terc FROM raw.terceirizados WHERE nm_unidade_prestacao "
        "<> 'SEDE' AND nm_unidade_prestacao LIKE '%%SEDE%%')",
    ) == [(2 * len(periods),)]
    # what the oracle nulls is what the values_nulled warnings count
    warnings = warnings_of(db, run_id)
    assert warnings["values_nulled_historic_transformed"] == sum(nulled[c] for c in NULL_COUNTED_IN_TRANSFORMED)
    assert warnings["values_nulled_historic_cleaned"] == nulled["nivel_escolaridade"]
    # the same lines loaded, repaired and quarantined
    loaded = dict(
        query(
            db,
            "SELECT extract(year FROM periodo)::int * 100 + extract(month FROM periodo)::int, "
            "count(*) FROM raw.terceirizados GROUP BY 1",
        )
    )
    assert loaded == {p.year * 100 + p.month: len(p.rows) for p in periods}
    quarantined = dict(
        query(
            db,
            "SELECT extract(year FROM periodo)::int * 100 + extract(month FROM periodo)::int, "
            "array_agg(linha_origem ORDER BY linha_origem) FROM raw.terceirizados_quarentena "
            "GROUP BY 1",
        )
    )
    assert quarantined == {p.year * 100 + p.month: p.quarantined for p in periods if p.quarantined}
    repaired = query(db, "SELECT count(*) FROM raw.terceirizados WHERE observacao_reparo LIKE '%%fim da linha%%'")
    assert repaired == [(2 * sum(1 for spec in fidelity_portal.portal.specs if spec.format == "csv"),)]
