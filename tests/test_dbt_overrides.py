"""Guards for the dbt macros the project overrides: an upgrade of dbt-postgres must not change
the upstream macro under an override without someone re-reading it.

queries/macros/create_table_as.sql replaces dbt-postgres' ``postgres__create_table_as`` (and
falls back to it). Its comment names the dbt-postgres version it was written against; the
upstream macro's source text, as shipped by that version, is pinned here by its SHA-256.
"""

import hashlib
import importlib.metadata
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OVERRIDE = ROOT / "queries" / "macros" / "create_table_as.sql"
UPSTREAM_PACKAGE = "dbt-postgres"
UPSTREAM_MACRO = "postgres__create_table_as"
# sha256 of the upstream macro's text, from `{% macro postgres__create_table_as(` to its
# `endmacro` tag, in dbt-postgres 1.11.0 (dbt/include/postgres/macros/adapters.sql).
UPSTREAM_MACRO_SHA256 = "93910aaf0dffc1678cda019777e233eab8b2d91f3a0e0faffcec4c350acfd9bf"

REDIFF = (
    f"Re-diff {OVERRIDE.relative_to(ROOT)} against the new upstream {UPSTREAM_MACRO} "
    f"(installed {UPSTREAM_PACKAGE} package, dbt/include/postgres/macros/), port any change to the "
    "override, then update the version in the override's comment and UPSTREAM_MACRO_SHA256 in this test."
)


def written_against() -> str:
    """The dbt-postgres version named in the override's comment, e.g. ``1.11`` or ``1.11.0``."""
    found = re.search(rf"{re.escape(UPSTREAM_PACKAGE)}\s+(\d+(?:\.\d+)+)", OVERRIDE.read_text())
    assert found, f"{OVERRIDE.relative_to(ROOT)} must name the {UPSTREAM_PACKAGE} version it overrides"
    return found.group(1)


def upstream_macro_sources() -> list[tuple[str, str]]:
    """(file, text) of every definition of the upstream macro in the installed package."""
    pattern = re.compile(
        rf"\{{%-?\s*macro\s+{UPSTREAM_MACRO}\(.*?\{{%-?\s*endmacro\s*-?%\}}",
        re.DOTALL,
    )
    found = []
    for file in importlib.metadata.distribution(UPSTREAM_PACKAGE).files or []:
        if file.suffix == ".sql":
            found += [(str(file), match.group(0)) for match in pattern.finditer(file.read_text(encoding="utf-8"))]
    return found


def test_the_override_overrides_the_upstream_macro():
    text = OVERRIDE.read_text()
    assert re.search(rf"\{{%-?\s*macro\s+{UPSTREAM_MACRO}\(", text)
    assert f"dbt.{UPSTREAM_MACRO}(" in text  # its fallback: the upstream macro


def test_installed_dbt_postgres_is_the_version_the_override_was_written_against():
    recorded = written_against().split(".")
    installed = importlib.metadata.version(UPSTREAM_PACKAGE)
    assert installed.split(".")[: len(recorded)] == recorded, (
        f"{UPSTREAM_PACKAGE} {installed} is installed, but the override was written against "
        f"{UPSTREAM_PACKAGE} {'.'.join(recorded)}. {REDIFF}"
    )


def test_the_upstream_macro_is_unchanged():
    sources = upstream_macro_sources()
    assert len(sources) == 1, (
        f"expected one definition of {UPSTREAM_MACRO} in the installed {UPSTREAM_PACKAGE}, found "
        f"{[file for file, _ in sources]}. {REDIFF}"
    )
    [(file, text)] = sources
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert digest == UPSTREAM_MACRO_SHA256, (
        f"{UPSTREAM_MACRO} in {file} of {UPSTREAM_PACKAGE} {importlib.metadata.version(UPSTREAM_PACKAGE)} "
        f"changed (sha256 {digest}, recorded {UPSTREAM_MACRO_SHA256}). {REDIFF}"
    )
