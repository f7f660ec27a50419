"""Run dbt in-process (``dbtRunner``) and route its output into the flow's log.

dbt's events go to the ``pipelines.dbt`` logger (so to the flow log file and the
logs table). dbt installs handlers on the root logger when it runs; they are
removed afterwards so later log lines are not printed twice.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from pipelines.errors import PipelineError
from pipelines.logs import current_task_name
from pipelines.settings import PROJECT_ROOT, Settings

DBT_PROJECT_DIR = PROJECT_ROOT / "queries"
logger = logging.getLogger("pipelines.dbt")

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
# Per-node progress lines worth keeping in the flow log (the rest is dbt's debug chatter).
KEPT_EVENTS = {
    "LogModelResult", "LogTestResult", "RunResultWarning", "RunResultFailure", "RunResultError",
    "EndOfRunSummary", "StatsLine", "MainReportVersion", "FoundStats", "ConcurrencyLine", "DatabaseErrorRunningHook",
    "RunResultWarningMessage", "CompiledNode", "MainEncounteredError", "GenericExceptionOnRun", "NodeFinished",
}


class DbtBuildError(PipelineError):
    """``dbt build`` failed: a model errored or an error-level test failed."""


@dataclass
class DbtOutcome:
    success: bool
    models: dict[str, str] = field(default_factory=dict)     # model name -> status
    warnings: dict[str, int] = field(default_factory=dict)   # test name -> rows found
    failures: dict[str, str] = field(default_factory=dict)   # node name -> message


def _forwarder(task_name: str | None):
    """A dbtRunner callback that logs dbt's events under the calling task's name (dbt logs
    from its own threads, where Prefect's context is not set)."""
    def forward(event) -> None:
        info = event.info
        level = LEVELS.get(str(info.level), logging.INFO)
        if level >= logging.WARNING or info.name in KEPT_EVENTS:
            message = info.msg.strip()
            if message:
                logger.log(level, "dbt | %s", message, extra={"nome_task": task_name})
    return forward


def dbt_environment(settings: Settings) -> None:
    """profiles.yml reads the connection with env_var(): give it the validated settings."""
    os.environ.update(
        POSTGRES_HOST=settings.postgres_host,
        POSTGRES_PORT=str(settings.postgres_port),
        POSTGRES_USER=settings.postgres_user,
        POSTGRES_PASSWORD=settings.postgres_password,
        POSTGRES_DB=settings.postgres_db,
    )


def _invoke(settings: Settings, args: list[str], family: str, callbacks=()):
    """dbtRunner.invoke with the project's paths and the validated connection settings.

    Importing and running dbt add handlers to the root logger; they are removed so later
    log lines are not printed twice."""
    root = logging.getLogger()
    handlers_before, level_before = list(root.handlers), root.level

    def restore_root_logger() -> None:
        for handler in [h for h in root.handlers if h not in handlers_before]:
            root.removeHandler(handler)
        root.setLevel(level_before)

    from dbt.cli.main import dbtRunner

    restore_root_logger()
    dbt_environment(settings)
    common = [
        "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
        # one target folder per model family, so latest and historic runs can overlap
        "--target-path", str(settings.data_dir / "dbt_target" / family),
        "--log-path", str(settings.log_dir / "dbt"), "--log-level", "none",
        "--no-use-colors", "--no-send-anonymous-usage-stats", "--no-version-check",
    ]
    try:
        return dbtRunner(callbacks=list(callbacks)).invoke(args + common)
    finally:
        restore_root_logger()


def compile_inline(settings: Settings, sql: str) -> str:
    """Compile a SQL snippet that uses the project's macros (used by the benchmark)."""
    result = _invoke(settings, ["compile", "--inline", sql], "inline")
    if not result.success:
        raise DbtBuildError(f"dbt compile --inline falhou: {result.exception}")
    return result.result.results[0].node.compiled_code


def run_dbt(settings: Settings, command: str, select: str) -> DbtOutcome:
    """Invoke ``dbt <command> --select <select>`` in-process and summarise the results."""
    family = "historic" if "historic" in select else "latest"
    result = _invoke(settings, [command, "--select", select, "--indirect-selection", "buildable"], family,
                     callbacks=[_forwarder(current_task_name())])

    outcome = DbtOutcome(success=bool(result.success))
    if result.exception is not None:
        raise DbtBuildError(f"dbt {command} não pôde rodar: {result.exception}") from result.exception
    for node_result in result.result or []:
        node = node_result.node
        status = str(node_result.status)
        if node.resource_type == "model":
            outcome.models[node.name] = status
        if status == "warn":
            outcome.warnings[node.name] = int(node_result.failures or 0)
        elif status in ("error", "fail"):
            outcome.failures[node.name] = (node_result.message or status).strip()
    for name, count in outcome.warnings.items():
        logger.warning("Teste dbt com aviso: %s encontrou %d linha(s).", name, count)
    if not outcome.success:
        details = "; ".join(f"{name}: {message}" for name, message in outcome.failures.items())
        raise DbtBuildError(f"dbt {command} --select {select} falhou: {details or 'veja o log do dbt'}")
    logger.info("dbt %s --select %s concluído: %s.", command, select,
                ", ".join(f"{name}={status}" for name, status in outcome.models.items()) or "nenhum modelo")
    return outcome
