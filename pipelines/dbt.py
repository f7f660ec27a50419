"""Run dbt in-process (``dbtRunner``) and route its output into the flow's log.

dbt's events go to the ``pipelines.dbt`` logger (so to the flow log file and the
logs table). dbt installs handlers on the root logger when it runs; they are
removed afterwards so later log lines are not printed twice.

A materialization runs one ``dbt build`` per model (one Prefect task each). The project is
parsed once per process and the parsed manifest is reused by the following invocations
(``dbtRunner(manifest=...)``): each of them then costs only dbt's set-up and the model's SQL
and tests, not another parse. A change to any file of the project parses it again.

It also answers whether the latest models were built from a period's capture
(``newest_period_materialized``), which the scheduled pipeline asks before doing any work.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import sys
import threading
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from psycopg2 import sql

from pipelines import constants, database, dbt_views
from pipelines.constants import HISTORIC_MODELS, RAW_SCHEMA, RAW_TABLE, STAGING_SCHEMA, VERIFIED_BEFORE_COMMIT_TAG
from pipelines.errors import PipelineError
from pipelines.logs import current_task_name
from pipelines.settings import PROJECT_ROOT, Settings

DBT_PROJECT_DIR = PROJECT_ROOT / "queries"
logger = logging.getLogger("pipelines.dbt")

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
# Per-node progress lines worth keeping in the flow log (the rest is dbt's debug chatter).
KEPT_EVENTS = {
    "LogModelResult",
    "LogTestResult",
    "RunResultWarning",
    "RunResultFailure",
    "RunResultError",
    "EndOfRunSummary",
    "StatsLine",
    "MainReportVersion",
    "FoundStats",
    "ConcurrencyLine",
    "DatabaseErrorRunningHook",
    "RunResultWarningMessage",
    "CompiledNode",
    "MainEncounteredError",
    "GenericExceptionOnRun",
    "NodeFinished",
    "SkippingDetails",  # "SKIP relation staging.x": a model not built because one before it failed
    "JinjaLogInfo",  # log(..., info=true) of the project's macros: the periods each historic model rebuilds
}


class DbtBuildError(PipelineError):
    """``dbt build`` failed: a model errored or an error-level test failed."""


@dataclass
class DbtOutcome:
    success: bool
    models: dict[str, str] = field(default_factory=dict)  # model name -> status
    warnings: dict[str, int] = field(default_factory=dict)  # test name -> rows found
    failures: dict[str, str] = field(default_factory=dict)  # node name -> message


def _log_event(event, task_name: str | None) -> None:
    """One of dbt's events in the flow's log, under ``task_name`` (dbt logs from its own
    threads, where Prefect's context is not set), when it is worth keeping."""
    info = event.info
    level = LEVELS.get(str(info.level), logging.INFO)
    if level >= logging.WARNING or info.name in KEPT_EVENTS:
        message = info.msg.strip()
        if message:
            logger.log(level, "dbt | %s", message, extra={"nome_task": task_name})


def _forwarder(task_name: str | None):
    """A dbtRunner callback that logs dbt's events under the calling task's name."""
    return lambda event: _log_event(event, task_name)


def dbt_environment(settings: Settings) -> None:
    """profiles.yml reads the connection with env_var(), and the test nulled_share_at_most its
    limit: give them the validated settings (only what differs is written: the environment is
    shared with other threads)."""
    wanted = {
        "POSTGRES_HOST": settings.postgres_host,
        "POSTGRES_PORT": str(settings.postgres_port),
        "POSTGRES_USER": settings.postgres_user,
        "POSTGRES_PASSWORD": settings.postgres_password,
        "POSTGRES_DB": settings.postgres_db,
        "MAX_NULLED_PERCENT": f"{settings.max_nulled_share * 100:g}",
        # dbt's connections (libpq reads PGOPTIONS) wait at most LOCK_WAIT_SECONDS for a lock: a
        # session left idle in a transaction on a table the build replaces used to hold it forever
        "PGOPTIONS": _with_lock_timeout(os.environ.get("PGOPTIONS", ""), settings.lock_wait_seconds),
    }
    os.environ.update({name: value for name, value in wanted.items() if os.environ.get(name) != value})


LOCK_TIMEOUT_OPTION = re.compile(r"\s*-c\s*lock_timeout=\S*")


def _with_lock_timeout(options: str, seconds: float) -> str:
    """libpq ``options`` with ``lock_timeout`` set to ``seconds`` (any previous value replaced)."""
    kept = LOCK_TIMEOUT_OPTION.sub("", options).strip()
    return f"{kept} -c lock_timeout={max(int(seconds * 1000), 1)}".strip()


def explained_lock_timeout(message: str, seconds: float) -> str:
    """dbt's message for a node that PostgreSQL cancelled after waiting ``lock_timeout``, with
    what happened and what to do, in Portuguese (the server's own text stays after it)."""
    if "lock timeout" not in message and "tempo de espera do bloqueio" not in message:
        return message
    return (
        f"a materialização esperou mais de LOCK_WAIT_SECONDS={seconds:g} s por uma trava de uma tabela que outra "
        "sessão segura (uma consulta ou transação aberta sobre ela: psql, uma ferramenta de BI; em pg_stat_activity, "
        "state = 'idle in transaction'). Nada foi trocado por este modelo; encerre a outra sessão e rode de novo "
        f"({message})"
    )


def _cheaper_behavior_flag_source() -> None:
    """dbt-common names the module that declared each behavior flag, for every flag of every
    dbt invocation (even when the flag names its own source), by walking ``inspect.stack()``,
    which also reads and checks the source lines of every frame of the call stack (Prefect's
    and dbt's) and looks each frame's module up by file: ~13 ms per flag here, 25 flags in a
    scheduled run (measured: 0.32 s). The same walk reads each frame's module name from its
    globals instead. Applied once, after dbt is imported."""
    from dbt_common import behavior_flags

    rendered = behavior_flags.BehaviorFlagRendered
    if getattr(rendered._default_source, "_pipelines", False):
        return

    def default_source() -> str:
        frame = sys._getframe(1)  # the caller: this frame is not dbt-common's
        while frame is not None:
            name = frame.f_globals.get("__name__")
            if name and name != behavior_flags.__name__:
                return name
            frame = frame.f_back
        return "Unknown"

    default_source._pipelines = True
    rendered._default_source = staticmethod(default_source)


def _invoke(settings: Settings, args: list[str], family: str, callbacks=(), manifest=None, write_json=True):
    """dbtRunner.invoke with the project's paths and the validated connection settings
    (``manifest``: an already parsed project, which dbt then does not parse again;
    ``write_json=False``: no JSON artifacts, the compiled SQL is still written).

    Importing and running dbt add handlers to the root logger; they are removed so later
    log lines are not printed twice."""
    root = logging.getLogger()
    handlers_before, level_before = list(root.handlers), root.level

    def restore_root_logger() -> None:
        for handler in [h for h in root.handlers if h not in handlers_before]:
            root.removeHandler(handler)
        root.setLevel(level_before)

    from dbt.cli.main import dbtRunner

    _cheaper_behavior_flag_source()
    restore_root_logger()
    dbt_environment(settings)
    if manifest is None:
        _seed_partial_parse(settings.data_dir / "dbt_target", family)
    common = [
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        # one target folder per model family, so latest and historic runs can overlap
        "--target-path",
        str(settings.data_dir / "dbt_target" / family),
        "--log-path",
        str(settings.log_dir / "dbt"),
        "--log-level",
        "none",
        "--no-use-colors",
        "--no-send-anonymous-usage-stats",
        "--no-version-check",
    ]
    if write_json is False:
        # manifest.json, run_results.json and graph.gpickle: nothing reads them here, and dbt
        # serializes the whole manifest after every invocation (~0.3 s each on 2 cores)
        common.append("--no-write-json")
    try:
        return dbtRunner(manifest=manifest, callbacks=list(callbacks)).invoke(args + common)
    finally:
        restore_root_logger()


PARTIAL_PARSE_FILE = "partial_parse.msgpack"


def _seed_partial_parse(targets: Path, family: str) -> None:
    """Give a family's target folder the newest partial-parse state of its siblings (the same
    project, parsed by another family's run): dbt then re-parses only the files changed since,
    instead of the whole project (several seconds on 2 cores) the first time a family runs.
    dbt checks the copy like its own (dbt version, profile, vars, every file's hash)."""
    own = targets / family / PARTIAL_PARSE_FILE
    try:
        newest = max(
            (path for path in targets.glob(f"*/{PARTIAL_PARSE_FILE}") if path != own),
            key=lambda path: path.stat().st_mtime,
            default=None,
        )
        if newest is None or (own.exists() and own.stat().st_mtime >= newest.stat().st_mtime):
            return
        own.parent.mkdir(parents=True, exist_ok=True)
        temporary = own.with_suffix(".tmp")
        shutil.copyfile(newest, temporary)
        os.replace(temporary, own)
    except OSError as exc:  # a missed shortcut, never a failure: dbt parses the whole project
        logger.debug("Estado de parse parcial do dbt não copiado para %s: %s", own, exc)


# Skipped when fingerprinting the project: what dbt writes, not what it reads.
_NOT_PROJECT_FILES = {"target", "logs", "dbt_packages", ".user.yml"}
_manifests: dict[str, tuple[tuple, object]] = {}  # family -> (key, parsed manifest)
_manifests_lock = threading.Lock()


# The macros whose jinja templates the last build of a family compiled, in that order
# (DATA_DIR/dbt_target/<family>/): the next process compiles them while it prepares dbt in the
# background, instead of the build compiling each one when it first calls it.
USED_MACROS_FILE = "macros_compiladas.json"


def _used_macros_path(settings: Settings, family: str) -> Path:
    return settings.data_dir / "dbt_target" / family / USED_MACROS_FILE


def _record_used_macros(settings: Settings, family: str, manifest) -> None:
    """Write which of the manifest's macros dbt has compiled in this process (dbt-common's
    process-wide template cache, keyed by the macro's SQL), in the order it compiled them:
    those the build just called and any compiled earlier in the process (the warm-up's, an
    earlier run's of a long-lived scheduler), so a superset of what the next build calls. A
    hint for ``_warm_macro_templates``: never raises (a failure is only logged)."""
    path = _used_macros_path(settings, family)
    temporary = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        from dbt_common.clients.jinja import template_cache

        by_sql: dict[str, str] = {}
        for macro in manifest.macros.values():
            by_sql.setdefault(macro.macro_sql, macro.unique_id)
        compiled = template_cache.file_cache.copy()  # one atomic copy: dbt's threads may add to it
        used = [by_sql[macro_sql] for macro_sql in compiled if macro_sql in by_sql]
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps(used), encoding="utf-8")
        os.replace(temporary, path)
    except Exception as exc:  # noqa: BLE001 - a missed shortcut for the next run, never a failure
        logger.debug("Lista de macros compiladas não gravada em %s: %s", path, exc)
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def _warm_macro_templates(settings: Settings, family: str, manifest) -> int:
    """Compile the templates of the macros the family's last build compiled (``_record_used_macros``)
    into dbt-common's template cache, where the build finds them: the build then renders its
    SQL without compiling ~100 macros first (~0.2 s of the scheduled run's critical path, done
    here while the capture parses and loads the file). Macros no longer in the project are
    skipped; a list that cannot be read warms nothing. Returns how many were compiled."""
    from dbt_common.clients.jinja import template_cache

    try:
        names = json.loads(_used_macros_path(settings, family).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    warmed = 0
    for unique_id in names if isinstance(names, list) else []:
        macro = manifest.macros.get(unique_id) if isinstance(unique_id, str) else None
        if macro is None or macro.macro_sql in template_cache.file_cache:
            continue
        template_cache.get_node_template(macro)  # what dbt's first call of the macro would do
        warmed += 1
    return warmed


def _project_fingerprint() -> str:
    """sha256 of every file of the dbt project (names and contents) and of the dbt versions."""
    digest = hashlib.sha256()
    for package in ("dbt-core", "dbt-postgres"):
        digest.update(f"{package}=={importlib.metadata.version(package)}\n".encode())
    for folder, subfolders, names in os.walk(DBT_PROJECT_DIR):
        subfolders[:] = sorted(d for d in subfolders if d not in _NOT_PROJECT_FILES)
        for name in sorted(n for n in names if n not in _NOT_PROJECT_FILES):
            path = Path(folder, name)
            digest.update(f"{path.relative_to(DBT_PROJECT_DIR)}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def parsed_manifest(settings: Settings, family: str, task_name: str | None = None):
    """The project parsed for ``family`` (``dbt parse``, with dbt's partial parsing), kept for
    the next invocations of this process while the project files and the connection settings
    stay the same. ``task_name``: whose log dbt's lines go to (default: the running task)."""
    key = (
        _project_fingerprint(),
        settings.postgres_host,
        settings.postgres_port,
        settings.postgres_user,
        settings.postgres_db,
        str(settings.data_dir),
    )
    with _manifests_lock:
        cached = _manifests.get(family)
        if cached is not None and cached[0] == key:
            return cached[1]
        forwarder = _forwarder(task_name or current_task_name())
        result = _invoke(settings, ["parse"], family, callbacks=[forwarder], write_json=False)
        if not result.success or result.result is None:
            raise DbtBuildError(f"dbt parse falhou: {result.exception or 'veja o log do dbt'}")
        _manifests[family] = (key, result.result)
        return result.result


# While dbt is prepared in the background, the run's own thread waits for the GIL after every
# system call (a write, a query, a block sent to COPY) for up to Python's switch interval
# (0.005 s): a shorter one while a preparation runs, the previous one back when the last ends.
PREPARATION_SWITCH_INTERVAL = 0.0005  # seconds
_preparations = {"running": 0, "interval": None}
_preparations_lock = threading.Lock()


def _preparation_started() -> None:
    with _preparations_lock:
        if _preparations["running"] == 0:
            _preparations["interval"] = sys.getswitchinterval()
            sys.setswitchinterval(PREPARATION_SWITCH_INTERVAL)
        _preparations["running"] += 1


def _preparation_ended() -> None:
    with _preparations_lock:
        _preparations["running"] -= 1
        if _preparations["running"] == 0:
            sys.setswitchinterval(_preparations["interval"])


def prepare_in_background(settings: Settings, family: str) -> threading.Thread:
    """Import dbt and read the project for ``family`` (``parsed_manifest``) in a background
    thread, so the first build of the run finds both done: the scheduled run does it while
    the capture downloads, parses (in a child process: ``pipelines.parse_process``) and loads
    the newest file. The build waits for the thread (``parsed_manifest``'s lock), never
    starts a second parse. The thread then compiles the templates of the macros the last
    build used (``_warm_macro_templates``), which the build would otherwise compile on its
    critical path. A failure here is left to the build, which parses again and fails with
    dbt's own message."""
    task_name = current_task_name()
    dbt_environment(settings)  # here, before the thread: it then finds the environment as it wants it
    # Importing dbt calls logging.basicConfig() (a stderr handler on the root logger, removed by
    # _invoke afterwards): with a handler already there it does nothing, so the main thread's log
    # lines are not printed twice on the console while the import runs.
    quiet = logging.NullHandler()
    logging.getLogger().addHandler(quiet)

    def prepare() -> None:
        try:
            manifest = parsed_manifest(settings, family, task_name=task_name)
            _warm_macro_templates(settings, family, manifest)
        except Exception as exc:  # reported by the build that needs the manifest
            logger.debug("Preparação do dbt em segundo plano falhou (o build tenta de novo): %s", exc)
        finally:
            _preparation_ended()
            logging.getLogger().removeHandler(quiet)

    thread = threading.Thread(target=prepare, name=f"dbt-preparacao-{family}", daemon=True)
    _preparation_started()
    try:
        thread.start()
    except BaseException:
        _preparation_ended()
        logging.getLogger().removeHandler(quiet)
        raise
    return thread


# -- the latest models -------------------------------------------------------------------


def newest_period_materialized(settings: Settings, period: date) -> bool:
    """True when ``period`` is captured and staging.transformed was built from that capture."""
    transformed = f"{STAGING_SCHEMA}.{constants.LATEST_MODELS[-1]}"
    with database.connection(settings) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (transformed,))
        if not cursor.fetchone()[0]:
            return False
        cursor.execute(
            sql.SQL("""SELECT EXISTS (
                SELECT 1 FROM {captures} c
                WHERE c.periodo = %s AND EXISTS (
                    SELECT 1 FROM {transformed} t
                    WHERE t.ano = extract(year FROM c.periodo) AND t.mes = extract(month FROM c.periodo)
                      AND t.capturado_em = c.capturado_em))""").format(
                captures=database.CAPTURES, transformed=database.table(STAGING_SCHEMA, constants.LATEST_MODELS[-1])
            ),
            (period,),
        )
        return cursor.fetchone()[0]


# -- historic models with nothing to do -----------------------------------------------------
#
# The historic models are built by period (queries/macros/terceirizados_models.sql): with no
# period captured, recaptured or removed since the last build, dbt would start, parse, rebuild
# nothing and test no row. That is known before dbt is even imported, so each build of the
# historic chain (the four models, then the marts built from historic_transformed) is skipped
# when (1) every build of the chain last ended successfully, with its tests, from the same
# project files and dbt versions (a build that starts forgets itself and everything after it,
# so one that fails or dies leaves them to dbt), (2) the database is as the last build of
# historic_transformed left it (each period's capture in raw.terceirizados and the record of
# the by-period models, compared with a snapshot taken then), (3) every period is recorded as
# built from its current capture and verified, and (4) every relation of the chain exists and
# historic_cleaned (unlogged) is not empty.

BY_PERIOD_MODELS = ("historic_cleaned", "historic_transformed")
STATE_TABLE = "periodos_materializados"


def _historic_chain() -> tuple[str, ...]:
    """The dbt builds of the historic materialization, in order (models, then the marts)."""
    return (*HISTORIC_MODELS, constants.HISTORIC_MARTS_SELECTOR)


def _historic_relations() -> list[str]:
    marts = [f"{constants.MARTS_SCHEMA}.{name}" for name in constants.HISTORIC_MARTS]
    return [f"{STAGING_SCHEMA}.{name}" for name in (*HISTORIC_MODELS, STATE_TABLE)] + marts


# The capture behind each period of raw.terceirizados (as the models' macro historic_source_versions_sql):
# a loose scan of the (periodo, linha_origem) index, a few probes per period.
_SOURCE_VERSIONS_SQL = f"""
    SELECT to_char(p.v, 'YYYY-MM-DD'),
           (SELECT s.capturado_em FROM {RAW_SCHEMA}.{RAW_TABLE} AS s WHERE s.periodo = p.v
            ORDER BY s.linha_origem LIMIT 1)::text
    FROM ({database.distinct_values_sql(f"{RAW_SCHEMA}.{RAW_TABLE}", "periodo")}) AS p ORDER BY 1"""


def _build_marker(settings: Settings) -> Path:
    return settings.data_dir / "dbt_target" / "historic" / "construcao.json"


def _historic_relations_ready(settings: Settings) -> bool:
    """Every relation of the historic chain exists and historic_cleaned (unlogged) is not empty."""
    relations = _historic_relations()
    with database.connection(settings) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join("to_regclass(%s) IS NOT NULL" for _ in relations), relations)
        if not all(cursor.fetchone()):
            return False
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {STAGING_SCHEMA}.historic_cleaned)")
        return cursor.fetchone()[0]


