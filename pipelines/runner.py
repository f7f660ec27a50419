"""What every ``run/*.py`` entry point does: check the configuration, run a flow
locally with ``flow.run()``, print the outcome and turn it into an exit code."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import uuid
from collections.abc import Callable
from typing import NoReturn

from pipelines import database
from pipelines.demo import SAMPLE_OPTION
from pipelines.errors import ConfigError, DatabaseUnavailableError, DownloadError, PortalStructureError
from pipelines.executors import parallel_executor
from pipelines.logs import log_paths
from pipelines.settings import Settings, load_settings
from pipelines.tasks import SETTINGS_KEY, configure_retries, failed_task_errors, failure_causes


def prepare() -> Settings:
    """Load settings and reach the database, or exit with a message naming the variable."""
    try:
        settings = load_settings()
        database.ensure_schema(settings)
    except DatabaseUnavailableError as exc:
        print(f"PostgreSQL indisponível: {exc}", file=sys.stderr)
        print(
            "Confira se o servidor está no ar e se POSTGRES_HOST/POSTGRES_PORT do .env apontam para ele "
            "(modelo em .env.example).",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    except ConfigError as exc:
        print(f"Erro de configuração: {exc}", file=sys.stderr)
        print("Confira o arquivo .env (modelo em .env.example).", file=sys.stderr)
        raise SystemExit(2) from None
    return settings


def execute(flow, settings: Settings, parameters: dict | None = None, executor=None):
    """Run ``flow`` locally with ``flow.run()`` (on ``executor`` if given); returns (final state, run id)."""
    configure_retries(flow, settings)
    run_id = str(uuid.uuid4())
    options = {"executor": executor} if executor is not None else {}
    # the settings travel with the flow run to every task, on any process or machine
    context = {"flow_run_id": run_id, SETTINGS_KEY: settings}
    return flow.run(parameters=parameters or {}, context=context, **options), run_id


class ConsoleFormatter(logging.Formatter):
    """Prefect's console lines without tracebacks: those go to the flow's log file only."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def quiet_console() -> None:
    """Keep the console readable: progress lines, no tracebacks (they stay in the log file)."""
    for handler in logging.getLogger("prefect").handlers:
        if type(handler) is logging.StreamHandler:
            handler.setFormatter(ConsoleFormatter("[%(asctime)s] %(levelname)s - %(name)s | %(message)s"))


def failure_report(flow, run_id: str, state, settings: Settings) -> str:
    """One block for the console: what failed, why (in the flow's order), what to do."""
    errors = failed_task_errors(state)
    flow_name = flow.name
    lines = [f"Flow {flow_name} falhou (execução {run_id})."]
    causes = failure_causes(state, flow) or [state.message]
    lines += [f"  - {cause}" for cause in causes]
    text_log, _ = log_paths(settings.log_dir, flow_name, run_id)
    lines.append(f"Detalhes (com os tracebacks) no log: {text_log}")
    if any(isinstance(error, (DownloadError, PortalStructureError)) for error in errors):
        lines += [
            "Sem acesso ao portal da CGU (sem internet, portal fora do ar ou mudado)? Para testar com o "
            "portal de exemplo do repositório (dados sintéticos):",
            f"  python {' '.join(sys.argv[:1] or ['run/capture.py'])} {SAMPLE_OPTION}",
        ]
    return "\n".join(lines)


def run_flow(flow, parameters: dict | None = None, parallel: bool = False) -> int:
    """Run ``flow`` locally (``parallel``: on the Dask executor); 0 when it succeeded, 1 when it failed."""
    settings = prepare()
    quiet_console()
    try:
        executor = parallel_executor(settings) if parallel else None
    except ConfigError as exc:
        print(f"Erro de configuração: {exc}", file=sys.stderr)
        return 2
    state, run_id = execute(flow, settings, parameters, executor)
    if state.is_successful():
        print(f"Flow {flow.name} concluído com sucesso (execução {run_id}).")
        return 0
    print(failure_report(flow, run_id, state, settings), file=sys.stderr)
    return 1


def exit_code(code) -> int:
    """The process exit status ``sys.exit(code)`` gives: None is 0, an int itself, anything
    else is printed on stderr and gives 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def exit_process(main: Callable[[], int | None]) -> NoReturn:
    """Run an entry point's ``main`` and end the process with its exit status, skipping the
    interpreter's teardown, which frees every object one by one (dbt's parsed project,
    Prefect, the flow's results): ~0.5 s after a scheduled run of ~6 s, measured.

    Whatever the normal exit does that matters is done first: the atexit handlers (logging's
    flush and close, multiprocessing's children, temporary folders), then stdout and stderr
    are flushed. When a thread that is not a daemon is still running, the normal exit (which
    waits for it) is used instead. KeyboardInterrupt leaves as usual."""
    try:
        status = exit_code(main())
    except SystemExit as exc:
        status = exit_code(exc.code)
    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        sys.exit(status)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be written
            pass
    os._exit(status)
