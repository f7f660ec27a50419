"""When the scheduled pipeline works.

One schedule, ``SCHEDULE``, fires every day at 00:00 America/Sao_Paulo; it is the schedule of
the registered flow (``pipelines.flows.pipeline_flow``, fired by Prefect Server) and the one
the local scheduler (``pipelines.scheduled.LocalScheduler``) follows. At each run the pure
function ``decide(now, attempts)`` says whether that day has work:

- a cycle date (1 January, 1 May, 1 September: every 4 months from May, when the CGU
  publishes), or a cycle whose date passed without any attempt: ``agendada``;
- the day after a failed attempt of the current cycle: ``repeticao`` (daily, until one succeeds);
- otherwise nothing (the run is Skipped, with the reason).

The attempts are rows of ``logs.execucoes`` (``PostgresAttemptStore``), so the retry series
survives restarts of either runtime. Anything but 'Success' (Failed, Interrompida, a row
still 'Running') is not a success.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

import pendulum
from prefect.schedules import Schedule
from prefect.schedules.clocks import CronClock

from pipelines import runs
from pipelines.constants import SCHEDULER_FLOW

TIMEZONE = "America/Sao_Paulo"
# The cycle dates. The original used "0 0 1 5/4 *", which never fires in January.
CYCLE_CRON = "0 0 1 1,5,9 *"
# When the scheduled pipeline runs (and decides): every day at 00:00.
DAILY_CRON = "0 0 * * *"
START_DATE = pendulum.datetime(2018, 1, 1, tz=TIMEZONE)


def cron_schedule(cron: str) -> Schedule:
    """A Prefect schedule of ``cron`` in Sao Paulo time (a day without 00:00, when DST
    started at midnight, fires at the day's first instant)."""
    return Schedule(clocks=[CronClock(cron, start_date=START_DATE)])


# The one schedule both runtimes fire.
SCHEDULE = cron_schedule(DAILY_CRON)
# The calendar of cycle dates the decision aims at (never fired by itself).
CYCLE_DATES = cron_schedule(CYCLE_CRON)


def next_cycle_dates(after: datetime, count: int = 1) -> list[datetime]:
    """The cycle dates strictly after ``after``."""
    return CYCLE_DATES.next(count, after=pendulum.instance(after))


def current_cycle(now: datetime) -> datetime:
    """The latest cycle date at or before ``now`` (the cycle an attempt belongs to)."""
    candidates = CYCLE_DATES.next(3, after=pendulum.instance(now).subtract(days=125))
    return [moment for moment in candidates if moment <= now][-1]


def next_run_time(after: datetime) -> datetime:
    """The schedule's next time strictly after ``after``."""
    return SCHEDULE.next(1, after=pendulum.instance(after))[0]


def latest_run_time(now: datetime) -> datetime:
    """The schedule's latest time at or before ``now``."""
    candidates = SCHEDULE.next(4, after=pendulum.instance(now).subtract(days=3))
    return [moment for moment in candidates if moment <= now][-1]


def format_time(moment: datetime) -> str:
    """Sao Paulo time, as users read it ("02/09/2026 00:00 (horário de Brasília)")."""
    return pendulum.instance(moment).in_timezone(TIMEZONE).format("DD/MM/YYYY HH:mm") + " (horário de Brasília)"


def format_date(moment: datetime) -> str:
    return pendulum.instance(moment).in_timezone(TIMEZONE).format("DD/MM/YYYY")


@dataclass(frozen=True)
class Attempt:
    cycle: datetime
    started_at: datetime
    succeeded: bool


class Action(StrEnum):
    RUN = "run"
    WAIT = "wait"


class Reason(StrEnum):
    """Why the pipeline runs or waits. The values are what users read: they are stored as
    the attempt's ``tipo`` in ``logs.execucoes``."""

    SCHEDULED = "agendada"
    RETRY = "repeticao"
    DONE = "concluida"
    WAITING_RETRY = "aguardando_repeticao"
    MANUAL = "manual"  # an attempt asked for now (--agora), counted for the cycle


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: Reason
    cycle: datetime
    wake_at: datetime  # when there is work again (== now for Action.RUN)
    last_attempt: datetime | None = None

    @property
    def run_now(self) -> bool:
        return self.action is Action.RUN

    @property
    def message(self) -> str:
        """The decision in words, for the run's state, the logs and the Prefect UI."""
        cycle = format_date(self.cycle)
        if self.reason is Reason.SCHEDULED:
            return f"Execução agendada do ciclo de {cycle}: captura e materialização do período mais recente."
        if self.reason is Reason.RETRY:
            return (
                f"Repetição diária do ciclo de {cycle}: a última tentativa "
                f"({pendulum.instance(self.last_attempt).in_timezone(TIMEZONE).format('DD/MM/YYYY HH:mm')}) "
                "não teve sucesso."
            )
        if self.reason is Reason.DONE:
            return (
                f"Nada a fazer hoje: o ciclo de {cycle} já foi concluído com sucesso. "
                f"Próxima execução agendada: {format_time(self.wake_at)}."
            )
        return (
            f"Nada a fazer agora: a última tentativa do ciclo de {cycle} não teve sucesso. "
            f"Nova tentativa (repetição diária) em {format_time(self.wake_at)}."
        )


def decide(now: datetime, attempts: list[Attempt]) -> Decision:
    """What the scheduled pipeline does at ``now`` given the attempts recorded so far.

    A failed attempt is retried by the schedule's next daily run after it (not 24 hours
    later, so a run that starts a few seconds late does not push the retry a day away)."""
    cycle = current_cycle(now)
    following = next_cycle_dates(cycle)[0]
    in_cycle = [a for a in attempts if a.cycle == cycle]
    if any(a.succeeded for a in in_cycle):
        return Decision(Action.WAIT, Reason.DONE, cycle, following)
    if not in_cycle:
        return Decision(Action.RUN, Reason.SCHEDULED, cycle, now)
    last = max(a.started_at for a in in_cycle)
    retry_at = next_run_time(last)
    if now >= retry_at:
        return Decision(Action.RUN, Reason.RETRY, cycle, now, last)
    return Decision(Action.WAIT, Reason.WAITING_RETRY, cycle, min(retry_at, following), last)


class Clock(Protocol):
    def now(self) -> datetime: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return pendulum.now(TIMEZONE)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class PostgresAttemptStore:
    """The scheduled pipeline's attempts: rows of ``logs.execucoes`` named SCHEDULER_FLOW,
    with the cycle and the kind (agendada, repeticao, manual) in ``parametros``."""

    def __init__(self, settings):
        self.settings = settings

    def attempts(self) -> list[Attempt]:
        return [
            Attempt(pendulum.parse(cycle).in_timezone(TIMEZONE), started, state == "Success")
            for cycle, started, state in runs.scheduler_attempts(self.settings, SCHEDULER_FLOW)
        ]

    def start(
        self, attempt_id: str, cycle: datetime, reason: str, started_at: datetime, run_id: str | None = None
    ) -> None:
        parameters = {"ciclo": pendulum.instance(cycle).isoformat(), "tipo": reason}
        if run_id:
            parameters["execucao"] = run_id  # the pipeline's flow run (its logs in logs.registros)
        runs.start_run(self.settings, attempt_id, SCHEDULER_FLOW, started_at, parameters)

    def finish(self, attempt_id: str, succeeded: bool, message: str, finished_at: datetime) -> None:
        runs.finish_run(self.settings, attempt_id, "Success" if succeeded else "Failed", message, finished_at)
