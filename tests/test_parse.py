"""Parsing every format the portal has used, with repairs and quarantine."""

import io

import pytest
from openpyxl import Workbook

from bench.portal_generator import HEADER, build_portal, default_periods
from pipelines.constants import SOURCE_COLUMNS
from pipelines.errors import SourceFormatError
from pipelines.parse import parse_file, repair_shifted

ROW = [
    "8761995",
    "MCOM",
    "413007",
    "AGENCIA NACIONAL DE TELECOMUNICACOES PE",
    "ANATEL-PE",
    "00037/2021",
    "19232342000165",
    "PROACAO SEGURANCA PRIVADA LTD",
    "***.527.284-**",
    "TIAGO MARTINS",
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
    "AGENCIA NACIONAL DE TELECOMUNICACOES",
    "41231",
    "41231",
]


def csv_bytes(rows, header=True, encoding="utf-8", newline="\n"):
    lines = ([";".join(HEADER)] if header else []) + [";".join(r) for r in rows]
    return (newline.join(lines) + newline).encode(encoding)


def with_values(**changes):
    row = list(ROW)
    for name, value in changes.items():
        row[SOURCE_COLUMNS.index(name)] = value
    return row


def test_utf8_values_are_kept_verbatim_as_text():
    sentinels = with_values(
        sg_ug_gestora="",
        nr_jornada="NI  ",
        cd_orgao_siafi="<N/I>",
        cd_orgao_siape="-2",
        nr_contrato="NULL",
        nm_escolaridade="14",
    )
    parsed = parse_file(csv_bytes([ROW, sentinels]), "csv", "t.csv")
    assert parsed.encoding == "utf-8" and parsed.has_header
    assert (parsed.data_rows, parsed.loaded_rows, parsed.quarantine) == (2, 2, [])
    assert list(parsed.rows.columns[:23]) == list(SOURCE_COLUMNS)
    assert parsed.rows.iloc[0, :23].tolist() == ROW
    assert parsed.rows.iloc[1, :23].tolist() == sentinels
    assert parsed.rows["linha_origem"].tolist() == [2, 3]
    # a clean line is already the local CSV's text of its values: kept as published, not re-joined
    assert parsed.records[0] == (";".join(ROW), 2, None)


def test_values_that_need_quoting_reach_the_local_csv_quoted():
    quoted = '"EMPRESA ""ALFA""";' + ";".join(ROW[1:])
    bare_cr = ";".join(with_values(nm_terceirizado="ANA\rMARIA"))
    parsed = parse_file((";".join(HEADER) + "\n" + quoted + "\n" + bare_cr + "\n").encode(), "csv", "q.csv")
    assert [text.split(";")[0] for text, _, _ in parsed.records] == ['"EMPRESA ""ALFA"""', "8761995"]
    assert '"ANA\rMARIA"' in parsed.records[1][0]
    assert parsed.rows["id_terc"].tolist() == ['EMPRESA "ALFA"', "8761995"]
    assert parsed.rows["nm_terceirizado"].tolist() == ["TIAGO MARTINS", "ANA\rMARIA"]


def test_bom_and_cp1252_and_crlf():
    bom = parse_file(b"\xef\xbb\xbf" + csv_bytes([ROW]), "csv", "bom.csv")
    assert bom.encoding == "utf-8-sig" and bom.rows["id_terc"].tolist() == ["8761995"]
    accented = with_values(nm_terceirizado="JOSÉ DA CONCEIÇÃO", nr_contrato="Nº 12/2020")
    latin = parse_file(csv_bytes([accented], encoding="cp1252", newline="\r\n"), "csv", "latin.csv")
    assert latin.encoding == "cp1252"
    assert latin.rows["nm_terceirizado"].tolist() == ["JOSÉ DA CONCEIÇÃO"]
    assert latin.rows["nr_contrato"].tolist() == ["Nº 12/2020"]
    assert latin.rows["cd_orgao_siape"].tolist() == ["41231"]  # no '\r' left at the end of the line


def test_file_mixing_utf8_and_cp1252_lines_keeps_both_readable():
    cp1252_line = ";".join(with_values(nm_terceirizado="JOÃO")).encode("cp1252")
    content = csv_bytes([with_values(nm_terceirizado="JOSÉ")]) + cp1252_line
    parsed = parse_file(content, "csv", "mixed.csv")
    assert parsed.rows["nm_terceirizado"].tolist() == ["JOSÉ", "JOÃO"]
    assert parsed.encoding.startswith("misto")