def _historic_snapshot(settings: Settings) -> dict:
    """The captures of raw.terceirizados and the record of the by-period models, as the
    database has them now."""
    with database.connection(settings) as conn, conn.cursor() as cursor:
        cursor.execute(_SOURCE_VERSIONS_SQL)
        sources = [list(row) for row in cursor.fetchall()]
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{STAGING_SCHEMA}.{STATE_TABLE}",))
        records = []
        if cursor.fetchone()[0]:
            cursor.execute(
                f"SELECT modelo, to_char(periodo, 'YYYY-MM-DD'), capturado_em::text, versao, "
                f"verificado_em IS NOT NULL FROM {STAGING_SCHEMA}.{STATE_TABLE} ORDER BY 1, 2"
            )
            records = [list(row) for row in cursor.fetchall()]
    return {"capturas": sources, "registro": records}


def _read_marker(settings: Settings) -> dict:
    try:
        return json.loads(_build_marker(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def historic_up_to_date(settings: Settings) -> bool:
    """True when a build of the historic models would change nothing (see above)."""
    marker = _read_marker(settings)
    fingerprint = _project_fingerprint()
    if not marker or any(marker.get("modelos", {}).get(build) != fingerprint for build in _historic_chain()):
        return False
    if not _historic_relations_ready(settings):
        return False
    snapshot = _historic_snapshot(settings)
    if snapshot != marker.get("snapshot"):
        return False
    captures = {period: captured_at for period, captured_at in snapshot["capturas"]}
    for model in BY_PERIOD_MODELS:
        built = {
            period: (captured_at, verified)
            for name, period, captured_at, _, verified in snapshot["registro"]
            if name == model
        }
        if built != {period: (captured_at, True) for period, captured_at in captures.items()}:
            return False
    return True


def _mark_historic_build(settings: Settings, select: str, built: bool) -> None:
    """Before a build of the historic chain (``built=False``): forget it and every build after
    it (and, for a historic model, the snapshot), so a build that fails, or dies, leaves them to
    dbt next time. After it succeeded: the project it was built from and, after
    historic_transformed, the snapshot of what the models were built from."""
    marker = _read_marker(settings)
    builds = marker.setdefault("modelos", {})
    chain = _historic_chain()
    if built:
        builds[select] = _project_fingerprint()
        if select == HISTORIC_MODELS[-1]:
            marker["snapshot"] = _historic_snapshot(settings)
    else:
        for later in chain[chain.index(select) :]:
            builds.pop(later, None)
        if select in HISTORIC_MODELS:
            marker.pop("snapshot", None)
    path = _build_marker(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(marker, indent=1), encoding="utf-8")
    os.replace(temporary, path)


def selection(select: str) -> list[str]:
    """dbt's arguments for the nodes of a flow's build: ``select`` (with the tests that read
    only selected models) without the tests the models' own transactions already verified, by a
    post-hook or by the primary key (``constants.VERIFIED_BEFORE_COMMIT_TAG``)."""
    return ["--select", select, "--indirect-selection", "buildable", "--exclude", f"tag:{VERIFIED_BEFORE_COMMIT_TAG}"]


def run_dbt(settings: Settings, command: str, select: str, family: str, full_refresh: bool = False) -> DbtOutcome:
    """Invoke ``dbt <command> --select <select>`` in-process and summarise the results.
    ``family``: constants.DBT_LATEST or DBT_HISTORIC, the build's target folder.
    ``full_refresh``: dbt's ``--full-refresh`` (incremental models are rebuilt whole, and the
    historic models' tests read every row)."""
    if family not in (constants.DBT_LATEST, constants.DBT_HISTORIC):
        raise ValueError(f"unknown dbt family: {family!r}")
    chain = _historic_chain()
    tracked = command == "build" and select in chain
    if tracked and not full_refresh and historic_up_to_date(settings):
        logger.info(
            "dbt %s --select %s dispensado: nenhum período capturado, recapturado ou removido desde a "
            "última materialização verificada, e o projeto dbt é o mesmo.",
            command,
            select,
        )
        return DbtOutcome(success=True, models={select: "inalterado"})
    args = [command, *selection(select)]
    if full_refresh:
        args.append("--full-refresh")
    if tracked:
        _mark_historic_build(settings, select, built=False)
    result = _invoke(
        settings,
        args,
        family,
        callbacks=[_forwarder(current_task_name())],
        manifest=parsed_manifest(settings, family),
        write_json=False,
    )

    if result.exception is not None:
        raise DbtBuildError(f"dbt {command} não pôde rodar: {result.exception}") from result.exception
    outcome = _outcome(
        bool(result.success),
        [_NodeResult.of(node_result) for node_result in result.result or []],
        settings.lock_wait_seconds,
    )
    _report(outcome, command, select)
    if tracked:
        _mark_historic_build(settings, select, built=True)
    return outcome


def _one_line(message: str) -> str:
    """dbt's message for a node in one line, for the run's message and the console: "Database
    Error in model transformed (models/staging/transformed.sql): <PostgreSQL's message>", without
    the PL/pgSQL context and the path of the compiled SQL (both stay in dbt's own log lines)."""
    kept = [
        " ".join(line.split())
        for line in message.strip().splitlines()
        if line.strip() and not line.strip().startswith(("compiled code at ", "CONTEXT:"))
    ]
    return ": ".join(kept)


@dataclass(frozen=True)
class _NodeResult:
    """What a build says of one node (a model, a test, a hook)."""

    unique_id: str
    name: str
    resource_type: str
    status: str
    message: str
    failures: int

    @classmethod
    def of(cls, node_result) -> _NodeResult:
        """From one of dbt's RunResult."""
        node = node_result.node
        return cls(
            node.unique_id,
            node.name,
            str(node.resource_type),
            str(node_result.status),
            _one_line(node_result.message or ""),
            int(node_result.failures or 0),
        )


FAILED_STATUSES = ("error", "fail")


def _outcome(success: bool, results: list[_NodeResult], lock_wait_seconds: float) -> DbtOutcome:
    outcome = DbtOutcome(success=success)
    for node in results:
        if node.resource_type == "model":
            outcome.models[node.name] = node.status
        if node.status == "warn":
            outcome.warnings[node.name] = node.failures
        elif node.status in FAILED_STATUSES:
            outcome.failures[node.name] = explained_lock_timeout(node.message or node.status, lock_wait_seconds)
    return outcome


def _report(outcome: DbtOutcome, command: str, select: str) -> None:
    """Log the warnings and the result of a build; raise DbtBuildError when it failed."""
    for name, count in outcome.warnings.items():
        logger.warning(
            "Teste dbt com aviso: %s encontrou %d linha(s).",
            name,
            count,
            extra={"evento": constants.EVENT_DBT_WARNING, "detalhe": {"teste": name, "linhas": count}},
        )
    if not outcome.success:
        details = "; ".join(f"{name}: {message}" for name, message in outcome.failures.items())
        raise DbtBuildError(f"dbt {command} --select {select} falhou: {details or 'veja o log do dbt'}")
    logger.info(
        "dbt %s --select %s concluído: %s.",
        command,
        select,
        ", ".join(f"{name}={status}" for name, status in outcome.models.items()) or "nenhum modelo",
    )


# -- one dbt invocation for a chain of models -----------------------------------------------


class ChainBuild:
    """``dbt build`` of a chain of models (the latest models: raw -> cleaned -> renamed ->
    transformed) in ONE dbt invocation, run in a background thread and reported model by
    model: each model's Prefect task calls ``wait(model)``.

    dbt's build runs a model's tests before any model downstream of everything the test reads
    starts. A test that reads only models of the chain belongs to the last of them, and every
    node of a model is done once a node of a later model starts: ``wait`` returns a model's
    outcome then, if the model was built and nothing of it failed. Everything else waits for
    the end of the invocation: a model that failed or was not built (dbt skips what depends on
    it, and nothing of the chain may still run once its task fails), the last model, and any
    node that belongs to no model of its own (a test that also reads a source or a model out
    of the chain, a hook, a unit test of no model of the chain) belongs to the last model.
    The last model's task also fails for any failure of the invocation that no earlier task
    reported, so none is lost. dbt's lines go to the log of the task of the model they are
    about (``task_names``).

    One invocation instead of one per model saves dbt's set-up and wind-down for each (the
    adapter, the cache of relations, the schemas, the hooks): 2.0-2.3 s -> 1.6 s for the four
    latest models on 75,000 rows (measured)."""

    def __init__(self, settings: Settings, models: tuple[str, ...], family: str, task_names: dict[str, str]):
        self.settings, self.models, self.family, self.task_names = settings, tuple(models), family, task_names
        self.select = " ".join(self.models)
        self._changed = threading.Condition()
        self._manifest = None
        self._owners: dict[str, str] = {}  # node unique_id -> model of the chain
        self._results: dict[str, _NodeResult] = {}  # unique_id -> result, as nodes finish
        self._reached = -1  # index in the chain of the latest model a node started for
        self._reported: dict[str, bool] = {}  # model -> its wait returned (True) or raised (False)
        self._held = dbt_views.HeldViews([])  # views left out of the build, locked until its end
        self._unchanged: set[str] = set()  # views of the chain left out of the build (dbt_views)
        self._creating: dict[str, dbt_views.SourceOnlyView] = {}  # views of the chain it creates
        self._created: dict[str, tuple] = {}  # model -> (view, its signature when dbt created it)
        self._ended = False
        self._success = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"dbt-build-{family}", daemon=True)

    def start(self) -> ChainBuild:
        dbt_environment(self.settings)
        self._thread.start()
        return self

    def join(self) -> None:
        """Wait for the end of the invocation."""
        self._thread.join()

    @property
    def ended(self) -> bool:
        with self._changed:
            return self._ended

    def _owner(self, manifest, node) -> str:
        """The chain's model a node belongs to (see the class)."""
        if node.resource_type == "model" and node.name in self.models:
            return node.name
        if str(node.resource_type) == "unit_test" and getattr(node, "model", None) in self.models:
            return node.model  # runs before its model
        if str(node.resource_type) == "test":
            parents = [manifest.nodes.get(parent) for parent in node.depends_on.nodes]
            read = [getattr(parent, "name", None) for parent in parents]
            if read and all(name in self.models for name in read):
                return max(read, key=self.models.index)
        return self.models[-1]

    def _task_of(self, unique_id: str | None) -> str | None:
        """Whose log a line of dbt goes to: its node's model; a line of no node, the first model
        that failed, or else the first one whose task is still waiting."""
        with self._changed:
            model = self._owners.get(unique_id or "")
            if model is None:
                failed = [m for m in self.models if self._failed(m)]
                waiting = [m for m in self.models if m not in self._reported]
                model = (failed or waiting or self.models[-1:])[0]
        return self.task_names.get(model)

    def _on_event(self, event) -> None:
        """dbt's callback (from dbt's threads). Never raises: an exception here would stop dbt's
        queue for good; what it misses, dbt's own list of results gives at the end."""
        try:
            self._record(event)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            logger.debug("Evento do dbt não registrado (%s): %s", getattr(event.info, "name", "?"), exc)

    def _record(self, event) -> None:
        info, data = event.info, event.data
        node_info = getattr(data, "node_info", None)
        unique_id = (getattr(node_info, "unique_id", "") or getattr(data, "unique_id", "")) or None
        created = None
        with self._changed:
            known = unique_id in self._owners
            if info.name == "NodeStart" and known:
                reached = self.models.index(self._owners[unique_id])
                if reached > self._reached:
                    self._reached = reached
                    self._changed.notify_all()
            elif info.name in ("NodeFinished", "GenericExceptionOnRun") and known:
                node = self._manifest.nodes.get(unique_id) or getattr(self._manifest, "unit_tests", {}).get(unique_id)
                if info.name == "NodeFinished":
                    run = data.run_result
                    status, message, failures = str(run.status), run.message or "", int(run.num_failures or 0)
                else:  # an exception inside dbt's worker: no NodeFinished for that node
                    status, message, failures = "error", str(getattr(data, "exc", "")), 0
                self._results[unique_id] = _NodeResult(
                    unique_id, node.name, str(node.resource_type), status, _one_line(message), failures
                )
                self._changed.notify_all()
                if status == "success" and str(node.resource_type) == "model" and node.name in self._creating:
                    created = self._creating[node.name]
        if created is not None:
            # what dbt just created, read before anything else of the build runs (dbt_views)
            self._created[created.model] = (created, dbt_views.snapshot(self.settings, created))
        _log_event(event, self._task_of(unique_id))

    def _leave_out_unchanged_views(self, manifest, fingerprint: str) -> None:
        """The views of the chain that come out of this build as they are (``pipelines.dbt_views``)
        are answered at once and left out of the invocation; the others are noted, to be read as
        soon as dbt has created them."""
        try:
            views = dbt_views.source_only_views(manifest, self.models)
            held = dbt_views.hold_unchanged(self.settings, self.family, fingerprint, views)
        except Exception as exc:  # noqa: BLE001 - a missed shortcut: dbt creates them
            logger.debug("Views não comparadas com o registro: %s", exc)
            views, held = [], dbt_views.HeldViews([])
        unchanged = set(held.models)
        creating = {view.model: view for view in views if view.model not in unchanged}
        dbt_views.forget(self.settings, self.family, list(creating))
        with self._changed:
            self._held, self._unchanged, self._creating = held, unchanged, creating
            self._changed.notify_all()

    def _run(self) -> None:
        fingerprint = _project_fingerprint()  # the files the build starts with (dbt_views)
        try:
            manifest = parsed_manifest(self.settings, self.family, task_name=self.task_names.get(self.models[0]))
            nodes = [*manifest.nodes.values(), *getattr(manifest, "unit_tests", {}).values()]
            with self._changed:
                self._manifest = manifest
                self._owners = {node.unique_id: self._owner(manifest, node) for node in nodes}
            self._leave_out_unchanged_views(manifest, fingerprint)
            built = " ".join(model for model in self.models if model not in self._unchanged)
            result = _invoke(
                self.settings,
                ["build", *selection(built)],
                self.family,
                callbacks=[self._on_event],
                manifest=manifest,
                write_json=False,
            )
            if result.exception is not None:
                raise DbtBuildError(f"dbt build não pôde rodar: {result.exception}") from result.exception
            final = {node.unique_id: node for node in (_NodeResult.of(r) for r in result.result or [])}
            with self._changed:
                self._results.update(final)  # dbt's own list is the last word
                self._success = bool(result.success)
        except BaseException as exc:  # given to every task still waiting
            with self._changed:
                self._error = exc
        finally:
            self._held.release()  # the views left out of the build may change again
            with self._changed:
                self._ended = True
                self._changed.notify_all()
        if self._manifest is not None:  # after the tasks are answered: off the run's critical path
            _record_used_macros(self.settings, self.family, self._manifest)
        if self._created:
            dbt_views.remember(self.settings, self.family, fingerprint, _project_fingerprint(), self._created)

    def _own(self, model: str) -> list[_NodeResult]:
        return [r for r in self._results.values() if self._owners.get(r.unique_id, self.models[-1]) == model]

    def _failed(self, model: str) -> bool:
        return any(r.status in FAILED_STATUSES for r in self._own(model))

    def _built(self, model: str) -> bool:
        return any(r.resource_type == "model" and r.name == model and r.status == "success" for r in self._own(model))

    def wait(self, model: str) -> DbtOutcome:
        """Block until dbt is done with ``model``; its outcome, logged like ``run_dbt``'s (in the
        calling task's log). Raises DbtBuildError when the model or an error-level test of it
        failed, or when dbt did not build it."""
        index = self.models.index(model)
        last = index == len(self.models) - 1
        with self._changed:
            self._changed.wait_for(
                lambda: (
                    self._ended
                    or model in self._unchanged
                    or (not last and self._reached > index and self._built(model) and not self._failed(model))
                )
            )
            if model in self._unchanged:
                self._reported[model] = True
                logger.info(
                    "%s.%s não recriada: a view no banco é a que este projeto criou, e as colunas do que ela "
                    "lê não mudaram.",
                    STAGING_SCHEMA,
                    model,
                )
                return DbtOutcome(success=True, models={model: "inalterado"})
            own = self._own(model)
            failures = [r for r in self._results.values() if r.status in FAILED_STATUSES]
            error, success = self._error, self._success
            if last:  # what no earlier task reported, and no failure of the invocation goes unsaid
                own += [r for r in failures if r not in own and self._reported.get(self._owners.get(r.unique_id))]
            built = self._built(model)
            self._reported[model] = False
        if error is not None:
            if isinstance(error, DbtBuildError):
                raise DbtBuildError(str(error)) from error
            raise DbtBuildError(f"dbt build --select {self.select} falhou: {error}") from error
        outcome = _outcome(
            built and not any(r.status in FAILED_STATUSES for r in own), own, self.settings.lock_wait_seconds
        )
        if not built and not outcome.failures:
            before = "; ".join(f"{r.name}: {r.message or r.status}" for r in failures)
            outcome.failures[model] = f"não construído: o dbt parou antes ({before or 'veja o log do dbt'})"
        elif last and not success and outcome.success:
            outcome.success = False
            outcome.failures[self.select] = "o dbt terminou com falha (veja o log do dbt)"
        _report(outcome, "build", model)
        with self._changed:
            self._reported[model] = True
        return outcome


_chains: dict[tuple[str, str], ChainBuild] = {}  # (flow run, family) -> its build
_chains_lock = threading.Lock()


def chain_build(
    settings: Settings, run_key: str, models: tuple[str, ...], family: str, task_names: dict[str, str]
) -> ChainBuild:
    """The chain's build for this flow run (``run_key``), started by the first model's task."""
    with _chains_lock:
        for key in [key for key, chain in _chains.items() if chain.ended and key != (run_key, family)]:
            del _chains[key]  # earlier runs of a long-lived process (the scheduler)
        chain = _chains.get((run_key, family))
        if chain is None or chain.models != tuple(models):
            chain = _chains[(run_key, family)] = ChainBuild(settings, models, family, task_names).start()
        return chain


def finish_chain_builds(run_key: str) -> None:
    """Wait until no chain build of this flow run is running (the raw data's hold is released
    after it: a task that failed early must not leave dbt writing)."""
    with _chains_lock:
        chains = [chain for (key, _), chain in _chains.items() if key == run_key]
    for chain in chains:
        chain.join()


# -- documentation ------------------------------------------------------------------------

DOCS_FILES = ("index.html", "manifest.json", "catalog.json")


def docs_path(settings: Settings) -> Path:
    """The published dbt documentation, which the results app serves under /docs/."""
    return settings.data_dir / "dbt_docs"


def docs_key(settings: Settings) -> str:
    """What the documentation depends on: the project's files and the columns and types of
    the built relations. Row counts change every period; they do not regenerate the docs."""
    import hashlib

    import psycopg2

    with psycopg2.connect(**settings.postgres_dsn()) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') "
            "ORDER BY 1, 2, ordinal_position"
        )
        columns = cursor.fetchall()
    conn.close()
    return hashlib.sha256(repr((_project_fingerprint(), columns)).encode()).hexdigest()


