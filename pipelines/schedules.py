"""When the pipeline runs: every 4 months starting in May (1 January, 1 May and
1 September, America/Sao_Paulo), and, after a failed attempt, once a day until an
attempt succeeds. The retry state is derived from the attempts recorded in
``logs.execucoes``, so it survives a restart of the scheduler process.

The decision is a pure function of (now, recorded attempts); ``Scheduler`` adds an
injected clock and an injected attempt so tests never sleep for days.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Protocol

import pendulum
from prefect.schedules import Schedule
from prefect.schedules.clocks import CronClock

from pipelines import database
from pipelines.constants import SCHEDULER_FLOW

# Not under "pipelines": the flows an attempt runs re-route the "pipelines" loggers to their own
# log files, and the scheduler's decisions must stay in the scheduler's log.
logger = logging.getLogger("agendador")

TIMEZONE = "America/Sao_Paulo"
# The original used "0 0 1 5/4 *", which never fires in January.
CRON = "0 0 1 1,5,9 *"
MATERIALIZE_CRON = "0 1 1 1,5,9 *"  # for the Prefect Server: 1 hour after the capture, on the same dates
RETRY_INTERVAL = timedelta(days=1)


def cron_schedule(cron: str) -> Schedule:
    return Schedule(clocks=[CronClock(cron, start_date=pendulum.datetime(2019, 1, 1, tz=TIMEZONE))])


SCHEDULE = cron_schedule(CRON)


def next_runs(after: datetime, count: int = 1) -> list[datetime]:
    """The next scheduled dates strictly after ``after``."""
    return SCHEDULE.next(count, after=pendulum.instance(after))


def current_cycle(now: datetime) -> datetime:
    """The latest scheduled date at or before ``now`` (the cycle an attempt belongs to)."""
    candidates = SCHEDULE.next(3, after=pendulum.instance(now) - timedelta(days=125))
    return [moment for moment in candidates if moment <= now][-1]


@dataclass(frozen=True)
class Attempt:
    cycle: datetime
    started_at: datetime
    succeeded: bool


@dataclass(frozen=True)
class Decision:
    action: str              # "run" or "wait"
    reason: str              # "agendada", "repeticao", "concluida", "aguardando_repeticao"
    cycle: datetime
    wake_at: datetime        # when to decide again (== now for "run")

    @property
    def run_now(self) -> bool:
        return self.action == "run"


def decide(now: datetime, attempts: list[Attempt]) -> Decision:
    """What to do at ``now`` given the attempts recorded so far."""
    cycle = current_cycle(now)
    following = next_runs(cycle)[0]
    in_cycle = [a for a in attempts if a.cycle == cycle]
    if any(a.succeeded for a in in_cycle):
        return Decision("wait", "concluida", cycle, following)
    if not in_cycle:
        return Decision("run", "agendada", cycle, now)
    retry_at = max(a.started_at for a in in_cycle) + RETRY_INTERVAL
    if now >= retry_at:
        return Decision("run", "repeticao", cycle, now)
    return Decision("wait", "aguardando_repeticao", cycle, min(retry_at, following))


class Clock(Protocol):
    def now(self) -> datetime: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return pendulum.now(TIMEZONE)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class AttemptStore(Protocol):
    def attempts(self) -> list[Attempt]: ...
    def start(self, attempt_id: str, cycle: datetime, reason: str, started_at: datetime) -> None: ...
    def finish(self, attempt_id: str, succeeded: bool, message: str, finished_at: datetime) -> None: ...


class Scheduler:
    """Runs ``attempt`` when ``decide`` says so and sleeps on ``clock`` in between."""

    def __init__(self, clock: Clock, store: AttemptStore, attempt: Callable[[str], tuple[bool, str]],
                 max_sleep_seconds: float = 3600):
        self.clock, self.store, self.attempt = clock, store, attempt
        self.max_sleep_seconds = max_sleep_seconds
        self._last_wait: tuple | None = None  # the last "wait" logged, to log each decision once
        self.last_succeeded: bool | None = None

    def step(self) -> Decision:
        """Decide once; run an attempt if it is due. Returns the decision taken."""
        now = self.clock.now()
        decision = decide(now, self.store.attempts())
        if not decision.run_now:
            if (decision.reason, decision.wake_at) == self._last_wait:
                return decision
            self._last_wait = (decision.reason, decision.wake_at)
            if decision.reason == "concluida":
                logger.info("Ciclo de %s concluído com sucesso. Próxima execução agendada: %s.",
                            decision.cycle.strftime("%d/%m/%Y"), _fmt(decision.wake_at))
            else:
                logger.info("Última tentativa do ciclo de %s falhou. Nova tentativa (repetição diária) em %s.",
                            decision.cycle.strftime("%d/%m/%Y"), _fmt(decision.wake_at))
            return decision
        self.run_attempt(decision.cycle, decision.reason, now)
        return decision

    def run_attempt(self, cycle: datetime, reason: str, now: datetime | None = None) -> None:
        """Record and run one attempt of ``cycle`` (``reason``: agendada, repeticao or manual)."""
        now = now or self.clock.now()
        attempt_id = str(uuid.uuid4())
        kinds = {"agendada": "execução agendada", "repeticao": "repetição diária após falha",
                 "manual": "execução pedida agora"}
        logger.info("Iniciando %s do ciclo de %s (tentativa %s).", kinds[reason], cycle.strftime("%d/%m/%Y"),
                    attempt_id)
        self.store.start(attempt_id, cycle, reason, now)
        try:
            succeeded, message = self.attempt(attempt_id)
        except Exception as exc:  # an attempt that crashes is a failed attempt, not a dead scheduler
            succeeded, message = False, f"{type(exc).__name__}: {exc}"
        self.store.finish(attempt_id, succeeded, message, self.clock.now())
        if succeeded:
            suffix = " (repetição bem-sucedida)" if reason == "repeticao" else ""
            logger.info("Tentativa %s concluída com sucesso%s. Próxima execução agendada: %s.", attempt_id, suffix,
                        _fmt(next_runs(cycle)[0]))
        else:
            logger.warning("Tentativa %s falhou: %s. Nova tentativa agendada para %s.", attempt_id, message,
                           _fmt(self.clock.now() + RETRY_INTERVAL))
        self.last_succeeded = succeeded

    def run_now(self) -> bool:
        """An attempt right now, whatever the schedule says (``--agora``); True if it succeeded.
        It counts for the current cycle: a failure starts the daily retries."""
        self.run_attempt(current_cycle(self.clock.now()), "manual")
        return self.last_succeeded

    def run_forever(self, stop: Callable[[], bool] = lambda: False,
                    after_step: Callable[[], None] = lambda: None) -> None:
        """Decide, run what is due, sleep until the next decision (in chunks of at most
        ``max_sleep_seconds``, so a restart or a new attempt record is noticed)."""
        while not stop():
            decision = self.step()
            after_step()
            if decision.run_now:
                continue
            wait = (decision.wake_at - self.clock.now()).total_seconds()
            self.clock.sleep(min(max(wait, 1), self.max_sleep_seconds))


def _fmt(moment: datetime) -> str:
    return pendulum.instance(moment).in_timezone(TIMEZONE).format("DD/MM/YYYY HH:mm (z)")


class PostgresAttemptStore:
    """Attempts recorded as runs of the scheduler in ``logs.execucoes``."""

    def __init__(self, settings):
        self.settings = settings

    def attempts(self) -> list[Attempt]:
        return [Attempt(pendulum.parse(cycle).in_timezone(TIMEZONE), started, state == "Success")
                for cycle, started, state in database.scheduler_attempts(self.settings, SCHEDULER_FLOW)]

    def start(self, attempt_id: str, cycle: datetime, reason: str, started_at: datetime) -> None:
        database.start_run(self.settings, attempt_id, SCHEDULER_FLOW, started_at,
                           {"ciclo": pendulum.instance(cycle).isoformat(), "tipo": reason})

    def finish(self, attempt_id: str, succeeded: bool, message: str, finished_at: datetime) -> None:
        database.finish_run(self.settings, attempt_id, "Success" if succeeded else "Failed", message, finished_at)
