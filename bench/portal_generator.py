"""A synthetic copy of the CGU portal: the page and its CSV/XLSX files, with the
quirks of the real source, plus what a correct capture must load from them.

Used by the tests (small portals), by the benchmark (full-size portals) and by the
offline demo. Value distributions follow what has been published about the real files:
the CGU's data dictionary for the columns and their formats, and the value counts of the
2024-05 XLSX (``nr_jornada``, ``nm_escolaridade``, distinct organs and companies) and of
the consolidated 2010-2023 CSV (sentinels ``<N/I>``, ``-1``, ``-2`` in the SIAFI/SIAPE
codes, rows per year) printed in public exploratory notebooks of those files.

Quirks reproduced: ``;`` CSV in UTF-8, UTF-8 with BOM, cp1252 with CRLF; a header-less
file (2019-01); XLSX with numeric cells (leading zeros lost); decimal commas in older
CSVs; sentinels (``<N/I>``, ``NI``, ``NI  ``, ``NULL``, ``-1``, ``-2``, empty cells);
escolaridade values 14-52; stale ``Ano_Carga``; a repairable shifted row (``;`` in the
company name), an ambiguous shifted row (``;`` in the worker name) and a short row,
both to be quarantined; on the page, a PDF link, an empty ``<h3>``, a year block
repeated and a period linked under two file names.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from pipelines.constants import MONTH_NAMES, SOURCE_COLUMNS
from pipelines.demo import FILES_PATH, PeriodSpec, Portal, PortalServer
from pipelines.parse import cell_text

HEADER = [
    {"num_mes_carga": "Num_Mes_Carga", "mes_carga": "Mes_Carga", "ano_carga": "Ano_Carga"}.get(c, c)
    for c in SOURCE_COLUMNS
]

# (sg_orgao_sup_tabela_ug, cd_ug_gestora, nm_ug_tabela_ug, sg_ug_gestora, sg_orgao, nm_orgao, siafi, siape)
AGENCIES = [
    (
        "MCOM",
        "413007",
        "AGENCIA NACIONAL DE TELECOMUNICACOES PE",
        "ANATEL-PE",
        "ANATEL",
        "AGENCIA NACIONAL DE TELECOMUNICACOES",
        "41231",
        "41231",
    ),
    (
        "MEC",
        "153061",
        "UNIVERSIDADE FEDERAL DE JUIZ DE FORA",
        "UFJF",
        "UFJF",
        "UNIVERSIDADE FEDERAL DE JUIZ DE FORA",
        "26237",
        "26237",
    ),
    (
        "MEC",
        "153115",
        "UNIVERSIDADE FEDERAL DO ESTADO DO RIO DE JANEIRO",
        "UFRJ",
        "UFRJ",
        "UNIVERSIDADE FEDERAL DO RIO DE JANEIRO",
        "26245",
        "26245",
    ),
    (
        "MEC",
        "153079",
        "UNIVERSIDADE FEDERAL DO PARANA",
        "UFPR",
        "UFPR",
        "UNIVERSIDADE FEDERAL DO PARANA",
        "26241",
        "26241",
    ),
    (
        "MDSA",
        "511325",
        "GERENCIA EXECUTIVA SAO PAULO CENTRO",
        "GEX/SP-CENTRO",
        "INSS",
        "INSTITUTO NACIONAL DO SEGURO SOCIAL",
        "37202",
        "57202",
    ),
    (
        "MAPA",
        "130005",
        "COORDENACAO-GERAL DE RECURSOS LOGISTICOS",
        "CGOEF/DA/SE/MAPA",
        "MIN.AGRICULTURA",
        "MINIST. DA AGRICUL.,PECUARIA E ABASTECIMENTO",
        "22000",
        "13000",
    ),
    (
        "MDA",
        "490011",
        "MINISTERIO DO DESENVOLVIMENTO AGRARIO - ADMINISTRACAO DIRETA",
        "MDA-ADM. DIRETA",
        "MDA",
        "MINISTERIO DO DESENVOLVIMENTO AGRARIO",
        "49000",
        "42000",
    ),
    ("MT", "393033", "SUPERINTENDENCIA REGIONAL NO ESTADO DO PARANA", "", "<N/I>", "<N/I>", "-2", "-2"),
    (
        "MS",
        "020001",
        "FUNDACAO NACIONAL DE SAUDE - SEDE",
        "FUNASA",
        "FUNASA",
        "FUNDACAO NACIONAL DE SAUDE",
        "36211",
        "36211",
    ),
    ("ME", "170013", "SECRETARIA DO TESOURO NACIONAL", "STN", "ME", "MINISTERIO DA ECONOMIA", "<N/I>", "-1"),
]
COMPANIES = [
    ("19232342000165", "PROACAO SEGURANCA PRIVADA LTD"),
    ("02633573000188", "AJ SERVICOS LTDA"),
    ("03822268000177", "SERVAL- SERVICOS AUXILIARES LTDA"),
    ("03767254000140", "AGILE SERVICOS GERAIS LTDA"),
    ("00588541000182", "IPANEMA EMPRESA DE SERVICOS GERAIS E TRANSPORTES LTDA"),
    ("04552404000149", "ADCON ADMINISTRACAO E CONSERVACAO EIRELI"),
    ("09445502000109", "SOLUCOES SERVICOS TERCEIRIZADOS EIRELI"),
    ("79283065000303", "ORBENK ADMINISTRACAO E SERVICOS LTDA"),
    ("50400407000184", "PROVAC TERCEIRIZACAO DE MAO DE OBRA LTDA"),
]
CATEGORIES = [
    ("517330 - VIGILANTE", 342),
    ("514320 - FAXINEIRO", 330),
    ("VIGILANTE", 277),
    ("SERVENTE", 102),
    ("AUXILIAR DE SERVICOS GERAIS", 101),
    ("422105 - RECEPCIONISTA, EM GERAL", 98),
    ("411010 - ASSISTENTE ADMINISTRATIVO", 79),
    ("411005 - AUXILIAR DE ESCRITORIO", 77),
    ("RECEPCIONISTA", 75),
    ("517410 - PORTEIRO DE EDIFICIOS", 43),
    ("782305 - MOTORISTA DE CARRO DE PASSEIO", 23),
    ("5173 - VIGILANTES E GUARDAS DE SEGURANCA", 17),
    ("252105 - ADMINISTRADOR", 17),
]
EDUCATION = [
    ("ENSINO MEDIO COMPLETO", 33270),
    ("ENSINO FUNDAMENTAL COMPLETO", 16754),
    ("SUPERIOR COMPLETO", 7598),
    ("ENSINO FUNDAMENTAL INCOMPLETO", 6216),
    ("SEM EXIGENCIA", 5546),
    ("CURSO TECNICO COMPLETO", 1603),
    ("SUPERIOR INCOMPLETO", 992),
    ("ENSINO MEDIO INCOMPLETO", 883),
    ("ALFABETIZADO", 799),
    ("POS GRADUACAO", 53),
    ("ESPECIALIZACAO/RESIDENCIA", 27),
    ("NAO SABE LER/ESCREVER", 20),
    ("MESTRADO", 8),
    ("DOUTORADO", 8),
    ("14", 12),
    ("26", 6),
    ("37", 2),
    ("52", 1),
]
HOURS = [
    ("44", 41412),
    ("40", 11494),
    ("30", 7840),
    ("41", 5929),
    ("36", 4152),
    ("48", 1636),
    ("20", 556),
    ("22", 339),
    ("NI", 5),
    ("NI  ", 3),
]
FIRST = ["MARIA", "JOSE", "ANA", "JOAO", "ANTONIO", "FRANCISCA", "CARLOS", "PAULO", "LUCIA", "TIAGO", "CILENE"]
LAST = ["SILVA", "SANTOS", "OLIVEIRA", "SOUZA", "LIMA", "PEREIRA", "FERREIRA", "ALVES", "MARTINS", "ROCHA"]
ACCENTED_FIRST = ["JOSÉ", "CONCEIÇÃO", "JOÃO", "LÚCIA"]
# row index -> (column position, value): rare values every generated file must contain
FORCED_VALUES = {
    9: (12, "NI"),
    10: (12, "NI  "),
    11: (11, "14"),
    12: (10, "5173 - VIGILANTES E GUARDAS DE SEGURANCA"),
    13: (10, "SERVENTE"),
    14: (10, "517330 - VIGILANTE"),
    15: (10, "422105 - RECEPCIONISTA, EM GERAL"),
}

# Value-fidelity quirks (issue 11), only with ``build_portal(..., fidelity=True)``, for the
# oracle test: row index -> {column position: value}. "{m}" is a money value in the
# period's own style (decimal comma, decimal point or an XLSX number).
FIDELITY_VALUES = {
    20: {13: "\u00a0SEDE\u00a0"},  # NBSP padding
    21: {13: "\tSEDE", 7: "AJ SERVICOS LTDA\r"},  # tab and CR padding
    22: {12: "NI\u00a0"},  # a sentinel with NBSP: no value
    23: {4: " \u2003UFJF\u3000", 9: "\u202fMARIA SILVA\u205f"},  # other Unicode spaces
    24: {14: "{overflow}", 15: "{overflow}"},  # rounds to 10^10: does not fit numeric(12,2)
    25: {14: "{grouped}"},  # thousands and decimal separators: 1234.56
    26: {14: "{ambiguous}"},  # 1.234 / 1,234: thousands or decimals? NULL
    27: {15: "{negative}"},  # -0.50
    28: {14: "{long}"},  # 1234567.891 -> 1234567.89
    29: {11: " 14\u00a0"},  # numeric education with padding: NULL
    30: {6: "\u00a019.232.342/0001-65"},  # formatted CNPJ with NBSP
    31: {2: "20001 "},  # UG code that lost its zero, with a space
    32: {21: "\u2002-2\u2002"},  # SIAFI sentinel with en spaces
    33: {9: "NULL\u00a0"},  # NULL sentinel with NBSP
}
FIDELITY_MONEY = {  # style -> the text of each money quirk
    "comma": {
        "overflow": "9999999999,995",
        "grouped": "1.234,56",
        "ambiguous": "1.234",
        "negative": "-0,5",
        "long": "1.234.567,891",
    },
    "point": {
        "overflow": "9999999999.995",
        "grouped": "1,234.56",
        "ambiguous": "1,234",
        "negative": "-0.5",
        "long": "1,234,567.891",
    },
    "xlsx": {
        "overflow": 9999999999.995,
        "grouped": "1.234,56",
        "ambiguous": "1.234",
        "negative": -0.5,
        "long": 1234567.891,
    },
}
# CSV lines only: a ';' at the end of the line (also with the CADE organ of the issue) and a
# stray ';' between two fields; all three are repaired by dropping the empty field.
FIDELITY_TRAILING = (40, 41)
FIDELITY_STRAY_AT = {42: 17}  # row index -> field position of the stray empty field
FIDELITY_CADE = ("CADE", "CONSELHO ADMINISTRATIVO DE DEFESA ECONOMICA", "30211", "30211")


def _apply_fidelity_values(rows: list[list], spec: PeriodSpec) -> None:
    style = "xlsx" if spec.format == "xlsx" else "comma" if spec.decimal_comma else "point"
    for index, changes in FIDELITY_VALUES.items():
        if index >= len(rows):
            continue
        for position, value in changes.items():
            if value.startswith("{") and value.endswith("}"):
                value = FIDELITY_MONEY[style][value[1:-1]]  # the overflow cost is left out of sum_custo
            elif spec.format == "xlsx":
                value = value.replace("\r", "\t")  # a CR does not survive the XLSX's XML as is
            else:
                value = "".join(c if c.encode(spec.encoding, "ignore") else "\u00a0" for c in value)
            rows[index][position] = value
    if len(rows) > FIDELITY_TRAILING[1] and spec.format != "xlsx":
        rows[FIDELITY_TRAILING[1]][19:23] = list(FIDELITY_CADE)


def default_periods() -> list[PeriodSpec]:
    """Every period the real portal has published (2019-01 .. 2026-09), each with its real quirks."""
    specs = [
        PeriodSpec(2019, 1, "terceirizados-201901_1.csv", header=False, decimal_comma=True),
        PeriodSpec(2019, 5, "terceirizados_201905.csv", decimal_comma=True),
        PeriodSpec(2019, 9, "terceirizados_201909.csv", decimal_comma=True),
        PeriodSpec(2020, 1, "terceirizados_202001.csv", decimal_comma=True),
        PeriodSpec(2020, 5, "terceirizados_202005.csv", decimal_comma=True),
        PeriodSpec(2020, 9, "terceirizados_202009.csv", decimal_comma=True),
        PeriodSpec(2021, 1, "terceirizados_202101.csv", encoding="utf-8-sig", decimal_comma=True),
        PeriodSpec(2021, 5, "terceirizados-202105.csv", decimal_comma=True),
        PeriodSpec(2021, 9, "terceirizados202109.csv", decimal_comma=True),
        PeriodSpec(2022, 1, "terceirizados202201.csv", encoding="cp1252", crlf=True, decimal_comma=True),
        PeriodSpec(2022, 5, "terceirizados202205.csv", encoding="cp1252", crlf=True, decimal_comma=True),
        PeriodSpec(2022, 9, "terceirizados202209.csv", encoding="cp1252", crlf=True, decimal_comma=True),
        PeriodSpec(2023, 1, "terceirizados202301.csv"),
        PeriodSpec(2023, 5, "terceirizados202305.csv"),
        PeriodSpec(2023, 9, "terceirizados202309.csv"),
    ]
    for year in (2024, 2025, 2026):
        specs += [PeriodSpec(year, m, f"terceirizados{year}{m:02d}.xlsx", format="xlsx") for m in (1, 5, 9)]
    return specs


def small_periods() -> list[PeriodSpec]:
    """One period of each format and quirk: the tests' default portal."""
    by_label = {s.label: s for s in default_periods()}
    return [by_label[label] for label in ("2019-01", "2021-01", "2022-05", "2023-09", "2024-05")]


