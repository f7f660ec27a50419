"""Scheduling: the 4-monthly dates, daily retries until success (state in PostgreSQL,
surviving a restart), all on an injected clock; and no double capture."""

from datetime import timedelta

import pendulum
import pytest

from pipelines.flows import capture_flow
from pipelines.schedules import CRON, TIMEZONE, Attempt, PostgresAttemptStore, Scheduler, decide, next_runs
from pipelines.scheduled import run_scheduled_pipeline
from pipelines.settings import load_settings
from tests.conftest import query


def at(text):
    return pendulum.parse(text, tz=TIMEZONE)


@pytest.mark.parametrize("now, expected", [
    ("2026-01-01T00:00:00", ["2026-05-01", "2026-09-01", "2027-01-01"]),
    ("2026-02-14T10:00:00", ["2026-05-01", "2026-09-01", "2027-01-01"]),
    ("2026-04-30T23:59:59", ["2026-05-01", "2026-09-01", "2027-01-01"]),
    ("2026-05-01T00:00:01", ["2026-09-01", "2027-01-01", "2027-05-01"]),
    ("2026-08-31T12:00:00", ["2026-09-01", "2027-01-01", "2027-05-01"]),
    ("2026-12-31T23:59:00", ["2027-01-01", "2027-05-01", "2027-09-01"]),
])
def test_next_dates_are_january_may_and_september(now, expected):
    runs = next_runs(at(now), 3)
    assert [r.format("YYYY-MM-DD") for r in runs] == expected
    assert all((r.hour, r.minute, r.timezone_name) == (0, 0, TIMEZONE) for r in runs)
    assert CRON == "0 0 1 1,5,9 *"


def test_decisions_without_the_database():
    cycle = at("2026-09-01T00:00:00")
    assert decide(at("2026-09-01T00:00:00"), []).reason == "agendada"
    failed = [Attempt(cycle, at("2026-09-01T00:00:05"), False)]
    waiting = decide(at("2026-09-01T08:00:00"), failed)
    assert (waiting.action, waiting.reason, waiting.wake_at) == ("wait", "aguardando_repeticao",
                                                                 at("2026-09-02T00:00:05"))
    assert decide(at("2026-09-02T00:00:05"), failed).reason == "repeticao"
    done = failed + [Attempt(cycle, at("2026-09-02T00:00:05"), True)]
    finished = decide(at("2026-09-03T00:00:00"), done)
    assert (finished.reason, finished.wake_at) == ("concluida", at("2027-01-01T00:00:00"))
    # a failure late in a cycle never retries past the next scheduled date
    late = [Attempt(cycle, at("2026-12-31T12:00:00"), False)]
    assert decide(at("2026-12-31T13:00:00"), late).wake_at == at("2027-01-01T00:00:00")
    assert decide(at("2027-01-01T00:00:00"), late).reason == "agendada"


class FakeClock:
    def __init__(self, start):
        self.current = start
        self.slept = 0.0

    def now(self):
        return self.current

    def sleep(self, seconds):
        self.slept += seconds
        self.current = self.current + timedelta(seconds=seconds)


class ScriptedAttempt:
    """Fails the first ``failures`` attempts, then succeeds; records when it ran."""

    def __init__(self, clock, failures):
        self.clock, self.failures, self.calls = clock, failures, []

    def __call__(self, attempt_id):
        self.calls.append(self.clock.now())
        if len(self.calls) <= self.failures:
            return False, "portal fora do ar (HTTP 503)"
        return True, "período capturado e materializado"


def scheduler_runs(db):
    return query(db, "SELECT parametros->>'tipo', estado_final, iniciado_em FROM logs.execucoes "
                     "WHERE nome_flow = 'adm_cgu_terceirizados__agendador' ORDER BY iniciado_em")


