"""Prefect 1 tasks: thin wrappers that add retries, logging context and wiring
to the plain functions of the other modules."""

from __future__ import annotations

import copy
import logging
import os
import re
import socket
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pendulum
import prefect
from prefect import resource_manager, task
from prefect.engine import signals
from prefect.engine.state import Failed, Retrying, Skipped, Success, TriggerFailed
from prefect.triggers import always_run

from pipelines import capture, database, logs, raw_loads, recovery, runs, storage
from pipelines.constants import EVENT_RETRY, SCHEDULED_TIME_KEY, SCHEDULER_LOCK_KEY, STAGING_SCHEMA
from pipelines.dbt import (
    chain_build,
    finish_chain_builds,
    newest_period_materialized,
    prepare_in_background,
    run_dbt,
)
from pipelines.download import DownloadedFile, HttpLimits, download_file
from pipelines.errors import (
    DatabaseUnavailableError,
    PipelineError,
    StorageError,
    TransientDownloadError,
    first_line,
    storage_error,
)
from pipelines.parse import ParsedFile
from pipelines.portal import PortalListing, PublishedFile, describe_unplaced
from pipelines.schedules import TIMEZONE, PostgresAttemptStore, Reason, current_cycle, decide, format_date
from pipelines.settings import Settings, load_settings

logger = logging.getLogger("pipelines.tasks")

DEFAULT_RETRY_DELAY = timedelta(seconds=10)
# How long the log upload waits for a database that is restarting before it gives up.
LOG_UPLOAD_WAIT_SECONDS = 30


def current_run_id() -> str:
    """The Prefect flow run id (set by the server, or by ``run/*.py`` for local runs)."""
    run_id = prefect.context.get("flow_run_id")
    if not run_id:
        run_id = str(uuid.uuid4())
        prefect.context.update(flow_run_id=run_id)
    return run_id


# Context keys set where the flow starts (runner.execute, or record_run for a flow run by a
# Prefect agent) and shipped by Prefect with every task, to any process or machine.
SETTINGS_KEY = "pipeline_settings"
FLOW_PROCESS_KEY = "pipeline_flow_process"


def this_process() -> tuple[str, int]:
    return socket.gethostname(), os.getpid()


def task_settings() -> Settings:
    """The flow's settings, resolved once where the flow started: a task on a Dask worker
    (another process, another machine) never reads its own environment or ``.env``.

    Also routes this process's loggers: in the flow's process into the flow's log file; in
    any other process straight into ``logs.registros`` (and, on the flow's machine, into the
    same file too, so the text log stays complete)."""
    settings = prefect.context.get(SETTINGS_KEY) or load_settings()
    flow_name, run_id = prefect.context.get("flow_name"), prefect.context.get("flow_run_id")
    if flow_name and run_id:
        origin = prefect.context.get(FLOW_PROCESS_KEY)
        here = this_process()
        if origin is None or tuple(origin) == here or origin[0] == here[0]:
            logs.attach_handler(settings.log_dir, flow_name, run_id)
        if origin is not None and tuple(origin) != here:
            logs.attach_database_handler(runs.LogSink(settings), flow_name, run_id)
    return settings


def where_this_runs() -> str:
    """' (máquina X)' when a task runs on another machine than the flow, else ''."""
    origin = prefect.context.get(FLOW_PROCESS_KEY)
    host = socket.gethostname()
    return f" (máquina {host})" if origin is not None and origin[0] != host else ""


# -- flow state handler: the runs table -------------------------------------------------


def step_key(task_name: str) -> str:
    """A step's name as an argument of finish_scheduled_run (``dbt_build_staging.raw`` ->
    ``dbt_build_staging_raw``): how the attempt's record names the step that failed."""
    return re.sub(r"\W", "_", task_name)


def _step_cause(name: str, error: BaseException) -> str:
    """One failed step in the attempt's record (``finish_scheduled_run``)."""
    return f"{name}: {first_line(error)}"


