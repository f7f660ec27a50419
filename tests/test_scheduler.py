"""Scheduling without running the pipeline: the one daily schedule (00:00 in Sao Paulo),
the 4-monthly cycle dates, the pure decision (scheduled date, daily retry after a failure,
nothing due) and the local runner's loop on an injected clock (no sleeping)."""

import logging
from contextlib import contextmanager
from datetime import timedelta

import pendulum
import pytest
from prefect.engine.state import Failed, Skipped, Success

from pipelines import database, runs
from pipelines.constants import SCHEDULER_LOGGER
from pipelines.flows import pipeline_flow
from pipelines.scheduled import LocalScheduler
from pipelines.schedules import (
    CYCLE_CRON,
    DAILY_CRON,
    SCHEDULE,
    TIMEZONE,
    Attempt,
    PostgresAttemptStore,
    current_cycle,
    decide,
    next_cycle_dates,
)


def at(text):
    return pendulum.parse(text, tz=TIMEZONE)


# -- when ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "now, expected",
    [
        ("2026-01-01T00:00:00", ["2026-05-01", "2026-09-01", "2027-01-01"]),
        ("2026-02-14T10:00:00", ["2026-05-01", "2026-09-01", "2027-01-01"]),
        ("2026-04-30T23:59:59", ["2026-05-01", "2026-09-01", "2027-01-01"]),
        ("2026-05-01T00:00:01", ["2026-09-01", "2027-01-01", "2027-05-01"]),
        ("2026-08-31T12:00:00", ["2026-09-01", "2027-01-01", "2027-05-01"]),
        ("2026-12-31T23:59:00", ["2027-01-01", "2027-05-01", "2027-09-01"]),
    ],
)
def test_cycle_dates_are_january_may_and_september(now, expected):
    dates = next_cycle_dates(at(now), 3)
    assert [d.format("YYYY-MM-DD") for d in dates] == expected
    assert all((d.hour, d.minute, d.timezone_name) == (0, 0, TIMEZONE) for d in dates)
    assert CYCLE_CRON == "0 0 1 1,5,9 *"
    assert current_cycle(at(now)) == at(
        {
            "2026-01-01": "2025-09-01",
            "2026-05-01": "2026-01-01",
            "2026-09-01": "2026-05-01",
            "2027-01-01": "2026-09-01",
        }[expected[0]]
    )


@pytest.mark.parametrize(
    "after, expected",
    [
        # Brazilian DST started at midnight on 2018-11-04: that day begins at 01:00 (-02)
        (
            "2018-11-02T12:00:00",
            ["2018-11-03T00:00:00-03:00", "2018-11-04T01:00:00-02:00", "2018-11-05T00:00:00-02:00"],
        ),
        # and ended on 2019-02-17 (23:00-23:59 of the 16th happen twice; midnight once)
        (
            "2019-02-15T12:00:00",
            ["2019-02-16T00:00:00-02:00", "2019-02-17T00:00:00-03:00", "2019-02-18T00:00:00-03:00"],
        ),
        (
            "2026-12-30T00:00:00",
            ["2026-12-31T00:00:00-03:00", "2027-01-01T00:00:00-03:00", "2027-01-02T00:00:00-03:00"],
        ),
        (
            "2027-02-27T23:59:59",
            ["2027-02-28T00:00:00-03:00", "2027-03-01T00:00:00-03:00", "2027-03-02T00:00:00-03:00"],
        ),
    ],
)
def test_the_one_schedule_fires_daily_at_midnight_in_sao_paulo(after, expected):
    assert pipeline_flow.schedule is SCHEDULE and DAILY_CRON == "0 0 * * *"
    times = SCHEDULE.next(3, after=at(after))
    assert [t.isoformat() for t in times] == expected
    assert all(t.timezone_name == TIMEZONE for t in times)


def test_a_year_of_the_schedule_is_one_run_per_day_at_the_start_of_the_day():
    times = SCHEDULE.next(366, after=at("2026-12-31T00:00:00"))
    days = [t.date() for t in times]
    assert days[0] == pendulum.date(2027, 1, 1) and days[-1] == pendulum.date(2028, 1, 1)
    assert all(b - a == timedelta(days=1) for a, b in zip(days, days[1:]))
    assert {(t.hour, t.minute, t.second) for t in times} == {(0, 0, 0)}


# -- what -----------------------------------------------------------------------------------