def sample_periods() -> list[PeriodSpec]:
    """The offline demo's portal (pipelines/demo/portal): every format and quirk, including the
    period linked under two file names (2019-09), and the newest period in XLSX."""
    by_label = {s.label: s for s in default_periods()}
    return [by_label[label] for label in ("2019-01", "2019-09", "2021-01", "2022-05", "2023-09", "2024-01", "2024-05")]


def _weighted(rng: random.Random, pairs):
    values, weights = zip(*pairs)
    return lambda: rng.choices(values, weights)[0]


def _money(value: float, spec: PeriodSpec) -> object:
    if spec.format == "xlsx":
        return round(value, 2)
    text = f"{value:.2f}"
    return text.replace(".", ",") if spec.decimal_comma else text


def _cpf(rng: random.Random) -> str:
    return f"***.{rng.randint(0, 999):03d}.{rng.randint(0, 999):03d}-**"


def generate_rows(spec: PeriodSpec, count: int, seed: int) -> list[list]:
    """Logical rows for one period: cell values (text, or numbers for XLSX)."""
    rng = random.Random(seed * 1000 + spec.year * 12 + spec.month)
    category = _weighted(rng, CATEGORIES)
    education = _weighted(rng, EDUCATION)
    hours = _weighted(rng, HOURS)
    xlsx = spec.format == "xlsx"
    first_names = FIRST + (ACCENTED_FIRST if spec.encoding == "cp1252" else [])
    base_id = 7_000_000 + (spec.year - 2019) * 300_000 + spec.month * 20_000
    rows = []
    for index in range(count):
        agency = AGENCIES[index % len(AGENCIES)] if index < len(AGENCIES) else rng.choice(AGENCIES)
        cnpj, company = COMPANIES[index] if index < len(COMPANIES) else rng.choice(COMPANIES)
        salary = round(rng.uniform(1320, 6500), 2)
        cost = round(salary * rng.uniform(1.8, 2.6), 2)
        load_year = spec.year - 1 if index % 97 == 5 else spec.year  # stale Ano_Carga inside the file
        contract = f"{rng.randint(1, 150):03d}/{rng.randint(2015, spec.year)}"
        if spec.encoding == "cp1252" and index % 11 == 0:
            contract = f"Nº {contract}"
        row = [
            base_id + index,
            agency[0],
            agency[1],
            agency[2],
            agency[3],
            contract,
            cnpj,
            company,
            _cpf(rng),
            f"{rng.choice(first_names)} {rng.choice(LAST)} {rng.choice(LAST)}",
            category(),
            education(),
            hours(),
            rng.choice(["SEDE", "CAMPUS CENTRO", "GERENCIA REGIONAL", ""]) if index % 23 else "",
            _money(salary, spec),
            _money(cost, spec),
            spec.month,
            MONTH_NAMES[spec.month],
            load_year,
            agency[4],
            agency[5],
            agency[6],
            agency[7],
        ]
        if index % 53 == 7:
            row[5] = "NULL"
        if index in FORCED_VALUES:  # rare real values, present even in small files
            position, value = FORCED_VALUES[index]
            row[position] = value
        if xlsx:  # numeric cells where the portal has numbers: leading zeros are lost
            for position in (0, 2, 6, 16, 18, 21, 22):
                text = str(row[position])
                if text.lstrip("-").isdigit():
                    row[position] = int(text)
            if str(row[12]).isdigit():
                row[12] = int(row[12])
            if str(row[11]).isdigit():
                row[11] = int(row[11])
        else:
            row = [str(value) for value in row]
        rows.append(row)
    return rows