def failure_causes(state, flow=None) -> list[str]:
    """'task: cause' for each task that failed itself, each cause once. Not the tasks that only
    could not run because of it: the ones whose trigger failed, and, when some task failed with
    an error of its own, the ones that failed without one (a mapped task with nothing to map
    over); a cause that a later task passes on (a summary re-raising it) is said by the first.
    ``flow``: the tasks in the flow's order (else as the run returned them)."""
    task_states = state.result if isinstance(state.result, dict) else {}
    failed = [(t, s) for t, s in task_states.items() if s.is_failed() and not isinstance(s, TriggerFailed)]
    own = [(t, s) for t, s in failed if isinstance(s.result, BaseException)] or failed
    if flow is not None:
        order = {t: position for position, t in enumerate(flow.sorted_tasks())}
        own.sort(key=lambda pair: order.get(pair[0], len(order)))
    causes, said, restated = [], set(), set()
    for failed_task, task_state in own:
        error = task_state.result if isinstance(task_state.result, BaseException) else None
        cause = str(error) if error is not None else task_state.message
        # said already, or only the attempt's record of causes said already (finish_scheduled_run)
        if cause in said or set(cause.split(" | ")) <= restated:
            continue
        said.add(cause)
        if error is not None:
            restated.add(_step_cause(step_key(failed_task.name), error))
        causes.append(f"{failed_task.name}: {cause}")
    return causes


def failed_task_errors(state) -> list[BaseException]:
    """The exceptions of the tasks that failed themselves."""
    task_states = state.result if isinstance(state.result, dict) else {}
    return [
        task_state.result
        for task_state in task_states.values()
        if task_state.is_failed()
        and not isinstance(task_state, TriggerFailed)
        and isinstance(task_state.result, BaseException)
    ]


FAILED_PREFIX = "Falhou: "


def run_message(state, flow=None) -> str:
    """A finished run in words, as ``logs.execucoes`` records it: the failed tasks and their
    causes (from the task states the run returned), else the state's own message, said once.
    A message already in these words (the flow's terminal state handler wrote it) is kept."""
    if state.is_skipped():
        return state.message or "Nada a fazer."
    if state.is_successful():
        return "Concluído com sucesso."
    if (state.message or "").startswith(FAILED_PREFIX):
        return state.message
    causes = failure_causes(state, flow)
    return FAILED_PREFIX + (" | ".join(causes) if causes else state.message or "")


def final_state_in_portuguese(flow, state, reference_states):
    """Terminal state handler of the capture, materialize and historic flows: the run ends with
    the message ``logs.execucoes`` records (``run_message``: the failed tasks and their causes,
    in Portuguese), which is what ``flow.run()`` returns and the Prefect UI shows, instead of
    Prefect's generic English one ("Some reference tasks failed.")."""
    if not state.is_finished():
        return state
    final = copy.copy(state)
    final.message = run_message(state, flow)
    if state.is_failed() and not failure_causes(state):
        # no task states in the result (a Prefect agent runs the flow without return_tasks):
        # the reference tasks' own causes (a task that only did not run says nothing)
        causes = sorted(
            {
                first_line(s.result) if isinstance(s.result, BaseException) else (s.message or "")
                for s in reference_states
                if s.is_failed() and not isinstance(s, TriggerFailed)
            }
            - {""}
        )
        final.message = FAILED_PREFIX + (
            " | ".join(causes) if causes else "uma task falhou; a causa está no log da execução (logs.registros)."
        )
    return final


def record_run(flow, old_state, new_state):
    """Flow state handler: one row per run in ``logs.execucoes``, written even on failure."""
    try:
        settings = load_settings()
        run_id = current_run_id()
        now = datetime.now(UTC)
        if new_state.is_running():
            settings = prefect.context.get(SETTINGS_KEY) or settings
            prefect.context.update(**{SETTINGS_KEY: settings, FLOW_PROCESS_KEY: this_process()})
            try:
                logs.setup_log_file(settings.log_dir, flow.name, run_id)
            except StorageError as exc:  # the set-up task fails the run with this message
                logger.error("%s", exc)
            database.ensure_schema(settings)
            try:
                recovery.recover_runs(settings)
            except Exception as exc:  # recovering older runs must not stop this one from being recorded
                logger.warning("Não foi possível verificar execuções interrompidas: %s", exc)
            runs.start_run(settings, run_id, flow.name, now, dict(prefect.context.get("parameters") or {}))
        elif new_state.is_finished():
            settings = prefect.context.get(SETTINGS_KEY) or settings
            lost, error = logs.write_failures(run_id)
            if lost and not new_state.is_failed():
                new_state = Failed(
                    message=f"{FAILED_PREFIX}{lost} registro(s) de log da execução não puderam ser gravados: "
                    f"{storage_error('LOG_DIR', settings.log_dir, error)}",
                    result=new_state.result,
                )
            runs.finish_run(settings, run_id, type(new_state).__name__, run_message(new_state, flow), now)
            upload_flow_log(settings, flow.name, run_id)
    except Exception as exc:  # never turn a good run into a crash because of bookkeeping
        logger.error("Falha ao registrar a execução no PostgreSQL: %s", exc)
    return new_state