def test_failure_then_daily_retries_until_success(db, settings, caplog):
    clock = FakeClock(at("2026-09-01T00:00:00"))
    attempt = ScriptedAttempt(clock, failures=2)
    scheduler = Scheduler(clock, PostgresAttemptStore(settings), attempt, max_sleep_seconds=6 * 3600)
    with caplog.at_level("INFO", logger="agendador"):
        scheduler.run_forever(stop=lambda: clock.now() >= at("2026-12-31T00:00:00"))
    assert [c.format("YYYY-MM-DD HH:mm") for c in attempt.calls] == [
        "2026-09-01 00:00", "2026-09-02 00:00", "2026-09-03 00:00"]
    runs = scheduler_runs(db)
    assert [(kind, state) for kind, state, _ in runs] == [
        ("agendada", "Failed"), ("repeticao", "Failed"), ("repeticao", "Success")]
    messages = caplog.text
    assert "Nova tentativa agendada para 02/09/2026" in messages
    assert "concluída com sucesso (repetição bem-sucedida). Próxima execução agendada: 01/01/2027" in messages
    assert messages.count("Ciclo de 01/09/2026 concluído com sucesso") == 1  # logged once, not at every wake-up


def test_restart_in_the_middle_of_a_retry_series(db, settings):
    first_clock = FakeClock(at("2026-05-01T00:00:00"))
    first = ScriptedAttempt(first_clock, failures=10)
    Scheduler(first_clock, PostgresAttemptStore(settings), first).run_forever(
        stop=lambda: first_clock.now() >= at("2026-05-02T12:00:00"))
    assert len(first.calls) == 2  # 05-01 and the retry on 05-02, then the process "dies"

    second_clock = FakeClock(at("2026-05-02T18:00:00"))  # a new process, a few hours later
    second = ScriptedAttempt(second_clock, failures=0)
    restarted = Scheduler(second_clock, PostgresAttemptStore(settings), second)
    decision = restarted.step()
    assert (decision.reason, decision.wake_at) == ("aguardando_repeticao", at("2026-05-03T00:00:00"))
    restarted.run_forever(stop=lambda: second_clock.now() >= at("2026-06-01T00:00:00"))
    assert [c.format("YYYY-MM-DD HH:mm") for c in second.calls] == ["2026-05-03 00:00"]
    assert [state for _, state, _ in scheduler_runs(db)] == ["Failed", "Failed", "Success"]


def test_crashing_attempt_counts_as_failure(db, settings):
    clock = FakeClock(at("2027-01-01T00:00:00"))

    def crash(_attempt_id):
        raise RuntimeError("sem rede")

    Scheduler(clock, PostgresAttemptStore(settings), crash).step()
    [(kind, state, _)] = scheduler_runs(db)
    assert (kind, state) == ("agendada", "Failed")
    assert query(db, "SELECT mensagem FROM logs.execucoes WHERE nome_flow = 'adm_cgu_terceirizados__agendador'") \
        == [("RuntimeError: sem rede",)]


def test_attempt_does_not_capture_twice(db, fresh_portal, monkeypatch):
    monkeypatch.setenv("CGU_TERCEIRIZADOS_URL", fresh_portal.page_url)
    settings = load_settings()
    first = run_scheduled_pipeline(settings, "tentativa-1")
    assert first == (True, "Período 2024-05 capturado e materializado.")
    captures = query(db, "SELECT count(*) FROM logs.execucoes WHERE nome_flow = %s", (capture_flow.name,))
    second = run_scheduled_pipeline(settings, "tentativa-2")
    assert second == (True, "Período mais recente (2024-05) já capturado e materializado: nada a fazer.")
    assert query(db, "SELECT count(*) FROM logs.execucoes WHERE nome_flow = %s", (capture_flow.name,)) == captures
    assert query(db, "SELECT count(*) FROM staging.transformed") == [
        (fresh_portal.portal.expectations["2024-05"].loaded_rows,)]


def test_manual_attempt_counts_for_the_cycle(db, settings):
    clock = FakeClock(at("2026-11-28T15:00:00"))
    failing = Scheduler(clock, PostgresAttemptStore(settings), ScriptedAttempt(clock, failures=1))
    assert failing.run_now() is False
    decision = failing.step()  # the manual failure starts the daily retries of the September cycle
    assert (decision.reason, decision.wake_at) == ("aguardando_repeticao", at("2026-11-29T15:00:00"))
    assert [(kind, state) for kind, state, _ in scheduler_runs(db)] == [("manual", "Failed")]
