"""What a flow (or the scheduler) does first: runs left Running by a process that died
are marked ``Interrompida``, and the log records of any run that did not reach the
database (a crash, a database outage at the end of the run) are loaded."""

from __future__ import annotations

import logging

from pipelines import logs, runs
from pipelines.settings import Settings

logger = logging.getLogger("pipelines.recovery")


def recover_runs(settings: Settings) -> list[str]:
    """Mark interrupted runs and load pending log records; returns the interrupted run ids."""
    interrupted = [run_id for run_id, _ in runs.mark_interrupted_runs(settings)]
    pending = logs.pending_runs(settings.log_dir)
    if not pending:
        return interrupted
    states = runs.run_states(settings, [run_id for run_id, _ in pending])
    for run_id, path in pending:
        if states.get(run_id) in (None, "Running"):
            continue  # a live run (or one of the scheduler's sessions): its own upload loads it
        records = [r for r in logs.read_pending(path) if r.get("id_execucao") == run_id]
        added = runs.insert_log_records(settings, records, replace=False)
        path.unlink(missing_ok=True)
        logger.info("%d registro(s) de log da execução %s (%s) recuperados de %s.", added, run_id, states[run_id], path)
    return interrupted