def test_headerless_file_uses_the_standard_column_order():
    parsed = parse_file(csv_bytes([ROW, ROW], header=False), "csv", "terceirizados-201901_1.csv")
    assert not parsed.has_header and parsed.data_rows == 2
    assert parsed.rows["id_terc"].tolist() == ["8761995", "8761995"]
    assert parsed.rows["linha_origem"].tolist() == [1, 2]
    assert "sem cabeçalho" in parsed.notes[0]


@pytest.mark.parametrize(
    ("header", "repeated"),
    [
        (True, "\ufeff" + ";".join(HEADER)),  # two exports joined: the second's BOM and header
        (True, ";".join(f'"{name.upper()}"' for name in HEADER)),
        (False, ";".join(HEADER)),
    ],
)
def test_a_header_line_in_the_middle_is_quarantined_not_loaded_as_a_row(header, repeated):
    """It used to be kept as a row (23 fields), then a row of NULLs in staging.transformed."""
    lines = csv_bytes([ROW], header=header).decode("utf-8") + repeated + "\n" + ";".join(ROW) + "\n"
    parsed = parse_file(lines.encode("utf-8"), "csv", "emendado.csv")
    number = 3 if header else 2
    assert parsed.data_rows == 3 and parsed.loaded_rows == 2
    assert [(q.line_number, q.reason) for q in parsed.quarantine] == [
        (number, "cabeçalho repetido no meio do arquivo (dois arquivos emendados?)")
    ]
    assert parsed.rows["id_terc"].tolist() == ["8761995", "8761995"]


def test_a_header_row_in_the_middle_of_a_sheet_is_quarantined():
    workbook = Workbook()
    sheet = workbook.active
    for values in (HEADER, ROW, HEADER, ROW):
        sheet.append(list(values))
    buffer = io.BytesIO()
    workbook.save(buffer)
    parsed = parse_file(buffer.getvalue(), "xlsx", "emendado.xlsx")
    assert (parsed.data_rows, parsed.loaded_rows) == (3, 2)
    assert [q.line_number for q in parsed.quarantine] == [3]


def test_columns_are_mapped_by_header_name_not_position():
    order = list(reversed(range(23)))
    header = ";".join(HEADER[i] for i in order)
    content = (header + "\n" + ";".join(ROW[i] for i in order) + "\n").encode()
    parsed = parse_file(content, "csv", "reordered.csv")
    assert parsed.rows.iloc[0, :23].tolist() == ROW


def test_unexpected_header_is_rejected_with_the_names():
    content = (";".join(HEADER[:-1] + ["cd_novo"]) + "\n" + ";".join(ROW) + "\n").encode()
    with pytest.raises(SourceFormatError, match=r"ausentes \['cd_orgao_siape'\].*desconhecidas \['cd_novo'\]"):
        parse_file(content, "csv", "changed.csv")


def test_shifted_rows_are_repaired_only_when_unambiguous():
    company = with_values(nm_razao_social="PROACAO; FILIAL DF")  # next column is a masked CPF
    name = with_values(nm_terceirizado="TIAGO; MARTINS")  # next column is free text too
    short = ROW[:15]
    blank_fields = [""] * 23
    content = csv_bytes([ROW, company, name, short, blank_fields]) + b"\n\n"
    parsed = parse_file(content, "csv", "shifted.csv")
    assert parsed.data_rows == 5
    assert parsed.loaded_rows + len(parsed.quarantine) == parsed.data_rows
    assert parsed.rows["nm_razao_social"].tolist() == ["PROACAO SEGURANCA PRIVADA LTD", "PROACAO; FILIAL DF"]
    assert parsed.rows["nr_cpf"].tolist() == ["***.527.284-**"] * 2
    assert parsed.repaired_rows == 1
    assert "nm_razao_social" in parsed.rows["observacao_reparo"].iloc[1]
    reasons = {q.line_number: q.reason for q in parsed.quarantine}
    assert set(reasons) == {4, 5, 6}
    assert "não há reparo inequívoco" in reasons[4] and "24 campos" in reasons[4]
    assert "linha incompleta" in reasons[5] and "sem nenhum valor" in reasons[6]
    assert parsed.quarantine[0].raw_line == ";".join(name)