def upload_flow_log(settings: Settings, flow_name: str, run_id: str) -> None:
    """The flow process's last records (those after the upload task, or all of them when the
    upload task ran on a worker that cannot read this machine's LOG_DIR)."""
    records = logs.read_records(settings.log_dir, flow_name, run_id)
    if records:
        runs.insert_log_records(settings, records, wait_seconds=LOG_UPLOAD_WAIT_SECONDS, replace=False)
    logs.discard(settings.log_dir, flow_name, run_id)


def exponential_backoff(task, old_state, new_state):
    """Task state handler: the n-th retry waits ``retry_delay * 2**(n-1)`` and is logged."""
    if isinstance(new_state, Retrying):
        attempt = new_state.run_count  # attempts already made
        delay = (task.retry_delay or timedelta(0)) * (2 ** max(attempt - 1, 0))
        new_state.start_time = pendulum.now("utc") + delay
        logger.warning(
            "Falha transitória em %s (%s). Nova tentativa %d de %d agendada em %d s.",
            task.name,
            new_state.message,
            attempt,
            task.max_retries,
            delay.total_seconds(),
            extra={"evento": EVENT_RETRY},
        )
    return new_state


# -- tasks -----------------------------------------------------------------------------


@task(name="setup_log_file")
def setup_log_file(flow_name: str) -> str:
    """The flow's log file is cleared and configured where the flow runs (``record_run``);
    this first task routes its own process into it and says where it is."""
    settings = task_settings()
    text_path, _ = logs.log_paths(settings.log_dir, flow_name, current_run_id())
    if not where_this_runs():  # on the flow's machine: a LOG_DIR that cannot be written fails here
        logs.check_writable(settings.log_dir, flow_name, current_run_id())
    logger.info("Configuração do arquivo de log %s realizada com sucesso.", text_path)
    return current_run_id()


@task(
    name="discover_published_files",
    max_retries=3,
    retry_delay=DEFAULT_RETRY_DELAY,
    retry_on={TransientDownloadError},
    state_handlers=[exponential_backoff],
)
def discover_published_files(url: str | None = None) -> PortalListing:
    # unplaced links travel in ``.unplaced``: select_newest_period fails on them,
    # the historic capture loads the other periods and names them in its summary
    return capture.discover_published_files(task_settings(), url, allow_unplaced=True)


@task(name="select_newest_period")
def select_newest_period(files: PortalListing) -> PublishedFile:
    files.require_all_placed()  # a link of unknown period may be the newest one
    newest = files[0]
    logger.info("Período mais recente publicado: %s (%s).", newest.label, newest.url)
    return newest


@task(
    name="download_cgu_terceirizados_data",
    max_retries=3,
    retry_delay=DEFAULT_RETRY_DELAY,
    retry_on={TransientDownloadError},
    state_handlers=[exponential_backoff],
)
def download_data(published: PublishedFile) -> DownloadedFile:
    return download_file(published, HttpLimits.from_settings(task_settings()))


@task(name="save_raw_data_locally")
def save_raw_data_locally(downloaded: DownloadedFile) -> str:
    path = storage.save_raw_file(task_settings().data_dir, downloaded)
    logger.info(
        "Dados brutos mantidos em memória e salvos localmente em %s até a carga terminar (sha256 %s).",
        path,
        downloaded.sha256,
    )
    return str(path)


@task(name="parse_data_into_dataframes")
def parse_data(downloaded: DownloadedFile, in_child_process: bool = False) -> ParsedFile:
    """``in_child_process``: parse on the other core (the scheduled run prepares dbt meanwhile)."""
    settings = task_settings()
    return capture.discarding_on_failure(
        settings,
        downloaded,
        lambda: capture.parse_downloaded(downloaded, settings.data_dir if in_child_process else None),
    )


@task(name="save_data_as_csv_locally")
def save_data_as_csv(downloaded: DownloadedFile, parsed: ParsedFile) -> str:
    settings = task_settings()
    return str(
        capture.discarding_on_failure(settings, downloaded, lambda: capture.save_outputs(settings, downloaded, parsed))
    )


@task(name="upload_csv_to_database")
def upload_csv_to_database(csv_file: str, parsed: ParsedFile, downloaded: DownloadedFile) -> dict:
    return capture.load_parsed(task_settings(), Path(csv_file), parsed, downloaded, current_run_id())