def test_decisions_without_the_database():
    cycle = at("2026-09-01T00:00:00")
    first = decide(at("2026-09-01T00:00:00"), [])
    assert (first.action, first.reason, first.cycle) == ("run", "agendada", cycle)
    failed = [Attempt(cycle, at("2026-09-01T00:00:00"), False)]
    waiting = decide(at("2026-09-01T08:00:00"), failed)
    # the retry is the schedule's next daily run, not "24 hours after the attempt"
    assert (waiting.action, waiting.reason, waiting.wake_at) == (
        "wait",
        "aguardando_repeticao",
        at("2026-09-02T00:00:00"),
    )
    assert decide(at("2026-09-02T00:00:00"), failed).reason == "repeticao"
    # an attempt that started a few seconds late does not push the retry past the next daily run
    late_start = [Attempt(cycle, at("2026-09-01T00:00:07"), False)]
    assert decide(at("2026-09-02T00:00:00"), late_start).reason == "repeticao"
    done = failed + [Attempt(cycle, at("2026-09-02T00:00:00"), True)]
    finished = decide(at("2026-09-03T00:00:00"), done)
    assert (finished.action, finished.reason, finished.wake_at) == ("wait", "concluida", at("2027-01-01T00:00:00"))
    # a failure late in a cycle never retries past the next cycle date, which starts afresh
    late = [Attempt(cycle, at("2026-12-31T12:00:00"), False)]
    assert decide(at("2026-12-31T13:00:00"), late).wake_at == at("2027-01-01T00:00:00")
    assert decide(at("2027-01-01T00:00:00"), late).reason == "agendada"
    # a cycle whose date passed without any attempt is caught up at the next run
    assert decide(at("2027-02-14T00:00:00"), late).reason == "agendada"


def test_interrupted_attempt_counts_as_a_failed_attempt(db, settings):
    """A run left 'Running' by a dead process is later marked 'Interrompida': that is a failure."""
    store = PostgresAttemptStore(settings)
    store.start("interrompida-1", at("2026-05-01T00:00:00"), "agendada", at("2026-05-01T00:00:00"))
    runs.finish_run(settings, "interrompida-1", "Interrompida", "processo encerrado", at("2026-05-01T00:10:00"))
    attempts = store.attempts()
    assert attempts == [Attempt(at("2026-05-01T00:00:00"), at("2026-05-01T00:00:00"), False)]
    assert decide(at("2026-05-01T09:00:00"), attempts).reason == "aguardando_repeticao"
    assert decide(at("2026-05-02T00:00:00"), attempts).reason == "repeticao"
    # still running (no final state yet) is not a success either
    assert decide(
        at("2026-05-02T00:00:00"), [Attempt(at("2026-05-01T00:00:00"), at("2026-05-01T00:00:00"), False)]
    ).run_now


def test_reasons_shown_to_users_are_portuguese():
    cycle = at("2026-09-01T00:00:00")
    failed = [Attempt(cycle, at("2026-09-01T00:00:00"), False)]
    assert decide(at("2026-09-01T00:00:00"), []).message == (
        "Execução agendada do ciclo de 01/09/2026: captura e materialização do período mais recente."
    )
    assert decide(at("2026-09-02T00:00:00"), failed).message == (
        "Repetição diária do ciclo de 01/09/2026: a última tentativa (01/09/2026 00:00) não teve sucesso."
    )
    assert decide(at("2026-09-01T15:00:00"), failed).message == (
        "Nada a fazer agora: a última tentativa do ciclo de 01/09/2026 não teve sucesso. "
        "Nova tentativa (repetição diária) em 02/09/2026 00:00 (horário de Brasília)."
    )
    done = failed + [Attempt(cycle, at("2026-09-02T00:00:00"), True)]
    assert decide(at("2026-09-03T00:00:00"), done).message == (
        "Nada a fazer hoje: o ciclo de 01/09/2026 já foi concluído com sucesso. "
        "Próxima execução agendada: 01/01/2027 00:00 (horário de Brasília)."
    )


# -- the local runner's loop, with a scripted run ------------------------------------------------


class FakeClock:
    def __init__(self, start):
        self.current = start
        self.sleeps = []

    def now(self):
        return self.current

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.current = self.current + timedelta(seconds=seconds)


class ScriptedRun:
    """Stands for one run of the pipeline flow: returns the scripted states (or raises)."""

    def __init__(self, clock, outcomes):
        self.clock, self.outcomes, self.calls = clock, list(outcomes), []

    def __call__(self, scheduled_time, manual=False):
        self.calls.append((self.clock.now().format("MM-DD HH:mm:ss"), scheduled_time.format("MM-DD HH:mm"), manual))
        outcome = self.outcomes.pop(0) if self.outcomes else Skipped("Nada a fazer hoje.")
        if isinstance(outcome, Exception):
            raise outcome
        return outcome, f"execucao-{len(self.calls)}"


def decision_failed():
    """The final state of a run whose decision task could not reach PostgreSQL."""
    return Failed(
        "Não foi possível decidir: PostgreSQL fora do ar.",
        result={pipeline_flow.get_tasks(name="decide_scheduled_run")[0]: Failed("fora do ar")},
    )