@dataclass
class PeriodExpectation:
    """What a correct capture of one period loads."""

    label: str
    file_name: str
    format: str
    data_rows: int
    loaded_rows: int
    repaired_rows: int
    quarantined_lines: list[int]
    sum_custo: str  # sum of vl_mensal_custo over loaded rows, as a decimal string
    loaded: list[list[str]] = field(default_factory=list, repr=False)  # raw text rows, small portals only


def _as_decimal(text: str) -> Decimal:
    return Decimal(text.replace(",", "."))


def write_period(
    spec: PeriodSpec, directory: Path, count: int, seed: int, keep_rows: bool, fidelity: bool = False
) -> PeriodExpectation:
    rows = generate_rows(spec, count, seed)
    if fidelity:
        _apply_fidelity_values(rows, spec)
    expected_text = [[cell_text(v) if spec.format == "xlsx" else v for v in row] for row in rows]
    repaired, quarantined = 0, []
    path = directory / spec.file_name
    if spec.format == "xlsx":
        from openpyxl import Workbook

        workbook = Workbook(write_only=True)
        sheet = workbook.create_sheet("Plan1")
        sheet.append(HEADER)
        stray_at = 3 if spec.quirk_rows and count > 5 else None
        for index, row in enumerate(rows):
            if index == stray_at:
                sheet.append(row + ["", "", "conferir contrato"])  # note typed right of the table
                quarantined.append(index + 2)
            else:
                sheet.append(row)
        workbook.save(path)
        kept = [r for i, r in enumerate(expected_text) if i != stray_at]
    else:
        lines = [";".join(HEADER)] if spec.header else []
        kept = []
        offset = 2 if spec.header else 1
        for index, row in enumerate(expected_text):
            fields = list(row)
            if spec.quirk_rows and index == 2:  # ';' inside the company name: repairable
                fields[7] = fields[7].split(" ")[0] + "; FILIAL DF"
                repaired += 1
                kept.append(fields)
            elif spec.quirk_rows and index == 4:  # ';' inside the worker name: ambiguous
                fields[9] = fields[9].replace(" ", "; ", 1)
                quarantined.append(index + offset)
            elif spec.quirk_rows and index == 6:  # truncated line
                fields = fields[:15]
                quarantined.append(index + offset)
            elif fidelity and (index in FIDELITY_TRAILING or index in FIDELITY_STRAY_AT):
                kept.append(list(fields))
                repaired += 1
                if index in FIDELITY_TRAILING:
                    fields = fields + [""]
                else:
                    fields = fields[: FIDELITY_STRAY_AT[index]] + [""] + fields[FIDELITY_STRAY_AT[index] :]
            else:
                kept.append(fields)
            lines.append(";".join(fields))
        newline = "\r\n" if spec.crlf else "\n"
        path.write_bytes((newline.join(lines) + newline).encode(spec.encoding))
    total_cost = sum(
        (
            _as_decimal(r[15])
            for r in kept
            if not (fidelity and r[15] in (FIDELITY_MONEY["comma"]["overflow"], FIDELITY_MONEY["point"]["overflow"]))
        ),
        Decimal("0"),
    )
    return PeriodExpectation(
        label=spec.label,
        file_name=spec.file_name,
        format=spec.format,
        data_rows=count,
        loaded_rows=len(kept),
        repaired_rows=repaired,
        quarantined_lines=quarantined,
        sum_custo=str(total_cost),
        loaded=kept if keep_rows else [],
    )