@task(name="prepare_dbt")
def prepare_dbt(family: str) -> str:
    """Start importing dbt and reading the project for ``family`` in the background
    (``pipelines.dbt.prepare_in_background``); returns at once, and never fails the run."""
    try:
        prepare_in_background(task_settings(), family)
    except Exception as exc:  # a shortcut missed (no thread could start): the build parses itself
        logger.warning("O dbt não pôde ser preparado em segundo plano (o build o prepara depois): %s", exc)
        return family
    logger.info("Preparando o dbt (%s) em segundo plano enquanto a captura roda.", family)
    return family


@task(name="check_raw_data")
def check_raw_data() -> str:
    periods = raw_loads.captured_periods(task_settings())
    newest = periods[0].strftime("%Y-%m")
    logger.info("raw.terceirizados tem %d período(s) capturado(s); o mais recente é %s.", len(periods), newest)
    return newest


def dbt_build_task_name(model: str) -> str:
    """The name of a model's ``dbt_build`` task in the flows."""
    return f"dbt_build_{STAGING_SCHEMA}.{model}"


@task(name="dbt_build")
def dbt_build(model: str, family: str, full_refresh: bool = False, chain: tuple[str, ...] | None = None) -> dict:
    """``dbt build`` of one model (or selector) and its tests; error-level failures fail the task.
    ``family``: the dbt build family (constants.DBT_LATEST or DBT_HISTORIC).
    ``full_refresh``: dbt's --full-refresh (the historic models are rebuilt whole).
    ``chain``: the models built one after the other by these tasks, ``model`` one of them: one
    dbt invocation builds them all (started by the first one's task, ``pipelines.dbt.ChainBuild``)
    and this task reports its model's part of it."""
    settings = task_settings()
    if chain:
        if full_refresh:
            raise ValueError("a chain of models is built without --full-refresh")
        names = {name: dbt_build_task_name(name) for name in chain}
        outcome = chain_build(settings, current_run_id(), tuple(chain), family, names).wait(model)
    else:
        outcome = run_dbt(settings, "build", model, family, full_refresh=bool(full_refresh))
    return {"modelos": outcome.models, "avisos": outcome.warnings}


@resource_manager(name="hold_raw_data")
class RawDataHold:
    """The raw data held for a whole materialization (``database.hold_raw_data``): loads in
    progress finish first, new loads wait until the last model and its tests are built, and
    two materializations run one after the other, so no model or test ever compares tables
    built from two versions of a period."""

    def __init__(self, name: str):
        self.name = name

    def setup(self):
        return database.hold_raw_data(task_settings(), self.name)

    def cleanup(self, conn) -> None:
        finish_chain_builds(current_run_id())  # dbt still running for a task that ended early
        database.release_raw_data(conn)


@task(name="record_materialized_rows")
def record_materialized_rows(model: str) -> int:
    settings = task_settings()
    rows = database.count_rows(settings, STAGING_SCHEMA, model)
    runs.set_run_rows(settings, current_run_id(), rows)
    logger.info("%s.%s materializada com %d linhas.", STAGING_SCHEMA, model, rows)
    return rows


@task(
    name="capture_period",
    max_retries=3,
    retry_delay=DEFAULT_RETRY_DELAY,
    retry_on={TransientDownloadError},
    state_handlers=[exponential_backoff],
)
def capture_period(published: PublishedFile, force: bool = False) -> dict:
    """One period of the historic capture (mapped): download, parse, save and load it."""
    settings = task_settings()
    try:
        return capture.capture_period(settings, published, force, current_run_id())
    except PipelineError as exc:
        where = where_this_runs()
        if where and where not in str(exc):
            raise type(exc)(f"{exc}{where}") from exc
        raise


@task(name="summarize_historic_capture", trigger=always_run)
def summarize_historic_capture(files: list[PublishedFile], results: list) -> list[dict]:
    """Reconcile every period; fail (after the others loaded) naming each failed period."""
    task_settings()
    for upstream in (files, results):  # the discovery, or the mapping itself, did not run
        if isinstance(upstream, BaseException):
            raise upstream
    done, failed = capture.summarize_periods(files, results)
    unplaced = getattr(files, "unplaced", [])
    problems = [f"{len(failed)} período(s) com falha: " + "; ".join(failed)] if failed else []
    if unplaced:
        problems.append(
            f"{len(unplaced)} link(s) da página não atribuído(s) a um período, não carregado(s): "
            + describe_unplaced(unplaced)
        )
    if problems:
        raise PipelineError(". ".join(problems))
    return done


