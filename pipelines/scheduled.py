"""One attempt of the scheduled pipeline: capture and materialize the newest period,
unless that period is already captured and materialized."""

from __future__ import annotations

import logging

from pipelines import capture, database
from pipelines.flows import capture_flow, materialize_flow
from pipelines.runner import execute
from pipelines.settings import Settings

logger = logging.getLogger("agendador")


def run_scheduled_pipeline(settings: Settings, attempt_id: str) -> tuple[bool, str]:
    """(succeeded, message). Never captures twice: a newest period already captured and
    materialized ends the attempt as a success."""
    newest = capture.discover_published_files(settings)[0]
    if database.newest_period_materialized(settings, newest.period):
        message = f"Período mais recente ({newest.label}) já capturado e materializado: nada a fazer."
        logger.info(message)
        return True, message
    logger.info("Tentativa %s: capturando e materializando o período %s.", attempt_id, newest.label)
    for flow in (capture_flow, materialize_flow):
        state, run_id = execute(flow, settings, {"url": settings.portal_url} if flow is capture_flow else {})
        if not state.is_successful():
            return False, f"{flow.name} falhou (execução {run_id}): {state.message}"
    return True, f"Período {newest.label} capturado e materializado."
