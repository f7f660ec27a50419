"""The local runtime of the scheduled pipeline: ``pipeline_flow`` run with ``flow.run()`` at
every time of its own schedule (``pipeline_flow.schedule``, 00:00 daily in Sao Paulo), the
same flow and schedule Prefect Server fires. The flow decides; this loop only keeps time.

Why a loop and not ``flow.run()`` on the schedule: Prefect 1 reuses one flow run id for
every scheduled run of a ``flow.run()`` (one row of ``logs.execucoes`` and one log for all of
them), sleeps on the wall clock (no injected clock in tests) and gives up on a run that
could not start. Here each run gets its own id, the clock is injected, and a run that could
not decide (PostgreSQL down, a crash) is logged and repeated at the next tick, for the same
scheduled time, until it does: only a signal stops the loop.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from prefect.engine.state import State

from pipelines.constants import SCHEDULED_TIME_KEY, SCHEDULER_LOGGER
from pipelines.flows import pipeline_flow
from pipelines.schedules import Clock, format_time, latest_run_time, next_run_time
from pipelines.settings import Settings
from pipelines.tasks import configure_retries

logger = logging.getLogger(SCHEDULER_LOGGER)
# The scheduler's own log: not propagated to "pipelines", whose handlers belong to the flow
# run in progress (its decisions must stay in the scheduler's log).
logger.propagate = False

DEFAULT_TICK_SECONDS = 60

RunPipeline = Callable[..., "tuple[State, str]"]


def run_pipeline(settings: Settings, scheduled_time: datetime, manual: bool = False) -> tuple[State, str]:
    """One local run of the scheduled pipeline for ``scheduled_time``: (final state, run id)."""
    configure_retries(pipeline_flow, settings)
    run_id = str(uuid.uuid4())
    state = pipeline_flow.run(
        parameters={"manual": manual},
        run_on_schedule=False,
        context={"flow_run_id": run_id, SCHEDULED_TIME_KEY: scheduled_time},
    )
    return state, run_id


def decision_taken(state: State) -> bool:
    """True when the run got past its decision: it skipped, or it made (or failed) an attempt.
    False when the decision itself failed or never ran: that run is to be repeated."""
    if not state.is_failed():
        return True
    results = state.result if isinstance(state.result, dict) else {}
    decisions = [s for task, s in results.items() if task.name == "decide_scheduled_run"]
    return bool(decisions) and decisions[0].is_finished() and not decisions[0].is_failed()


class LocalScheduler:
    """Runs ``run(scheduled_time, manual)`` at start-up and at every time of the schedule,
    waking at least every ``tick_seconds``; never raises out of a run."""

    def __init__(
        self,
        clock: Clock,
        run: RunPipeline,
        tick_seconds: float = DEFAULT_TICK_SECONDS,
        after_run: Callable[[], None] = lambda: None,
    ):
        self.clock, self.run, self.tick_seconds, self.after_run = clock, run, tick_seconds, after_run

    def run_once(self, scheduled_time: datetime, manual: bool = False) -> State | None:
        """One run; its outcome (or why it could not run) is logged. None when it raised."""
        when = format_time(scheduled_time)
        try:
            state, run_id = self.run(scheduled_time, manual)
        except Exception as exc:  # a crashing run is a failed run, not a dead scheduler
            logger.error(
                "Falha ao executar o pipeline agendado de %s: %s: %s. Nova tentativa em %g s.",
                when,
                type(exc).__name__,
                exc,
                self.tick_seconds,
            )
            state = None
        else:
            if state.is_skipped():
                logger.info("Execução %s de %s: %s", run_id, when, state.message)
            elif state.is_successful():
                logger.info("Execução %s de %s concluída com sucesso: %s", run_id, when, state.message)
            elif decision_taken(state):
                logger.warning("Execução %s de %s falhou: %s", run_id, when, state.message)
            else:
                logger.error(
                    "Execução %s de %s não chegou a decidir: %s. Nova tentativa em %g s.",
                    run_id,
                    when,
                    state.message,
                    self.tick_seconds,
                )
        try:
            self.after_run()
        except Exception as exc:
            logger.warning("Não foi possível carregar os registros do agendador no PostgreSQL: %s", exc)
        return state

    def step(self) -> State | None:
        """One run now, as at a time of the schedule (``--uma-vez``)."""
        return self.run_once(self.clock.now())

    def run_now(self) -> bool:
        """An attempt now, whatever the calendar says (``--agora``); True if it succeeded.
        It counts for the current cycle: a failure starts the daily retries."""
        state = self.run_once(self.clock.now(), manual=True)
        return state is not None and state.is_successful()

    def run_forever(self, stop: Callable[[], bool] = lambda: False) -> None:
        """Run at start-up, then at every time of the schedule. A run that did not get
        past its decision is repeated at the next tick for the same time; a late run
        stands for the latest time passed (one run, not one per missed day)."""
        due = self.clock.now()
        while not stop():
            now = self.clock.now()
            if due <= now:
                due = max(due, latest_run_time(now))
                state = self.run_once(due)
                if state is not None and decision_taken(state):
                    due = next_run_time(self.clock.now())
            wait = (due - self.clock.now()).total_seconds()
            self.clock.sleep(min(wait, self.tick_seconds) if wait > 0 else self.tick_seconds)