@task(name="upload_logs_to_database", trigger=always_run)
def upload_logs_to_database(flow_name: str) -> int:
    """Load the run's log records; the run fails when some of them could not be written
    (LOG_DIR full or read-only) or the database stayed unavailable (the records then wait
    in LOG_DIR and are loaded at the start of the next run)."""
    settings = task_settings()
    run_id = current_run_id()
    logger.info("Carregando os registros de log da execução %s no PostgreSQL.", run_id)
    records = logs.read_records(settings.log_dir, flow_name, run_id)
    try:
        count = runs.insert_log_records(settings, records, wait_seconds=LOG_UPLOAD_WAIT_SECONDS, replace=False)
    except DatabaseUnavailableError as exc:
        raise DatabaseUnavailableError(
            f"{exc} Os registros de log ficam em {logs.pending_path(settings.log_dir, flow_name, run_id)} e serão "
            "carregados no início da próxima execução."
        ) from exc
    logs.discard(settings.log_dir, flow_name, run_id)
    lost, error = logs.write_failures(run_id)
    if lost:
        cause = storage_error("LOG_DIR", settings.log_dir, error)
        raise StorageError(
            f"{lost} registro(s) de log desta execução não puderam ser gravados. {cause} "
            "A execução não é dada como concluída sem o seu log."
        )
    return count


def configure_retries(flow, settings: Settings) -> None:
    """Apply DOWNLOAD_MAX_RETRIES and DOWNLOAD_RETRY_DELAY_SECONDS to the flow's retrying tasks.

    A task called inside ``with Flow(...)`` is a copy of the module-level task, so the
    flow's own task objects are the ones to configure."""
    for flow_task in flow.tasks:
        if TransientDownloadError in (flow_task.retry_on or ()):
            flow_task.max_retries = settings.download_max_retries
            flow_task.retry_delay = timedelta(seconds=settings.download_retry_delay_seconds)


# -- the scheduled pipeline (pipelines.flows.pipeline_flow) -------------------------------


def scheduled_time() -> pendulum.DateTime:
    """The time this run of the scheduled pipeline stands for: the local scheduler's tick,
    else Prefect's ``scheduled_start_time`` (the schedule's time on the server), else now."""
    moment = prefect.context.get(SCHEDULED_TIME_KEY) or prefect.context.get("scheduled_start_time")
    return pendulum.instance(moment).in_timezone(TIMEZONE) if moment else pendulum.now(TIMEZONE)


@task(name="decide_scheduled_run")
def decide_scheduled_run(manual: bool = False) -> dict:
    """Ask ``decide`` whether this day has work; SKIP (with the reason) when it has none.
    Otherwise record the attempt (Running) and return it. ``manual``: an attempt now,
    whatever the calendar says, counted for the current cycle. The decision and the record
    are serialised, so two runs never start two attempts of the same cycle."""
    settings = task_settings()
    now = scheduled_time()
    store = PostgresAttemptStore(settings)
    with database.connection(settings) as conn, conn, conn.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEDULER_LOCK_KEY,))
        if manual:
            cycle, kind = current_cycle(now), Reason.MANUAL
            reason = f"Execução pedida agora, fora do calendário: conta para o ciclo de {format_date(cycle)}."
        else:
            decision = decide(now, store.attempts())
            if not decision.run_now:
                logger.info(decision.message)
                raise signals.SKIP(decision.message)
            cycle, kind, reason = decision.cycle, decision.reason, decision.message
        attempt_id = str(uuid.uuid4())
        store.start(attempt_id, cycle, kind.value, now, current_run_id())
    logger.info("%s Tentativa %s.", reason, attempt_id)
    return {"id": attempt_id, "ciclo": cycle, "tipo": kind.value}


@task(name="skip_if_already_materialized")
def skip_if_already_materialized(newest: PublishedFile) -> PublishedFile:
    """Never capture twice: a newest period already captured and materialized ends the
    attempt as a success, without downloading. A newest period older than one already
    captured (a file withdrawn from the page) fails the attempt, changing nothing."""
    capture.require_newest_not_withdrawn(task_settings(), newest)
    if newest_period_materialized(task_settings(), newest.period):
        message = f"Período mais recente ({newest.label}) já capturado e materializado: nada a fazer."
        logger.info(message)
        raise signals.SKIP(message)
    logger.info("Período %s ainda não materializado: capturando e materializando.", newest.label)
    return newest