def test_a_shifted_row_with_an_alphanumeric_cnpj_is_repaired_like_one_with_digits():
    """The repair reads a row only if each column has its kind of value: an alphanumeric CNPJ
    (issued from July 2026) is a CNPJ, so the row is repaired, not quarantined."""
    for cnpj in ("12.ABC.345/01DE-35", "12ABC34501DE35"):
        row = with_values(nr_cnpj=cnpj, nm_razao_social="PROACAO; FILIAL DF")
        parsed = parse_file(csv_bytes([row]), "csv", "alfanumerico.csv")
        assert (parsed.loaded_rows, parsed.repaired_rows, parsed.quarantine) == (1, 1, [])
        assert parsed.rows[["nr_cnpj", "nm_razao_social"]].values.tolist() == [[cnpj, "PROACAO; FILIAL DF"]]


def test_repair_never_moves_values_into_structured_columns():
    fields = list(ROW)
    fields[14:15] = ["2524", "37"]  # a decimal comma read as separator: which half is the cost?
    assert repair_shifted(fields, list(SOURCE_COLUMNS)) is None


def test_quoted_fields_and_nul_bytes():
    quoted = with_values(nm_razao_social='"EMPRESA; COM ASPAS LTDA"')
    nul = with_values(nm_terceirizado="A\x00B")
    parsed = parse_file(csv_bytes([quoted, nul]), "csv", "q.csv")
    assert parsed.rows["nm_razao_social"].tolist() == ["EMPRESA; COM ASPAS LTDA"]
    assert [q.reason for q in parsed.quarantine] == ["caractere NUL na linha"]


def test_xlsx_numbers_become_text_without_decimal_point():
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(HEADER)
    sheet.append(
        [
            8761995,
            "MCOM",
            20001,
            "FUNASA",
            None,
            "00037/2021",
            588541000182,
            "IPANEMA",
            "***.527.284-**",
            "TIAGO",
            "517330 - VIGILANTE",
            14,
            "NI",
            "SEDE",
            2524.37,
            5838,
            5,
            "MAIO",
            2024,
            "FUNASA",
            "FUNDACAO",
            36211,
            -2,
        ]
    )
    sheet.append([None] * 23)
    buffer = io.BytesIO()
    workbook.save(buffer)
    parsed = parse_file(buffer.getvalue(), "xlsx", "t.xlsx")
    assert parsed.data_rows == 1 and parsed.encoding == "xlsx"
    row = parsed.rows.iloc[0]
    assert (row.id_terc, row.cd_ug_gestora, row.nr_cnpj, row.sg_ug_gestora) == ("8761995", "20001", "588541000182", "")
    assert (row.vl_mensal_salario, row.vl_mensal_custo, row.nm_escolaridade, row.cd_orgao_siape) == (
        "2524.37",
        "5838",
        "14",
        "-2",
    )


def test_every_generated_period_parses_to_its_expected_rows(tmp_path):
    portal = build_portal(tmp_path, default_periods(), rows=25)
    for spec in portal.specs:
        expected = portal.expectations[spec.label]
        content = (tmp_path / "cgu/terceirizados/arquivos" / spec.file_name).read_bytes()
        parsed = parse_file(content, spec.format, spec.file_name)
        assert parsed.rows.iloc[:, :23].values.tolist() == expected.loaded, spec.label
        assert [q.line_number for q in parsed.quarantine] == expected.quarantined_lines, spec.label
        assert parsed.repaired_rows == expected.repaired_rows, spec.label
        assert parsed.data_rows == expected.data_rows == 25


def test_trailing_semicolon_is_dropped_not_glued_into_the_organ_columns():
    """Issue 11: a line ending in one extra ';' used to be 'repaired' by gluing sg_orgao
    and nm_orgao, shifting every code left (nm_orgao='30211', cd_orgao_siape='')."""
    cade = with_values(
        sg_orgao="CADE", nm_orgao="CONSELHO ADMINISTRATIVO", cd_orgao_siafi="30211", cd_orgao_siape="30211"
    )
    content = (";".join(HEADER) + "\n" + ";".join(cade) + ";\n").encode()
    parsed = parse_file(content, "csv", "trailing.csv")
    assert (parsed.data_rows, parsed.loaded_rows, parsed.quarantine) == (1, 1, [])
    assert parsed.rows.iloc[0, :23].tolist() == cade
    assert "fim da linha" in parsed.records[0][2]