@contextmanager
def scheduler_log(caplog):
    """caplog for the scheduler's logger, which does not propagate to the root logger."""
    target = logging.getLogger(SCHEDULER_LOGGER)
    target.addHandler(caplog.handler)
    try:
        with caplog.at_level("INFO", logger=SCHEDULER_LOGGER):
            yield
    finally:
        target.removeHandler(caplog.handler)


def test_local_runner_runs_at_start_up_and_at_every_midnight(caplog):
    clock = FakeClock(at("2026-05-01T10:30:00"))
    run = ScriptedRun(clock, [Success("Período 2024-05 capturado e materializado.")])
    with scheduler_log(caplog):
        LocalScheduler(clock, run, tick_seconds=3600).run_forever(stop=lambda: clock.now() >= at("2026-05-04T12:00"))
    assert run.calls == [
        ("05-01 10:30:00", "05-01 10:30", False),
        ("05-02 00:00:00", "05-02 00:00", False),
        ("05-03 00:00:00", "05-03 00:00", False),
        ("05-04 00:00:00", "05-04 00:00", False),
    ]
    assert max(clock.sleeps) == 3600  # never sleeps past a tick
    assert "concluída com sucesso: Período 2024-05 capturado e materializado." in caplog.text
    assert caplog.text.count("Nada a fazer hoje.") == 3


def test_local_runner_retries_a_failed_decision_at_the_next_tick_and_never_dies(caplog):
    """A run that could not decide (or crashed, or whose log upload failed) is logged and
    repeated at the next tick, for the same scheduled time; only a signal stops the loop."""
    clock = FakeClock(at("2026-09-01T00:00:00"))
    run = ScriptedRun(
        clock,
        [
            decision_failed(),
            RuntimeError("conexão recusada"),
            decision_failed(),
            Success("Período 2024-05 capturado e materializado."),
        ],
    )

    def failing_upload():
        raise ConnectionError("PostgreSQL fora do ar")

    scheduler = LocalScheduler(clock, run, tick_seconds=60, after_run=failing_upload)
    with scheduler_log(caplog):
        scheduler.run_forever(stop=lambda: clock.now() >= at("2026-09-01T00:10:00"))
    assert run.calls == [
        ("09-01 00:00:00", "09-01 00:00", False),
        ("09-01 00:01:00", "09-01 00:00", False),
        ("09-01 00:02:00", "09-01 00:00", False),
        ("09-01 00:03:00", "09-01 00:00", False),
    ]
    assert caplog.text.count("Nova tentativa em 60 s") == 3
    assert "RuntimeError: conexão recusada" in caplog.text
    assert caplog.text.count("Não foi possível carregar os registros do agendador no PostgreSQL") == 4


def test_local_runner_does_not_repeat_a_failed_attempt_before_the_next_day():
    """A failed capture is a decision taken: the retry is the next daily run, not the next tick."""
    clock = FakeClock(at("2026-09-01T00:00:00"))
    failed_attempt = Failed(
        "download_cgu_terceirizados_data: HTTP 404",
        result={pipeline_flow.get_tasks(name="decide_scheduled_run")[0]: Success()},
    )
    run = ScriptedRun(clock, [failed_attempt])
    LocalScheduler(clock, run, tick_seconds=60).run_forever(stop=lambda: clock.now() >= at("2026-09-02T00:00:30"))
    assert [scheduled for _, scheduled, _ in run.calls] == ["09-01 00:00", "09-02 00:00"]


def test_a_late_run_decides_for_the_latest_scheduled_time():
    """Asleep (or without PostgreSQL) for days: one run, for the latest midnight, not one per missed day."""
    clock = FakeClock(at("2026-09-01T00:00:00"))
    run = ScriptedRun(clock, [decision_failed()])
    scheduler = LocalScheduler(clock, run, tick_seconds=3 * 86400)
    scheduler.run_forever(stop=lambda: len(run.calls) >= 2)
    assert run.calls == [("09-01 00:00:00", "09-01 00:00", False), ("09-04 00:00:00", "09-04 00:00", False)]


def test_now_and_once():
    clock = FakeClock(at("2026-11-28T15:00:00"))
    run = ScriptedRun(clock, [Failed("download_cgu_terceirizados_data: HTTP 404"), Skipped("Nada a fazer agora.")])
    scheduler = LocalScheduler(clock, run)
    assert scheduler.run_now() is False
    assert scheduler.step().is_skipped()
    assert run.calls == [("11-28 15:00:00", "11-28 15:00", True), ("11-28 15:00:00", "11-28 15:00", False)]


def test_the_decision_lock_is_its_own():
    """The lock that serialises decisions must not be one the loads or the DDL take."""
    from pipelines.constants import SCHEDULER_LOCK_KEY

    others = {value for name, value in vars(database).items() if name.endswith("_LOCK_KEY")}
    assert others and SCHEDULER_LOCK_KEY not in others