def _attempt_outcome(steps: dict) -> tuple[bool, str]:
    """(succeeded, message) of an attempt from the results of its steps: a failed step's
    exception, a SKIP (nothing to do), or the values of steps that all ran."""
    failures = [
        _step_cause(name, value)
        for name, value in steps.items()
        if isinstance(value, BaseException) and not isinstance(value, (signals.TRIGGERFAIL, signals.SKIP))
    ]
    if failures:
        return False, " | ".join(sorted(failures))
    skipped = [value for value in steps.values() if isinstance(value, signals.SKIP)]
    if skipped:
        return True, str(skipped[0])
    unfinished = [name for name, value in steps.items() if value is None or isinstance(value, BaseException)]
    if unfinished:
        return False, "A tentativa não terminou: " + ", ".join(sorted(unfinished)) + " não rodou."
    newest = next(value for value in steps.values() if isinstance(value, PublishedFile))
    return True, f"Período {newest.label} capturado e materializado."


def verified_outcome(settings: Settings, steps: dict) -> tuple[bool, str]:
    """``_attempt_outcome``, and an attempt that ran every step is a success only if
    staging.transformed was built from the capture of the period it names."""
    succeeded, message = _attempt_outcome(steps)
    if not succeeded or any(isinstance(value, signals.SKIP) for value in steps.values()):
        return succeeded, message
    newest = next(value for value in steps.values() if isinstance(value, PublishedFile))
    if newest_period_materialized(settings, newest.period):
        return succeeded, message
    return False, (
        f"finish_scheduled_run: o período {newest.label} foi capturado, mas staging.transformed não foi "
        "construído dessa captura (outra execução carregou um período mais novo ou o recapturou ao mesmo "
        "tempo?): a tentativa não é dada como concluída e será repetida."
    )


@task(name="finish_scheduled_run", trigger=always_run, skip_on_upstream_skip=False)
def finish_scheduled_run(attempt, **steps) -> str:
    """Record the attempt's end (Success or Failed, with the cause) and end like it: Skipped
    when nothing was due, Failed when the attempt (or the decision) failed. ``steps``: every
    step of the attempt, by name."""
    if isinstance(attempt, signals.SKIP):
        raise signals.SKIP(str(attempt))
    if not isinstance(attempt, dict):  # the decision (or the set-up before it) failed
        raise signals.FAIL(f"Não foi possível decidir se há execução agendada: {first_line(attempt)}")
    succeeded, message = verified_outcome(task_settings(), steps)
    PostgresAttemptStore(task_settings()).finish(attempt["id"], succeeded, message, pendulum.now(TIMEZONE))
    if not succeeded:
        logger.error(
            "Tentativa %s do ciclo de %s falhou: %s Nova tentativa no dia seguinte.",
            attempt["id"],
            format_date(attempt["ciclo"]),
            message,
        )
        raise signals.FAIL(message)
    logger.info(
        "Tentativa %s do ciclo de %s concluída com sucesso: %s", attempt["id"], format_date(attempt["ciclo"]), message
    )
    return message


def scheduled_run_final_state(flow, state, reference_states):
    """Terminal state handler of the scheduled pipeline: Skipped when nothing was due (Prefect
    would call a run whose reference tasks were skipped a Success), and the reason or the
    cause as the run's message, so the Prefect UI shows why, day by day."""
    if not state.is_finished():
        return state
    failed = [s for s in reference_states if s.is_failed()]
    if failed:
        causes = sorted({first_line(s.result) if isinstance(s.result, BaseException) else s.message for s in failed})
        return Failed(message=" | ".join(causes), result=state.result)
    skipped = [s for s in reference_states if s.is_skipped()]
    if skipped:
        return Skipped(message=skipped[0].message, result=state.result)
    message = next((s.result for s in reference_states if isinstance(s.result, str)), state.message)
    return Success(message=message, result=state.result)


@task(name="generate_dbt_docs")
def generate_dbt_docs() -> str:
    """``dbt docs generate`` after the models are built: the documentation the results app
    serves under /docs/. A by-product of the run: when it cannot be generated (database
    down, disk full) the run logs a warning and still succeeds; returns where it was
    published, or why not."""
    from pipelines.dbt import generate_docs_if_changed

    settings = task_settings()
    try:
        return str(generate_docs_if_changed(settings)[0])
    except (PipelineError, OSError) as exc:
        logger.warning("A documentação do dbt não foi gerada (os dados foram materializados): %s", first_line(exc))
        return f"documentação do dbt não gerada: {first_line(exc)}"