def test_a_stray_separator_is_dropped_only_when_no_other_reading_exists():
    # between the load month's number and name: dropping the empty field is the only reading
    fields = list(ROW)
    fields.insert(17, "")
    parsed = parse_file(csv_bytes([fields]), "csv", "boundary.csv")
    assert parsed.rows.iloc[0, :23].tolist() == ROW
    assert parsed.records[0][2] == "';' a mais entre num_mes_carga e mes_carga: campo vazio descartado"
    # next to nm_orgao the empty field could only be an empty nm_orgao after a sg_orgao holding
    # a ';', and the organ's acronym and name come together: dropped too
    fields = list(ROW)
    fields.insert(21, "")
    assert repair_shifted(fields, list(SOURCE_COLUMNS)) == (
        ROW,
        "';' a mais entre nm_orgao e cd_orgao_siafi: campo vazio descartado",
    )
    # between the codes it could also be an empty SIAFI code after 'AGENCIA ...;41231' in nm_orgao
    fields = list(ROW)
    fields.insert(22, "")
    assert repair_shifted(fields, list(SOURCE_COLUMNS)) is None
    # with an empty SIAPE code (and so no organ) the stray field could be either code's: ambiguous
    ambiguous = with_values(sg_orgao="", nm_orgao="", cd_orgao_siafi="30211", cd_orgao_siape="")
    ambiguous.insert(21, "")
    parsed = parse_file(csv_bytes([ambiguous]), "csv", "ambiguous.csv")
    assert parsed.loaded_rows == 0 and parsed.quarantine[0].raw_line == ";".join(ambiguous)


def test_glued_fragments_never_swallow_a_neighbouring_code():
    # 'AGENCIA;41231' as nm_orgao would move both codes one column left
    for tail in (["41231", "41231", ""], ["<N/I>", "-2", ""], ["-2", "-2", ""]):
        fields = ROW[:21] + tail
        repaired = repair_shifted(fields, list(SOURCE_COLUMNS))
        assert repaired is not None and repaired[0] == fields[:23], tail


# -- one row per worker (pipelines.parse.one_row_per_worker) ------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pipelines.parse import TRIMMED, parse_for_load  # noqa: E402


def csv_of(rows):
    return ("\n".join([";".join(HEADER), *(";".join(row) for row in rows)]) + "\n").encode()


def with_id(id_terc, **values):
    return [id_terc if name == "id_terc" else values.get(name, value) for name, value in zip(SOURCE_COLUMNS, ROW)]


def test_rows_that_could_never_be_published_are_quarantined_with_the_reason():
    rows = [
        with_id("1"),
        with_id("2"),
        with_id("2"),  # line 4: the same as line 3, value for value
        with_id("3", nm_terceirizado="ANA"),
        with_id("3\u00a0", nm_terceirizado="BIA"),  # the same id once trimmed, other values
        with_id(" NI "),
        with_id(""),
        with_id("4\u200b"),  # a zero-width space is not trimmed (nor by the cleaning): not a number
        with_id("4"),
        with_id("5", nm_terceirizado=" ANA"),
        with_id(" 5", nm_terceirizado="ANA\u00a0"),  # line 12: the same as line 11 once trimmed
    ]
    parsed = parse_for_load(csv_of(rows), "csv", "f.csv")
    assert parsed.data_rows == 11 and parsed.loaded_rows + len(parsed.quarantine) == 11
    assert [line for _, line, _ in parsed.records] == [2, 3, 10, 11]
    assert [(q.line_number, q.reason) for q in parsed.quarantine] == [
        (4, "linha repetida: igual à linha 3"),
        (5, "id_terc '3' repetido nas linhas 5, 6 com valores diferentes: não se sabe qual vale"),
        (6, "id_terc '3' repetido nas linhas 5, 6 com valores diferentes: não se sabe qual vale"),
        (7, "linha sem id_terc (vazio ou marcador de sem valor): não pode ser publicada"),
        (8, "linha sem id_terc (vazio ou marcador de sem valor): não pode ser publicada"),
        (9, "id_terc '4\\u200b' não é um número (uma linha de total?): não pode ser publicada"),
        (12, "linha repetida: igual à linha 11 a menos de espaços nas pontas dos valores"),
    ]
    assert parsed.quarantine[0].raw_line == ";".join(with_id("2"))
    plain = parse_file(csv_of(rows), "csv", "f.csv")  # parse_file alone: every line as it parses
    assert plain.loaded_rows == 11


