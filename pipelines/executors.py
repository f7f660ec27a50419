"""The Prefect executor for flows that map over periods."""

from __future__ import annotations

import logging

from prefect.executors import DaskExecutor, LocalDaskExecutor

from pipelines.settings import Settings

logger = logging.getLogger("pipelines.executors")


def parallel_executor(settings: Settings, workers: int | None = None):
    """``DaskExecutor`` on the cluster at DASK_SCHEDULER_ADDRESS when set, otherwise a
    ``LocalDaskExecutor`` with processes (parsing is CPU-bound: threads would share one core)."""
    if settings.dask_scheduler_address:
        logger.info("Executando no cluster Dask em %s.", settings.dask_scheduler_address)
        return DaskExecutor(address=settings.dask_scheduler_address)
    return LocalDaskExecutor(scheduler="processes", num_workers=workers or settings.parallel_workers)
