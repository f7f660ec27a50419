"""An independent reference implementation of the column contract (README: "Formatos da
fonte", "Linhas com colunas deslocadas e quarentena", "Regras de limpeza e conversão" and
the dictionary of staging.transformed).

It reads the portal's files and produces the typed rows that staging.historic_transformed
must hold, in plain Python: it imports nothing from ``pipelines`` (neither the parser nor
the dbt macros), so a rule implemented wrongly in both places would have to be implemented
wrongly twice, in two languages and two algorithms (the parser reads shifted lines with
dynamic programming; this module enumerates every reading).
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

COLUMNS = (
    "id_terc",
    "sg_orgao_sup_tabela_ug",
    "cd_ug_gestora",
    "nm_ug_tabela_ug",
    "sg_ug_gestora",
    "nr_contrato",
    "nr_cnpj",
    "nm_razao_social",
    "nr_cpf",
    "nm_terceirizado",
    "nm_categoria_profissional",
    "nm_escolaridade",
    "nr_jornada",
    "nm_unidade_prestacao",
    "vl_mensal_salario",
    "vl_mensal_custo",
    "num_mes_carga",
    "mes_carga",
    "ano_carga",
    "sg_orgao",
    "nm_orgao",
    "cd_orgao_siafi",
    "cd_orgao_siape",
)
TYPED_COLUMNS = (
    "ano",
    "mes",
    "id_terceirizado",
    "sigla_orgao_superior_unidade_gestora",
    "id_unidade_gestora",
    "sigla_unidade_gestora",
    "nome_unidade_gestora",
    "id_orgao_siafi",
    "id_orgao_siape",
    "sigla_orgao",
    "nome_orgao",
    "nome_unidade_prestacao",
    "id_contrato",
    "cnpj_empresa",
    "razao_social_empresa",
    "cpf",
    "nome",
    "cbo_2002",
    "categoria_profissional",
    "nivel_escolaridade",
    "quantidade_horas_semanais",
    "valor_salario_mensal",
    "valor_custo_mensal",
)

# --- values -----------------------------------------------------------------------------

# Unicode White_Space: what trimming removes at both ends of every value.
WHITESPACE = "".join(
    chr(c)
    for c in (
        0x09,
        0x0A,
        0x0B,
        0x0C,
        0x0D,
        0x20,
        0x85,
        0xA0,
        0x1680,
        *range(0x2000, 0x200B),
        0x2028,
        0x2029,
        0x202F,
        0x205F,
        0x3000,
    )
)
NO_VALUE = {"", "<N/I>", "NI", "NULL"}
NO_CODE = {"-1", "-2"}
CENT = Decimal("0.01")
MONEY_LIMIT = Decimal(10) ** 10  # numeric(12,2): ten integer digits


class Nulled:
    """A value present in the source that the contract turns into NULL (counted by values_nulled)."""

    def __init__(self, why: str):
        self.why = why

    def __repr__(self):
        return f"Nulled({self.why})"


def text(value: str) -> str | None:
    trimmed = value.strip(WHITESPACE)
    return None if trimmed in NO_VALUE else trimmed


def code(value: str) -> str | None:
    return None if value.strip(WHITESPACE) in NO_CODE else text(value)


def education(value: str):
    level = text(value)
    return Nulled("escolaridade numérica") if level is not None and re.fullmatch("[0-9]+", level) else level


def hours(value: str):
    number = text(value)
    if number is None:
        return None
    match = re.fullmatch(r"(-?[0-9]{1,9})(?:[.,]0+)?", number)
    return int(match[1]) if match else Nulled("jornada não inteira")


def padded(value: str, width: int):
    number = text(value)
    if number is None:
        return None
    if number.startswith("-"):  # a negative number ('-1', '-2': "no value"), not a code
        return Nulled("código negativo")
    digits = re.sub(r"[./-]", "", number)
    return digits.rjust(width, "0") if re.fullmatch(f"[0-9]{{1,{width}}}", digits) else Nulled("código inválido")


def cnpj_check_digits(base: str) -> str:
    """The Receita Federal's two check digits of the 12 characters ``base`` (upper case): a
    character is worth ord(c) - 48, weights 2 to 9 from the right, remainder of 11."""

    def digit(characters: str) -> int:
        weights = [2, 3, 4, 5, 6, 7, 8, 9] * 2
        total = sum((ord(c) - 48) * w for c, w in zip(reversed(characters), weights))
        return 0 if total % 11 < 2 else 11 - total % 11

    first = digit(base)
    return f"{first}{digit(base + str(first))}"


def cnpj(value: str):
    """Digits zero-padded to 14, or the alphanumeric CNPJ (12 ASCII letters or digits and 2
    digits) in upper case, when its check digits are right."""
    digits = padded(value, 14)
    if not isinstance(digits, Nulled):
        return digits
    characters = re.sub(r"[./-]", "", text(value))
    if re.fullmatch("[0-9A-Za-z]{12}[0-9]{2}", characters) and not text(value).startswith("-"):
        upper = characters.upper()
        return upper if cnpj_check_digits(upper[:12]) == upper[12:] else Nulled("dígitos verificadores errados")
    return Nulled("CNPJ inválido")


_SPACE = "[ \t\n\r\f\v]*"


def cbo_code(value: str) -> str | None:
    category = text(value)
    match = category and re.match(f"([0-9]{{6}}){_SPACE}-", category)
    return match[1] if match else None


def cbo_title(value: str) -> str | None:
    category = text(value)
    if category is None:
        return None
    return re.sub(f"^[0-9]+{_SPACE}-{_SPACE}", "", category, count=1) or None


def money(value: str):
    """Reais as Decimal (2 places), None for no value, Nulled when it is not a sure amount.

    Separators: a lone ',' or '.' is the decimal separator, except when it is followed by
    exactly three digits after 1-3 digits ('1.234', '1,234'): thousands or decimals? Both
    separators: the last one is the decimal separator and the other groups thousands
    ('1.234,56', '1,234.56'); one separator repeated groups thousands ('1.234.567').
    At most 10 integer digits and 100 characters once the thousands separators are gone
    and the decimal one is a point; rounded half away from zero; it must still fit
    numeric(12,2).
    """
    amount = text(value)
    if amount is None:
        return None
    sign, body = ("-", amount[1:]) if amount.startswith("-") else ("", amount)
    single = re.fullmatch(r"([0-9]+)(?:([.,])([0-9]+))?", body)
    pt_br = re.fullmatch(r"([0-9]{1,3}(?:\.[0-9]{3})+)(?:,([0-9]+))?", body)
    english = re.fullmatch(r"([0-9]{1,3}(?:,[0-9]{3})+)(?:\.([0-9]+))?", body)
    if single:
        integer, fraction = single[1], single[3] or ""
        if re.fullmatch("[1-9][0-9]{0,2}", integer) and len(fraction) == 3:
            return Nulled("separador ambíguo")
    elif pt_br:
        integer, fraction = pt_br[1].replace(".", ""), pt_br[2] or ""
    elif english:
        integer, fraction = english[1].replace(",", ""), english[2] or ""
    else:
        return Nulled("não é um valor")
    canonical = sign + integer + ("." + fraction if fraction else "")
    if len(integer) > 10 or len(canonical) > 100:
        return Nulled("dígitos demais")
    number = Decimal(f"{sign}{integer}.{fraction or '0'}").quantize(CENT, rounding=ROUND_HALF_UP)
    return number if abs(number) < MONEY_LIMIT else Nulled("não cabe em numeric(12,2)")


def typed_row(year: int, month: int, raw: dict[str, str]) -> dict:
    """The row of staging.historic_transformed for one loaded source row (values may be Nulled)."""
    return {
        "ano": year,
        "mes": month,
        "id_terceirizado": text(raw["id_terc"]),
        "sigla_orgao_superior_unidade_gestora": text(raw["sg_orgao_sup_tabela_ug"]),
        "id_unidade_gestora": None if code(raw["cd_ug_gestora"]) is None else padded(raw["cd_ug_gestora"], 6),
        "sigla_unidade_gestora": text(raw["sg_ug_gestora"]),
        "nome_unidade_gestora": text(raw["nm_ug_tabela_ug"]),
        "id_orgao_siafi": code(raw["cd_orgao_siafi"]),
        "id_orgao_siape": code(raw["cd_orgao_siape"]),
        "sigla_orgao": text(raw["sg_orgao"]),
        "nome_orgao": text(raw["nm_orgao"]),
        "nome_unidade_prestacao": text(raw["nm_unidade_prestacao"]),
        "id_contrato": text(raw["nr_contrato"]),
        "cnpj_empresa": None if code(raw["nr_cnpj"]) is None else cnpj(raw["nr_cnpj"]),
        "razao_social_empresa": text(raw["nm_razao_social"]),
        "cpf": text(raw["nr_cpf"]),
        "nome": text(raw["nm_terceirizado"]),
        "cbo_2002": cbo_code(raw["nm_categoria_profissional"]),
        "categoria_profissional": cbo_title(raw["nm_categoria_profissional"]),
        "nivel_escolaridade": education(raw["nm_escolaridade"]),
        "quantidade_horas_semanais": hours(raw["nr_jornada"]),
        "valor_salario_mensal": money(raw["vl_mensal_salario"]),
        "valor_custo_mensal": money(raw["vl_mensal_custo"]),
    }


# --- lines with extra fields --------------------------------------------------------------

NAME_TEXT = {
    "sg_orgao_sup_tabela_ug",
    "nm_ug_tabela_ug",
    "sg_ug_gestora",
    "nm_razao_social",
    "nm_terceirizado",
    "nm_categoria_profissional",
    "nm_unidade_prestacao",
    "sg_orgao",
    "nm_orgao",
}
FREE_TEXT = {"nr_contrato", "nm_escolaridade"}
MONTHS = {
    "JANEIRO",
    "FEVEREIRO",
    "MARCO",
    "ABRIL",
    "MAIO",
    "JUNHO",
    "JULHO",
    "AGOSTO",
    "SETEMBRO",
    "OUTUBRO",
    "NOVEMBRO",
    "DEZEMBRO",
}
SENTINELS = NO_VALUE | NO_CODE
KINDS = {
    "id_terc": r"\d+",
    "cd_ug_gestora": r"\d+",
    "nr_cnpj": r"[\d./-]+|[0-9A-Za-z]{2}\.?[0-9A-Za-z]{3}\.?[0-9A-Za-z]{3}/?[0-9A-Za-z]{4}-?[0-9]{2}",
    "nr_cpf": r"[\d*.\-]+",
    "nr_jornada": r"\d+([.,]\d+)?",
    "vl_mensal_salario": r"-?[\d.,]+",
    "vl_mensal_custo": r"-?[\d.,]+",
    "num_mes_carga": r"\d{1,2}(\.0)?",
    "ano_carga": r"\d{4}(\.0)?",
    "cd_orgao_siafi": r"-?\d+",
    "cd_orgao_siape": r"-?\d+",
}


def _month(value: str) -> bool:
    plain = unicodedata.normalize("NFKD", value.strip())
    return "".join(c for c in plain if not unicodedata.combining(c)).upper() in MONTHS


def fits(name: str, value: str, organ_filled: bool) -> bool:
    """README: each column holds its kind of value in a reading of a shifted line."""
    stripped = value.strip()
    if name in ("sg_orgao", "nm_orgao"):
        return (stripped not in NO_VALUE and any(c.isalpha() for c in value)) if organ_filled else stripped in NO_VALUE
    never_empty = name in ("num_mes_carga", "mes_carga", "ano_carga") or (name == "cd_orgao_siape" and organ_filled)
    if never_empty and stripped == "":
        return False
    if name == "mes_carga":
        return stripped in SENTINELS or _month(value)
    if name in KINDS:
        return stripped in SENTINELS or re.fullmatch(KINDS[name], stripped) is not None
    if name in FREE_TEXT:
        return stripped in NO_VALUE or any(c.isalnum() for c in value)
    if name in NAME_TEXT:
        return stripped in NO_VALUE or any(c.isalpha() for c in value)
    return stripped == ""  # a nameless column right of the table


def _every_reading(fields, columns, organ_filled, i=0, j=0):
    """Every way to read the fields as the columns (brute force): a stray separator leaves an
    empty field (dropped); a ';' inside a text splits it into pieces whose first and last are
    not empty. Yields (row, pieces of every glued text)."""
    if j == len(columns):
        if all(f == "" for f in fields[i:]):
            yield (), ()
        return
    if i >= len(fields):
        return
    if fields[i] == "":
        yield from _every_reading(fields, columns, organ_filled, i + 1, j)
    name = columns[j]
    ends = [i + 1]
    if name in NAME_TEXT | FREE_TEXT and fields[i] != "":
        ends += [end for end in range(i + 2, len(fields) + 1) if fields[end - 1] != ""]
    for end in ends:
        value = ";".join(fields[i:end])
        if fits(name, value, organ_filled):
            glued = (tuple(fields[i:end]),) if end > i + 1 else ()
            for rest, pieces in _every_reading(fields, columns, organ_filled, end, j + 1):
                yield (value,) + rest, glued + pieces


def repair(fields: list[str], columns: list[str]) -> list[str] | None:
    """README: repaired when exactly one reading fits, unless it glues a bare code or a
    sentinel into a text; otherwise (None) the line is quarantined."""
    if len(fields) - len(columns) > 20:
        return None
    readings = {}
    for organ_filled in (True, False):
        for row, pieces in _every_reading(fields, columns, organ_filled):
            readings.setdefault(row, pieces)
    if len(readings) != 1:
        return None
    ((row, pieces),) = readings.items()
    if any(re.fullmatch(r"-?\d+", p.strip()) or p.strip() in NO_VALUE - {""} for glued in pieces for p in glued):
        return None
    return list(row)


# --- files ----------------------------------------------------------------------------------


@dataclass
class Period:
    year: int
    month: int
    rows: list[dict[str, str]] = field(default_factory=list)  # loaded source rows, by column name
    quarantined: list[int] = field(default_factory=list)  # line numbers
    data_rows: int = 0


def _lines(content: bytes) -> list[str]:
    if content.startswith(b"\xef\xbb\xbf"):
        content = content[3:]
    try:
        return [line.rstrip("\r") for line in content.decode("utf-8").split("\n")]
    except UnicodeDecodeError:
        pass
    lines = []
    for raw in content.split(b"\n"):
        raw = raw.rstrip(b"\r")
        for encoding in ("utf-8", "cp1252", "latin-1"):
            try:
                lines.append(raw.decode(encoding))
                break
            except UnicodeDecodeError:
                continue
    return lines


def _header(fields: list[str]) -> list[str] | None:
    names = [f.replace("\ufeff", "").strip().strip('"').strip().lower() for f in fields]
    if len(set(names) & set(COLUMNS)) < len(COLUMNS) // 2:
        return None
    for position in range(len(names) - 1, -1, -1):  # nameless trailing columns must stay empty
        if names[position] != "":
            break
        names[position] = f"__vazia_{position}"
    return names


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def _read(records, period: Period, can_repair: bool) -> None:
    columns = None
    for number, fields in records:
        if columns is None:
            columns = _header(fields)
            if columns is not None:
                continue
            columns = list(COLUMNS)
        period.data_rows += 1
        line = ";".join(fields)
        if "\x00" in line or not line.replace(";", "").strip():
            period.quarantined.append(number)
            continue
        if len(fields) > len(columns):
            fields = repair(fields, columns) if can_repair else None
        if (
            fields is None
            or len(fields) < len(columns)
            or any(fields[i].strip() for i, name in enumerate(columns) if name not in COLUMNS)
        ):
            period.quarantined.append(number)
            continue
        period.rows.append({name: value for name, value in zip(columns, fields) if name in COLUMNS})


def read_csv(content: bytes, year: int, month: int) -> Period:
    period = Period(year, month)

    def records():
        for number, line in enumerate(_lines(content), start=1):
            if line.strip() == "":
                continue
            if '"' in line:
                try:
                    yield number, next(csv.reader([line], delimiter=";", strict=True))
                    continue
                except csv.Error:
                    pass
            yield number, line.split(";")

    _read(records(), period, can_repair=True)
    return period


def read_xlsx(content: bytes, year: int, month: int) -> Period:
    from openpyxl import load_workbook  # not the pipeline's reader (python-calamine)

    sheet = load_workbook(io.BytesIO(content), read_only=True, data_only=True).worksheets[0]
    period = Period(year, month)

    def records():
        for number, cells in enumerate(sheet.iter_rows(values_only=True), start=1):
            fields = [_cell(c) for c in cells]
            fields += [""] * (len(COLUMNS) - len(fields))
            while len(fields) > len(COLUMNS) and fields[-1] == "":
                fields.pop()
            if ";".join(fields).strip(";").strip() == "":
                continue  # a blank row is not a data row
            yield number, fields

    _read(records(), period, can_repair=False)
    return period


def expected_rows(periods: list[Period]) -> dict[tuple, dict]:
    """(ano, mes, id_terceirizado) -> the typed row the contract gives for it."""
    rows = {}
    for period in periods:
        for raw in period.rows:
            row = typed_row(period.year, period.month, raw)
            rows[(row["ano"], row["mes"], row["id_terceirizado"])] = row
    return rows