def test_an_xlsx_id_stored_as_number_and_as_text_is_the_same_worker():
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(HEADER)
    sheet.append([8761995, *ROW[1:]])
    sheet.append(["8761995", *ROW[1:12], "40", *ROW[13:]])
    buffer = io.BytesIO()
    workbook.save(buffer)
    parsed = parse_for_load(buffer.getvalue(), "xlsx", "f.xlsx")
    assert parsed.loaded_rows == 0
    assert [q.line_number for q in parsed.quarantine] == [2, 3]
    assert "repetido nas linhas 2, 3" in parsed.quarantine[0].reason


def test_the_trimmed_characters_are_those_the_cleaning_trims():
    import re
    from pathlib import Path

    macro = (Path(__file__).resolve().parent.parent / "queries" / "macros" / "cleaning.sql").read_text()
    [literal] = re.findall(r"macro whitespace\(\) -%}\s*E'([^']*)'", macro)
    assert set(literal.encode().decode("unicode_escape")) == set(TRIMMED)


IDS = st.sampled_from(["1", "2", "3", " 1", "1\u00a0", "2\t", "", "NI", " NULL ", "<N/I>", "4\u200b"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(IDS, st.sampled_from(["ANA", "BIA"])), min_size=1, max_size=12))
def test_what_is_loaded_has_one_row_per_worker_and_nothing_is_lost(rows):
    parsed = parse_for_load(csv_of([with_id(id_terc, nm_terceirizado=name) for id_terc, name in rows]), "csv", "f.csv")
    key = {number: id_terc.strip(TRIMMED) for number, (id_terc, _) in enumerate(rows, start=2)}
    loaded = [line for _, line, _ in parsed.records]
    quarantined = {q.line_number for q in parsed.quarantine}
    assert sorted(loaded + list(quarantined)) == list(range(2, len(rows) + 2))  # every line, once
    assert all(key[line] not in ("", "NI", "NULL", "<N/I>") for line in loaded)
    assert len({key[line] for line in loaded}) == len(loaded)  # one row per worker
    for id_value in {key[line] for line in key}:
        lines = [line for line in key if key[line] == id_value]
        cleaned = {(key[line], rows[line - 2][1]) for line in lines}  # the row as the cleaning trims it
        if id_value in ("", "NI", "NULL", "<N/I>") or not id_value.isdigit() or len(cleaned) > 1:
            assert not set(lines) & set(loaded)  # no id, not a number, or other values: none loaded
        else:
            assert [line for line in lines if line in loaded] == lines[:1]  # repeated rows: the first


def test_a_value_too_long_for_an_index_is_quarantined():
    from pipelines.parse import MAX_VALUE_CHARACTERS

    rows = [
        with_id("1", nm_razao_social="E" * MAX_VALUE_CHARACTERS),  # the longest accepted
        with_id("2", nm_razao_social="E" * (MAX_VALUE_CHARACTERS + 1)),
        with_id("3", nr_contrato="9" * 3000, nm_terceirizado="Ç" * 1200),
        with_id("4", nm_terceirizado="ANA"),
    ]
    parsed = parse_for_load(csv_of(rows), "csv", "f.csv")
    assert [line for _, line, _ in parsed.records] == [2, 5]
    assert [(q.line_number, q.reason) for q in parsed.quarantine] == [
        (3, "valor com mais de 500 caracteres: nm_razao_social (501)"),
        (4, "valor com mais de 500 caracteres: nr_contrato (3000), nm_terceirizado (1200)"),
    ]


def test_a_value_past_the_csv_modules_own_limit_is_quarantined_not_a_crash():
    """csv.reader refuses a field of more than 131,072 characters (csv.field_size_limit)."""
    rows = [with_id("1", nm_terceirizado="A" * 140_000), with_id("2", nm_razao_social='"' + "B" * 140_000 + '"')]
    parsed = parse_for_load(csv_of(rows), "csv", "f.csv")
    assert parsed.loaded_rows == 0
    assert [q.line_number for q in parsed.quarantine] == [2, 3]
    assert parsed.quarantine[0].reason == "valor com mais de 500 caracteres: nm_terceirizado (140000)"
    assert parsed.quarantine[1].reason.startswith("valor com mais de 500 caracteres: ")


# -- headers that are not the expected one, and rows that are not workers (hostile re-test, 2026-11-30) --


def _header_failure(content: bytes) -> str:
    with pytest.raises(SourceFormatError) as failure:
        parse_for_load(content, "csv", "terceirizados202405.csv")
    return str(failure.value)