def generate_docs_if_changed(settings: Settings) -> tuple[Path, bool]:
    """``generate_docs`` unless the published documentation was made from the same project
    and the same relations (the scheduled run of a new period then pays nothing for it).
    Returns (folder, generated)."""
    key = docs_key(settings)
    marker = settings.data_dir / "dbt_target" / "docs.chave"  # next to dbt's target, not published
    if marker.exists() and marker.read_text() == key and (docs_path(settings) / "index.html").exists():
        logger.info(
            "Documentação do dbt em %s já corresponde ao projeto e às tabelas: não gerada de novo.", docs_path(settings)
        )
        return docs_path(settings), False
    published = generate_docs(settings)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(key)
    return published, True


def generate_docs(settings: Settings) -> Path:
    """``dbt docs generate`` in-process: lineage from the source ``raw.terceirizados`` to
    every model, each column's description, the tests and the catalog (types read from the
    database). Returns the folder the three files were published to (``docs_path``).

    dbt writes into its own target folder, kept between runs for dbt's partial parsing
    and used by one generation at a time (a file lock: the latest and historic
    materializations may finish together); each file is then published with an atomic
    rename, so the app never serves a half-written file."""
    target = settings.data_dir / "dbt_target"
    target.mkdir(parents=True, exist_ok=True)
    published = docs_path(settings)
    published.mkdir(parents=True, exist_ok=True)
    with open(target / "docs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = _invoke(settings, ["docs", "generate"], "docs", callbacks=[_forwarder(current_task_name())])
        if not result.success:
            raise DbtBuildError(f"dbt docs generate falhou: {result.exception or 'veja o log do dbt'}")
        for name in ("catalog.json", "manifest.json", "index.html"):  # the page last
            temporary = published / f".{name}.tmp"
            shutil.copyfile(target / "docs" / name, temporary)
            os.replace(temporary, published / name)
    logger.info("Documentação do dbt gerada em %s (servida pelo app de resultados em /docs/).", published)
    return published
