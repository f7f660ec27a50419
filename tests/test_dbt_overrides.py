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

import pytest

from pipelines.constants import VERIFIED_BEFORE_COMMIT_TAG

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


# -- pipelines.dbt._cheaper_behavior_flag_source: dbt-common's BehaviorFlagRendered._default_source
# replaced by the same loop over inspect.stack(0). sha256 of the upstream function's source text
# (inspect.getsource) in dbt-common 1.39.0.
UPSTREAM_DEFAULT_SOURCE_SHA256 = "29a653aaaebbe60df498b6787b9d2678e1a167990aa4eba49d62f60659809e3f"


def _upstream_default_source():
    import importlib

    from dbt_common import behavior_flags

    return importlib.reload(behavior_flags).BehaviorFlagRendered._default_source


def test_the_upstream_behavior_flag_source_is_unchanged():
    import inspect

    source = inspect.getsource(_upstream_default_source())
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
    assert digest == UPSTREAM_DEFAULT_SOURCE_SHA256, (
        f"BehaviorFlagRendered._default_source changed in dbt-common {importlib.metadata.version('dbt-common')} "
        f"(sha256 {digest}): re-read it and pipelines.dbt._cheaper_behavior_flag_source, then update "
        "UPSTREAM_DEFAULT_SOURCE_SHA256."
    )


def test_the_cheaper_behavior_flag_source_gives_the_upstream_answer():
    """Both name the first module of the call stack other than dbt-common's behavior_flags: the
    caller's, however deep the stack."""
    from dbt_common import behavior_flags

    from pipelines import dbt as pipelines_dbt

    upstream = _upstream_default_source()
    pipelines_dbt._cheaper_behavior_flag_source()
    cheaper = behavior_flags.BehaviorFlagRendered._default_source
    assert cheaper is not upstream and cheaper._pipelines
    pipelines_dbt._cheaper_behavior_flag_source()  # a second call changes nothing
    assert behavior_flags.BehaviorFlagRendered._default_source is cheaper

    def deep(levels: int, function):
        return function() if levels == 0 else deep(levels - 1, function)

    for levels in (0, 5, 80):
        assert deep(levels, cheaper) == deep(levels, upstream) == __name__
    # called from dbt-common's own module (a flag rendered there), both look further up
    namespace = {"__name__": behavior_flags.__name__}
    exec("def call(function):\n    return function()", namespace)
    assert namespace["call"](cheaper) == namespace["call"](upstream) == __name__


# -- queries/macros/verify_before_commit.sql: the error-level tests of staging.transformed also run
# in the model's transaction (its post-hooks), so rows that fail one are never published. The
# hooks repeat the tests' arguments: this keeps the two lists the same.


def _hook_calls(sql: str) -> dict:
    """verify_before_commit('name', key=value, ...) calls of a model's config -> {(name, column): arguments}."""
    import ast

    calls = {}
    for match in re.finditer(r"verify_before_commit\((.*?)\) \}\}", sql):
        call = ast.parse(f"f({match.group(1).replace('=false', '=False').replace('=true', '=True')})").body[0].value
        [name] = [ast.literal_eval(arg) for arg in call.args]
        arguments = {
            k.arg: ast.unparse(k.value) if isinstance(k.value, ast.Call) else ast.literal_eval(k.value)
            for k in call.keywords
        }
        calls[(name, arguments.pop("column_name", None))] = arguments
    return calls


@pytest.mark.parametrize("model_name", ["transformed", "historic_transformed"])
def test_every_error_level_test_of_transformed_also_runs_before_the_commit(model_name):
    import yaml

    schema = yaml.safe_load((ROOT / "queries" / "models" / "staging" / "schema.yml").read_text(encoding="utf-8"))
    [model] = [m for m in schema["models"] if m["name"] == model_name]
    error_level, tagged = {}, set()
    for test in model["data_tests"]:
        [(name, spec)] = test.items()
        config = spec.get("config") or {}
        if config.get("severity", "error") == "error":
            error_level[(name, spec.get("column_name"))] = spec.get("arguments", {})
        if VERIFIED_BEFORE_COMMIT_TAG in config.get("tags", []):
            tagged.add((name, spec.get("column_name")))
    sql = (ROOT / "queries" / "models" / "staging" / f"{model_name}.sql").read_text(encoding="utf-8")
    [key] = re.findall(r"primary_key\(\[([^\]]*)\]\)", sql)
    key_columns = [column.strip(" '\"") for column in key.split(",")]
    # the primary key (created before the commit) is the unique and not-null tests
    by_key = {("unique_combination", None): {"combination_of_columns": key_columns}}
    by_key |= {("not_null", column): {} for column in key_columns}
    hooks = _hook_calls(sql)
    assert hooks, f"{model_name}.sql has no verify_before_commit hook"
    assert error_level == by_key | hooks
    # the flows' builds leave out exactly the tests the hooks run and those the primary key
    # answers (dbt.selection), and the on-run-end record of verified periods knows them by the tag
    assert tagged == set(hooks) | set(by_key)
    assert f"'{VERIFIED_BEFORE_COMMIT_TAG}' in test.tags" in (
        ROOT / "queries" / "macros" / "terceirizados_models.sql"
    ).read_text(encoding="utf-8")


def test_only_tests_verified_before_the_commit_carry_the_tag():
    """The flows' builds leave out the tagged tests and the record of verified periods counts them
    as passed: a tag on any test that neither a hook nor the primary key verifies before the
    commit would skip it without it ever running."""
    import yaml

    tagged = []
    for path in sorted((ROOT / "queries" / "models").rglob("*.yml")):
        for model in yaml.safe_load(path.read_text(encoding="utf-8")).get("models", []):
            tests = list(model.get("data_tests") or [])
            for column in model.get("columns") or []:
                tests += column.get("data_tests") or []
            for test in tests:
                if not isinstance(test, dict):
                    continue
                [(name, spec)] = test.items()
                if VERIFIED_BEFORE_COMMIT_TAG in ((spec or {}).get("config") or {}).get("tags", []):
                    tagged.append((model["name"], name, (spec or {}).get("column_name")))
    expected = [
        (model, name, column)
        for model in ("transformed", "historic_transformed")
        for name, column in (
            ("unique_combination", None),
            ("not_null", "ano"),
            ("not_null", "mes"),
            ("not_null", "id_terceirizado"),
            ("row_count_equals", None),
            ("accepted_values", "mes"),
            ("sum_matches_source", "valor_custo_mensal"),
            ("nulled_share_at_most", None),
            ("missing_share_at_most", None),
        )
    ]
    assert sorted(tagged) == sorted(expected)