def test_an_unrecognised_header_fails_instead_of_being_loaded_as_a_worker():
    """A header of readable names ('Coluna 1 Id Terc', ...) used to be taken for a header-less
    file: the header line became a worker and the columns were assumed in the standard order."""
    readable = [f"Coluna {i} {name.replace('_', ' ').title()}" for i, name in enumerate(HEADER, start=1)]
    message = _header_failure((";".join(readable) + "\n" + ";".join(ROW) + "\n").encode())
    assert "terceirizados202405.csv" in message
    assert "primeira linha" in message and "Coluna 1 Id Terc" in message
    assert len(message) < 1500


def test_a_renamed_header_with_few_known_names_fails_naming_them():
    # salary and cost swapped under new names: only 8 of the 23 names are known
    header = list(HEADER)
    for position in range(8, 23):
        header[position] = f"campo_{position}"
    content = (";".join(header) + "\n" + ";".join(ROW) + "\n").encode()
    message = _header_failure(content)
    assert "campo_8" in message and "id_terc" in message


def test_an_excel_separator_hint_before_a_reordered_header_is_skipped():
    order = list(range(23))
    order[14], order[15] = 15, 14  # cost before salary
    header = [HEADER[i] for i in order]
    row = [ROW[i] for i in order]
    content = ("sep=;\n" + ";".join(header) + "\n" + ";".join(row) + "\n").encode()
    parsed = parse_for_load(content, "csv", "hint.csv")
    assert parsed.has_header and parsed.quarantine == []
    assert parsed.rows.iloc[0, :23].tolist() == ROW
    assert parsed.rows["vl_mensal_salario"].tolist() == ["2524,37"]


def test_a_title_line_before_the_header_fails():
    content = ("Terceirizados - maio de 2024\n" + ";".join(HEADER) + "\n" + ";".join(ROW) + "\n").encode()
    assert "Terceirizados - maio de 2024" in _header_failure(content)


def test_a_total_row_is_quarantined_not_loaded_as_a_worker():
    total = with_values(id_terc="TOTAL GERAL", vl_mensal_salario="5048,74", vl_mensal_custo="11676,20")
    parsed = parse_for_load(csv_bytes([ROW, total]), "csv", "total.csv")
    assert parsed.rows["id_terc"].tolist() == ["8761995"]
    assert [(q.line_number, q.reason) for q in parsed.quarantine] == [
        (3, "id_terc 'TOTAL GERAL' não é um número (uma linha de total?): não pode ser publicada")
    ]


def test_a_trailing_separator_on_the_header_and_every_line_loads():
    content = ";".join(HEADER) + ";\n" + ";".join(ROW) + ";\n" + ";".join(ROW).replace("8761995", "8761996") + ";\n"
    parsed = parse_for_load(content.encode(), "csv", "trailing.csv")
    assert (parsed.loaded_rows, parsed.quarantine) == (2, [])
    assert parsed.rows.iloc[0, :23].tolist() == ROW


def test_a_trailing_separator_on_the_header_only_loads():
    content = ";".join(HEADER) + ";\n" + ";".join(ROW) + "\n"
    parsed = parse_for_load(content.encode(), "csv", "trailing.csv")
    assert (parsed.loaded_rows, parsed.quarantine) == (1, [])
    assert parsed.rows.iloc[0, :23].tolist() == ROW


def test_a_file_with_cr_only_line_ends_is_read_line_by_line():
    rows = [with_values(id_terc=str(1000 + i)) for i in range(3000)]
    parsed = parse_for_load(csv_bytes(rows, newline="\r"), "csv", "mac.csv")
    assert (parsed.loaded_rows, parsed.quarantine) == (3000, [])
    assert parsed.rows["id_terc"].tolist()[-1] == "3999"


def test_a_header_of_thousands_of_unknown_names_fails_briefly():
    header = ";".join(HEADER) + ";" + ";".join(f"extra{i}" for i in range(5000))
    message = _header_failure((header + "\n" + ";".join(ROW) + "\n").encode())
    assert "extra0" in message and "e mais 4990" in message
    assert len(message) < 1500


