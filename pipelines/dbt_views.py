"""Views of a chain that need not be created again.

A view model that reads only sources (``staging.raw``: the newest period of
``raw.terceirizados``) comes out of every build identical to the one in the database as long
as the project, the connection and the source's columns are the same: ``select *`` is expanded
into the source's columns when the view is created, and nothing else in it can change between
builds. Recreating it costs a dbt node (~0.2 s of the scheduled run for ~15 ms of SQL).

After a build created such a view, its signature is recorded in
``DATA_DIR/dbt_target/<family>/views.json``: the project fingerprint and the connection it was
built with, and what the database says of it (the view's oid, the md5 of its definition, its
owner, options and privileges, the columns of each source it reads). The next build leaves the
view out when that record matches the database: a view dropped, replaced (even by ``CREATE OR
REPLACE`` with the same columns, which keeps the oid), given to another owner or recreated by
anyone else, a source that gained, lost or changed a column, another project or another
database, and a record that cannot be read all make dbt create it again. A view left out is
compared with the record under a lock that lasts until the end of the build (``HeldViews``):
another session cannot change it between the comparison and dbt's reads of it; a change it is
already making (the lock not granted within ``LOCK_WAIT``) makes dbt create the view.

What is recorded is what the build created: the signature is read as soon as dbt reports the
view built (``snapshot``, from dbt's own thread), and recorded at the end of the build only if
the view still has it and the project files are the ones the build started with (a file edited
during the build, a view replaced by another session during it: no record, dbt creates it next
time). Only a replacement made by another session in the milliseconds between dbt's commit and
that reading would go unseen. The record of a view is removed before every build that creates
it, so a build that fails or dies leaves it to dbt next time."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from psycopg2 import sql

from pipelines import database
from pipelines.settings import Settings

logger = logging.getLogger("pipelines.dbt_views")

RECORD_FILE = "views.json"

# a relation's columns, names and types in order (c: its pg_class row)
_COLUMNS = """(SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
            FROM pg_attribute AS a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)"""

_SIGNATURE_SQL = f"""
    SELECT c.oid::bigint, md5(pg_get_viewdef(c.oid)), c.relowner::regrole::text,
           coalesce(c.reloptions::text, ''), coalesce(c.relacl::text, ''), {_COLUMNS}
    FROM pg_class AS c WHERE c.oid = to_regclass(%s) AND c.relkind = 'v'"""

_COLUMNS_SQL = f"SELECT {_COLUMNS} FROM pg_class AS c WHERE c.oid = to_regclass(%s)"


@dataclass(frozen=True)
class SourceOnlyView:
    """A view model of the chain that reads only sources: its relation and theirs."""

    model: str
    relation: str  # schema.name
    sources: tuple[str, ...]  # schema.name of each source it reads


def source_only_views(manifest, models: tuple[str, ...]) -> list[SourceOnlyView]:
    """The models of ``models`` (not the last one: it carries the chain's outcome) that dbt
    materializes as views and that read nothing but sources."""
    by_name = {
        node.name: node
        for node in manifest.nodes.values()
        if str(node.resource_type) == "model" and node.name in models[:-1]
    }
    views = []
    for name in models[:-1]:
        node = by_name.get(name)
        if node is None or node.config.materialized != "view":
            continue
        parents = list(node.depends_on.nodes)
        if not parents or not all(parent in manifest.sources for parent in parents):
            continue
        sources = tuple(
            f"{manifest.sources[parent].schema}.{manifest.sources[parent].identifier}" for parent in parents
        )
        views.append(SourceOnlyView(name, f"{node.schema}.{node.alias}", sources))
    return views


def _record_path(settings: Settings, family: str) -> Path:
    return settings.data_dir / "dbt_target" / family / RECORD_FILE


def _connection_key(settings: Settings) -> list:
    return [settings.postgres_host, settings.postgres_port, settings.postgres_db, settings.postgres_user]


def _signature_in(cursor, view: SourceOnlyView) -> list | None:
    cursor.execute(_SIGNATURE_SQL, (view.relation,))
    row = cursor.fetchone()
    if row is None:
        return None
    sources = []
    for source in view.sources:
        cursor.execute(_COLUMNS_SQL, (source,))
        found = cursor.fetchone()
        sources.append([source, found[0] if found else None])
    return [list(row), sources]


def _signature(settings: Settings, view: SourceOnlyView) -> list | None:
    """What the database says of the view and of its sources now (None: no such view)."""
    with database.connection(settings) as conn, conn.cursor() as cursor:
        return _signature_in(cursor, view)


_record_lock = threading.Lock()


def _read(settings: Settings, family: str) -> dict:
    try:
        record = json.loads(_record_path(settings, family).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _write(settings: Settings, family: str, record: dict) -> None:
    path = _record_path(settings, family)
    temporary = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps(record, indent=1), encoding="utf-8")
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def _expected(settings: Settings, fingerprint: str) -> dict:
    return {"projeto": fingerprint, "conexao": _connection_key(settings)}


LOCK_WAIT = "2s"  # for the lock on a view another session is changing: then dbt creates it


class HeldViews:
    """Views left out of a build, held unchanged until ``release``: a transaction of its own
    holds ACCESS SHARE on each (``LOCK TABLE``), which dbt's reads of them share and which any
    change to them (``CREATE OR REPLACE VIEW``, ``ALTER VIEW``, ``DROP VIEW``, all ACCESS
    EXCLUSIVE) waits for. The record is compared with the database under that lock, so what was
    compared is what the build reads."""

    def __init__(self, models: list[str], conn=None):
        self.models, self._conn = models, conn

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()  # ends the transaction: the locks go
            self._conn = None


def _matching(record: dict, settings: Settings, fingerprint: str, views: list[SourceOnlyView], cursor) -> list:
    kept = []
    for view in views:
        entry = record.get(view.model)
        if not isinstance(entry, dict) or {k: entry.get(k) for k in ("projeto", "conexao")} != _expected(
            settings, fingerprint
        ):
            continue
        schema, name = view.relation.split(".", 1)
        cursor.execute("SAVEPOINT visto")
        try:
            cursor.execute(
                sql.SQL("LOCK TABLE {}.{} IN ACCESS SHARE MODE").format(sql.Identifier(schema), sql.Identifier(name))
            )
        except Exception:  # noqa: BLE001 - gone, or being changed by another session: dbt creates it
            cursor.execute("ROLLBACK TO SAVEPOINT visto")
            continue
        if entry.get("assinatura") == _signature_in(cursor, view):
            kept.append(view)
    return kept


def hold_unchanged(settings: Settings, family: str, fingerprint: str, views: list[SourceOnlyView]) -> HeldViews:
    """The views of ``views`` that are the ones the last build of this project created, whose
    sources kept their columns (see the module), locked against changes until the returned
    ``HeldViews`` is released (after the build). Only the views kept stay locked: dbt must be
    free to create the others."""
    record = _read(settings, family)
    candidates = [view for view in views if view.model in record]
    while candidates:
        conn = database.connect(settings)
        try:
            with conn.cursor() as cursor:
                cursor.execute(f"SET lock_timeout = '{LOCK_WAIT}'")
                kept = _matching(record, settings, fingerprint, candidates, cursor)
        except Exception:
            conn.close()
            raise
        if len(kept) == len(candidates):
            return HeldViews([view.model for view in kept], conn if kept else None)
        conn.close()  # a view that will be created is not left locked: again, with the kept ones only
        candidates = kept
    return HeldViews([])


def forget(settings: Settings, family: str, models: list[str]) -> None:
    """Before a build that creates these views: their records go. Never raises: a record left
    behind cannot match a view dbt created again (a new oid)."""
    try:
        with _record_lock:
            record = _read(settings, family)
            if any(model in record for model in models):
                for model in models:
                    record.pop(model, None)
                _write(settings, family, record)
    except OSError as exc:
        logger.debug("Registro das views não atualizado: %s", exc)


def snapshot(settings: Settings, view: SourceOnlyView) -> list | None:
    """The view's signature right after dbt created it (None when it cannot be read: nothing is
    recorded then). Never raises: it runs in dbt's thread."""
    try:
        return _signature(settings, view)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        logger.debug("Assinatura da view %s não lida: %s", view.relation, exc)
        return None


def remember(
    settings: Settings,
    family: str,
    fingerprint: str,
    fingerprint_now: str,
    created: dict[str, tuple[SourceOnlyView, list | None]],
) -> list[str]:
    """After a build: record each view of ``created`` (model -> the view and its ``snapshot``)
    whose signature is still the one read when dbt created it, when the project files are still
    the ones the build started with (``fingerprint`` then, ``fingerprint_now`` now). Returns the
    models recorded. Never raises (a record not written only means dbt creates the view again
    next time)."""
    if fingerprint != fingerprint_now:
        return []
    try:
        kept = {
            model: signature
            for model, (view, signature) in created.items()
            if signature is not None and _signature(settings, view) == signature
        }
        if kept:
            with _record_lock:
                record = _read(settings, family)
                for model, signature in kept.items():
                    record[model] = {**_expected(settings, fingerprint), "assinatura": signature}
                _write(settings, family, record)
        return list(kept)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        logger.debug("Registro das views criadas não gravado: %s", exc)
        return []