def build_portal(
    root: Path,
    specs: list[PeriodSpec] | None = None,
    rows: int = 60,
    seed: int = 1,
    keep_rows: bool = True,
    fidelity: bool = False,
) -> Portal:
    """Write the files of a synthetic portal under ``root`` (the page is rendered when served).

    ``fidelity`` adds the value-fidelity quirks (``FIDELITY_VALUES``, ``FIDELITY_TRAILING``,
    ``FIDELITY_STRAY_AT``) to files of at least 43 rows."""
    specs = specs or small_periods()
    files = root / FILES_PATH.strip("/")
    files.mkdir(parents=True, exist_ok=True)
    expectations = {}
    for spec in specs:
        expectations[spec.label] = write_period(spec, files, spec.rows or rows, seed, keep_rows, fidelity)
    (files / "dicionario-de-dados-terceirizados.pdf").write_bytes(b"%PDF-1.4\n% dicionario\n")
    (root / "specs.json").write_text(json.dumps([spec.__dict__ for spec in specs]))
    return Portal(root, specs, expectations)


def main() -> None:
    parser = argparse.ArgumentParser(description="Gera (e serve) uma cópia sintética do portal da CGU.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--all-periods", action="store_true", help="todos os períodos (padrão: os do exemplo)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--no-serve", action="store_true", help="só gera os arquivos")
    args = parser.parse_args()
    portal = build_portal(
        args.directory, default_periods() if args.all_periods else sample_periods(), rows=args.rows, keep_rows=False
    )
    if args.no_serve:
        print(f"Portal sintético gerado em {args.directory}")
        return
    server = PortalServer(portal, port=args.port)
    print(f"Portal sintético em {server.page_url}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