def test_a_stray_cp1252_byte_in_a_utf8_line_keeps_the_line_s_utf8_accents():
    good = ";".join(with_values(nm_terceirizado="JOSÉ DA CONCEIÇÃO")).encode()
    stray = ";".join(with_values(id_terc="8761996", nm_terceirizado="JOSÉ DA CONCEIÇÃO", nr_contrato="Nº 12"))
    stray = stray.encode().replace("Nº".encode(), "Nº".encode("cp1252"))
    content = (";".join(HEADER) + "\n").encode() + good + b"\n" + stray + b"\n"
    parsed = parse_for_load(content, "csv", "mixed.csv")
    assert parsed.rows["nm_terceirizado"].tolist() == ["JOSÉ DA CONCEIÇÃO"] * 2
    assert parsed.rows["nr_contrato"].tolist() == [ROW[5], "Nº 12"]
    assert parsed.encoding.startswith("misto")


@settings(max_examples=150, deadline=None)
@given(
    order=st.permutations(range(23)),
    renamed=st.sets(st.integers(min_value=0, max_value=22), max_size=23),
    spelling=st.sampled_from([str.lower, str.upper, str.title]),
)
def test_a_header_is_either_mapped_column_by_column_or_refused(order, renamed, spelling):
    """Whatever the order and the names of a header: every value lands in its own column, or
    the file is refused. Never a value under another column's name."""
    header = [spelling(HEADER[i]) if i not in renamed else f"coluna_nova_{i}" for i in order]
    row = [f"{ROW[i]}" for i in order]
    content = (";".join(header) + "\n" + ";".join(row) + "\n").encode()
    try:
        parsed = parse_for_load(content, "csv", "any.csv")
    except SourceFormatError:
        assert renamed, "a header of known names only must load"
        return
    assert not renamed
    assert parsed.rows.iloc[0, :23].tolist() == ROW


def _workbook(*sheets, hidden=()):
    """XLSX bytes: each sheet a (title, rows) pair; ``hidden``: titles of hidden sheets."""
    workbook = Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets:
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
        if title in hidden:
            sheet.sheet_state = "hidden"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _rows(first_id, how_many):
    return [with_values(id_terc=str(first_id + i)) for i in range(how_many)]


def test_an_xlsx_reads_its_one_data_sheet_whatever_its_position():
    content = _workbook(("Notas", [["Fonte: CGU"], ["Atualizado em maio"]]), ("Dados", [HEADER, *_rows(1, 3)]))
    parsed = parse_for_load(content, "xlsx", "f.xlsx")
    assert parsed.rows["id_terc"].tolist() == ["1", "2", "3"]
    assert any("Notas" in note for note in parsed.notes)


def test_a_hidden_sheet_is_not_read():
    content = _workbook(("Antiga", [HEADER, *_rows(100, 5)]), ("Dados", [HEADER, *_rows(1, 3)]), hidden=("Antiga",))
    parsed = parse_for_load(content, "xlsx", "f.xlsx")
    assert parsed.rows["id_terc"].tolist() == ["1", "2", "3"]
    assert any("Antiga" in note and "oculta" in note for note in parsed.notes)


def test_an_xlsx_with_two_data_sheets_fails_naming_them():
    content = _workbook(("Plan1", [HEADER, *_rows(1, 3)]), ("Plan2", [HEADER, *_rows(4, 2)]))
    with pytest.raises(SourceFormatError, match=r"2 planilhas.*'Plan1', 'Plan2'"):
        parse_for_load(content, "xlsx", "f.xlsx")


def test_an_xlsx_without_a_data_sheet_names_its_sheets():
    content = _workbook(("Notas", [["Fonte: CGU"]]), ("Resumo", [["Total", 3]]))
    with pytest.raises(SourceFormatError, match=r"'Notas', 'Resumo'"):
        parse_for_load(content, "xlsx", "f.xlsx")


def test_a_row_too_long_for_the_analysis_keys_is_quarantined():
    """The marts' key of a contract and organ (UG, contract, CNPJ, and the organ's three
    names, as JSON) must fit a B-tree entry (2,704 bytes): a row with three organ names of
    500 four-byte characters (each under the 500-character limit) loaded, and then every
    historic materialization failed on 'index row size 6072 exceeds btree version 4 maximum'."""
    wide = "\U0001f600" * 450
    too_long = with_values(id_terc="8761996", sg_orgao_sup_tabela_ug=wide, sg_orgao=wide, nm_orgao=wide)
    long_but_fitting = with_values(id_terc="8761997", nm_orgao="Á" * 500)
    parsed = parse_for_load(csv_bytes([ROW, too_long, long_but_fitting]), "csv", "f.csv")
    assert parsed.rows["id_terc"].tolist() == ["8761995", "8761997"]
    [line] = parsed.quarantine
    assert line.line_number == 3 and "chave das tabelas de análise" in line.reason and "bytes" in line.reason


def test_a_zip_or_xlsx_under_a_csv_link_is_named():
    workbook = _workbook(("Dados", [HEADER, *_rows(1, 2)]))
    with pytest.raises(SourceFormatError, match=r"f\.csv é um arquivo ZIP \(um XLSX\?\), não um CSV"):
        parse_for_load(workbook, "csv", "f.csv")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_a_utf16_csv_with_its_bom_is_read(encoding):
    text = ";".join(HEADER) + "\r\n" + ";".join(with_values(nm_terceirizado="JOSÉ DA CONCEIÇÃO")) + "\r\n"
    content = ("\ufeff" + text).encode(encoding) if encoding == "utf-16-be" else text.encode(encoding)
    parsed = parse_for_load(content, "csv", "f.csv")
    assert parsed.rows["nm_terceirizado"].tolist() == ["JOSÉ DA CONCEIÇÃO"] and parsed.encoding == "utf-16"


@pytest.mark.parametrize("title", ["Terceirizados;Maio;2024", "2024", "1;Terceirizados", "202405"])
def test_a_short_title_line_that_looks_like_data_never_hides_the_header(title):
    """A first line with a number or a month and a year was taken for the first row of a
    header-less file: the real header on line 2 went to the quarantine as "repeated" and a
    reordered file was read in the standard order (salary and cost swapped, Success)."""
    order = list(range(23))
    order[14], order[15] = 15, 14
    content = (
        title + "\n" + ";".join(HEADER[i] for i in order) + "\n" + ";".join(ROW[i] for i in order) + "\n"
    ).encode()
    with pytest.raises(SourceFormatError) as raised:
        parse_for_load(content, "csv", "f.csv")
    assert "f.csv" in str(raised.value)


@pytest.mark.parametrize("has_header", [False, True])
def test_a_header_in_another_order_in_the_middle_of_a_file_fails(has_header):
    """Two exports joined, the second with its columns in another order: its rows would be read
    in the first one's order. (The same header again is only quarantined: see above.)"""
    order = list(range(23))
    order[14], order[15] = 15, 14
    second = ";".join(HEADER[i] for i in order) + "\n" + ";".join(with_values(id_terc="8761996")[i] for i in order)
    content = (csv_bytes([ROW], header=has_header).decode() + second + "\n").encode()
    with pytest.raises(SourceFormatError, match=r"linha [23] de f\.csv é um cabeçalho com outra ordem de colunas"):
        parse_for_load(content, "csv", "f.csv")


def test_a_cr_only_file_with_a_stray_lf_is_still_read_line_by_line():
    rows = [with_values(id_terc=str(1000 + i)) for i in range(50)]
    parsed = parse_for_load(csv_bytes(rows, newline="\r") + b"\n", "csv", "mac.csv")
    assert (parsed.loaded_rows, parsed.quarantine) == (50, [])


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_a_utf16_csv_without_bom_is_read(encoding):
    text = ";".join(HEADER) + "\r\n" + ";".join(with_values(nm_terceirizado="JOSÉ")) + "\r\n"
    parsed = parse_for_load(text.encode(encoding), "csv", "f.csv")
    assert parsed.rows["nm_terceirizado"].tolist() == ["JOSÉ"]


@pytest.mark.parametrize("hint", ['"sep=;"', "sep=;;;;;", "SEP=;"])
def test_excel_separator_hints_in_other_spellings_are_skipped(hint):
    parsed = parse_for_load((hint + "\n").encode() + csv_bytes([ROW]), "csv", "f.csv")
    assert parsed.rows["id_terc"].tolist() == ["8761995"]


def test_a_utf16_csv_without_bom_and_with_accents_early_is_read():
    text = ";".join(with_values(sg_orgao_sup_tabela_ug="MINISTÉRIO", nm_terceirizado="JOSÉ")) + "\r\n"
    parsed = parse_for_load(text.encode("utf-16-le"), "csv", "terceirizados-201901_1.csv")
    assert parsed.rows["nm_terceirizado"].tolist() == ["JOSÉ"] and not parsed.has_header


def test_a_short_first_line_is_named_as_such():
    content = ("2024\n" + ";".join(HEADER) + "\n" + ";".join(ROW) + "\n").encode()
    with pytest.raises(SourceFormatError, match=r"A primeira linha de f\.csv tem só 1 campo\(s\) \(um título\?\)"):
        parse_for_load(content, "csv", "f.csv")
