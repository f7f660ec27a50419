"""The scheduled pipeline: one flow (adm_cgu_terceirizados__pipeline), one daily schedule and
one decision, run on real PostgreSQL and the generated portal the way each runtime runs it:

- "servidor": as Prefect Server's agent runs the registered flow: at every time of its
  schedule, a flow run with a new id and that time as ``scheduled_start_time``;
- "local": ``run/scheduler.py``'s runner (``LocalScheduler``) on an injected clock.

Every scenario runs in both runtimes and must give the same outcome. No test sleeps."""

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import prefect
import pytest
from prefect.engine import signals
from prefect.engine.flow_runner import FlowRunner
from prefect.engine.state import State, TriggerFailed
from prefect.serialization.schedule import ScheduleSchema

from pipelines import constants
from pipelines.demo import PAGE_PATH
from pipelines.flows import capture_flow, materialize_flow, pipeline_flow
from pipelines.runs import finish_run
from pipelines.scheduled import LocalScheduler, run_pipeline
from pipelines.schedules import SCHEDULE, PostgresAttemptStore
from pipelines.tasks import configure_retries, decide_scheduled_run
from tests.conftest import query
from tests.test_results import Proxy
from tests.test_scheduler import FakeClock, at

ROOT = Path(__file__).resolve().parent.parent
NEWEST_FILE = "terceirizados202405.xlsx"
CAPTURED = "Período 2024-05 capturado e materializado."
# What runs on a day with work, in order: set-up, decision, one discovery, the capture's
# tasks, the materialization's tasks, the attempt's record, the logs.
WORK_ORDER = [
    "setup_log_file",
    "decide_scheduled_run",
    "discover_published_files",
    "select_newest_period",
    "skip_if_already_materialized",
    "download_cgu_terceirizados_data",
    "save_raw_data_locally",
    "prepare_dbt",
    "parse_data_into_dataframes",
    "save_data_as_csv_locally",
    "upload_csv_to_database",
    "check_raw_data",
    "dbt_build_staging.raw",
    "dbt_build_staging.cleaned",
    "dbt_build_staging.renamed",
    "dbt_build_staging.transformed",
    "record_materialized_rows",
    "generate_dbt_docs",
    "finish_scheduled_run",
    "upload_logs_to_database",
]
MATERIALIZE_STEPS = [
    "check_raw_data",
    "dbt_build_staging.raw",
    "dbt_build_staging.cleaned",
    "dbt_build_staging.renamed",
    "dbt_build_staging.transformed",
    "record_materialized_rows",
    "generate_dbt_docs",
]


def registered_flows():
    sys.path.insert(0, str(ROOT / "run"))
    import register

    return {flow.name: flow for flow in register.flows_to_register()}


@dataclass
class Run:
    scheduled_time: datetime
    state: State
    run_id: str

    @property
    def outcome(self):
        return self.scheduled_time.format("YYYY-MM-DD HH:mm"), type(self.state).__name__

    def task_states(self):
        return {task.name: state for task, state in self.state.result.items()}


class ServerRuntime:
    """As Prefect Server runs the registered flow: at each time of the flow's own schedule,
    a run with a new flow run id and that time as ``scheduled_start_time`` (what
    CloudFlowRunner puts in the context); a task waiting to retry is resumed, as the
    agent's execution loop does."""

    name = "servidor"

    def __init__(self, settings):
        self.settings = settings
        self.flow = registered_flows()[constants.PIPELINE_FLOW]

    def run_between(self, start, end):
        runs, after = [], start - timedelta(seconds=1)
        while (scheduled := self.flow.schedule.next(1, after=after)[0]) < end:
            runs.append(self.run_at(scheduled))
            after = scheduled
        return runs

    def run_at(self, scheduled):
        configure_retries(self.flow, self.settings)
        run_id = str(uuid.uuid4())
        context = {"flow_run_id": run_id, "scheduled_start_time": scheduled.in_tz("UTC")}
        state = FlowRunner(flow=self.flow).run(return_tasks=self.flow.tasks, context=context)
        for _ in range(10):
            if state.is_finished():
                break
            state = FlowRunner(flow=self.flow).run(
                state=state, task_states=state.result, return_tasks=self.flow.tasks, context=context
            )
        return Run(scheduled, state, run_id)


class LocalRuntime:
    """``run/scheduler.py``'s runner on an injected clock, from ``start`` until ``end``."""

    name = "local"

    def __init__(self, settings):
        self.settings = settings

    def run_between(self, start, end):
        clock, runs = FakeClock(start), []

        def run(scheduled_time, manual=False):
            state, run_id = run_pipeline(self.settings, scheduled_time, manual)
            runs.append(Run(scheduled_time, state, run_id))
            return state, run_id

        LocalScheduler(clock, run, tick_seconds=3600).run_forever(stop=lambda: clock.now() >= end)
        return runs


@pytest.fixture(params=[ServerRuntime, LocalRuntime], ids=["servidor", "local"])
def runtime(request, settings):
    return request.param(settings)


@pytest.fixture
def portal(fresh_portal, monkeypatch):
    monkeypatch.setenv("CGU_TERCEIRIZADOS_URL", fresh_portal.page_url)
    return fresh_portal


def attempts(db):
    return query(
        db,
        "SELECT to_char(iniciado_em AT TIME ZONE 'America/Sao_Paulo', 'YYYY-MM-DD HH24:MI'), "
        "parametros->>'tipo', estado_final, mensagem FROM logs.execucoes "
        "WHERE nome_flow = %s ORDER BY iniciado_em",
        (constants.SCHEDULER_FLOW,),
    )


def transformed_state(db):
    """staging.transformed's rows, as a digest and a count: equal before and after means untouched."""
    return query(db, "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)), count(*) FROM staging.transformed t")


def log_messages(db, run_id):
    return [
        m for (m,) in query(db, "SELECT mensagem FROM logs.registros WHERE id_execucao = %s ORDER BY id", (run_id,))
    ]


# -- the flow and its schedule ------------------------------------------------------------------


def test_registered_pipeline_is_the_one_scheduled_flow_and_serializes_its_schedule():
    registered = registered_flows()
    assert set(registered) == {
        constants.PIPELINE_FLOW,
        constants.HISTORIC_CAPTURE_FLOW,
        constants.HISTORIC_MATERIALIZE_FLOW,
    }
    assert registered[constants.PIPELINE_FLOW] is pipeline_flow and pipeline_flow.schedule is SCHEDULE
    assert registered[constants.HISTORIC_CAPTURE_FLOW].schedule is None  # on demand
    assert registered[constants.HISTORIC_MATERIALIZE_FLOW].schedule is None
    pipeline_flow.validate()
    serialized = pipeline_flow.serialize()
    [clock] = serialized["schedule"]["clocks"]
    assert (clock["cron"], clock["start_date"]["tz"]) == ("0 0 * * *", "America/Sao_Paulo")
    schedule = ScheduleSchema().load(serialized["schedule"])
    assert [t.isoformat() for t in schedule.next(4, after=at("2026-12-30T12:00:00"))] == [
        "2026-12-31T00:00:00-03:00",
        "2027-01-01T00:00:00-03:00",
        "2027-01-02T00:00:00-03:00",
        "2027-01-03T00:00:00-03:00",
    ]
    assert {p["name"]: p["default"] for p in serialized["parameters"]} == {"url": None, "manual": False}
    assert {t.name for t in pipeline_flow.reference_tasks()} == {"finish_scheduled_run", "upload_logs_to_database"}


def test_pipeline_is_built_from_the_capture_and_materialize_steps():
    """Same tasks, same wiring functions: the capture's and materialization's steps appear in
    the pipeline in the same order, the materialization after the load."""

    def work(flow):  # without the parameters and the raw-data hold around the materialization
        return [
            t.name
            for t in flow.sorted_tasks()
            if t.name not in ("url", "manual") and not t.name.startswith("hold_raw_data")
        ]

    order = work(pipeline_flow)
    assert order == WORK_ORDER
    capture_steps = work(capture_flow)[1:-1]  # without set-up and logs
    materialize_steps = work(materialize_flow)[1:-1]
    # the capture's steps, and dbt prepared in the background between saving and parsing the file
    assert capture_steps == WORK_ORDER[2:4] + WORK_ORDER[5:7] + WORK_ORDER[8:11]
    assert materialize_steps == MATERIALIZE_STEPS == WORK_ORDER[11:18]
    [prepare] = pipeline_flow.get_tasks(name="prepare_dbt")
    [parse] = pipeline_flow.get_tasks(name="parse_data_into_dataframes")
    assert [t.name for t in pipeline_flow.upstream_tasks(prepare)] == ["save_raw_data_locally"]
    assert prepare in pipeline_flow.upstream_tasks(parse)
    assert pipeline_flow.constants[parse]["in_child_process"] is True  # on the other core meanwhile
    [capture_parse] = capture_flow.get_tasks(name="parse_data_into_dataframes")
    assert capture_flow.constants[capture_parse]["in_child_process"] is False
    assert not capture_flow.get_tasks(name="prepare_dbt")
    [check] = pipeline_flow.get_tasks(name="check_raw_data")
    assert {t.name for t in pipeline_flow.upstream_tasks(check)} == {"upload_csv_to_database", "hold_raw_data.setup"}
    [hold] = pipeline_flow.get_tasks(name="hold_raw_data")  # held only after the load, never around it
    assert [t.name for t in pipeline_flow.upstream_tasks(hold)] == ["upload_csv_to_database"]
    [release] = pipeline_flow.get_tasks(name="hold_raw_data.cleanup")
    assert "record_materialized_rows" in {t.name for t in pipeline_flow.upstream_tasks(release)}
    assert len(pipeline_flow.get_tasks(name="discover_published_files")) == 1  # the portal is read once


# -- what each day does, in both runtimes ---------------------------------------------------------------


def test_a_day_with_nothing_due_is_skipped_and_captures_nothing(db, settings, portal, runtime):
    store = PostgresAttemptStore(settings)
    store.start("maio", at("2026-05-01T00:00:00"), "agendada", at("2026-05-01T00:00:00"))
    store.finish("maio", True, CAPTURED, at("2026-05-01T00:05:00"))
    [run] = runtime.run_between(at("2026-06-10T00:00:00"), at("2026-06-10T00:00:01"))
    reason = (
        "Nada a fazer hoje: o ciclo de 01/05/2026 já foi concluído com sucesso. "
        "Próxima execução agendada: 01/09/2026 00:00 (horário de Brasília)."
    )
    assert run.outcome == ("2026-06-10 00:00", "Skipped")
    assert run.state.message == reason
    assert portal.hits == {}  # not even the page
    assert query(db, "SELECT count(*) FROM raw.terceirizados") == [(0,)]
    assert [(kind, state) for _, kind, state, _ in attempts(db)] == [("agendada", "Success")]
    assert query(db, "SELECT nome_flow, estado_final FROM logs.execucoes WHERE id_execucao = %s", (run.run_id,)) == [
        (constants.PIPELINE_FLOW, "Skipped")
    ]
    states = run.task_states()
    assert all(states[name].is_skipped() for name in WORK_ORDER[1:-1])
    assert states["upload_logs_to_database"].is_successful() and not states["upload_logs_to_database"].is_skipped()
    assert reason in log_messages(db, run.run_id)  # the reason is in the run's log, in PostgreSQL


def test_first_of_may_captures_then_materializes(db, portal, runtime):
    [run] = runtime.run_between(at("2026-05-01T00:00:00"), at("2026-05-01T00:00:01"))
    assert run.outcome == ("2026-05-01 00:00", "Success")
    assert run.state.message == CAPTURED
    assert attempts(db) == [("2026-05-01 00:00", "agendada", "Success", CAPTURED)]
    expected = portal.portal.expectations["2024-05"]
    assert query(db, "SELECT to_char(periodo, 'YYYY-MM'), count(*) FROM raw.terceirizados GROUP BY 1") == [
        ("2024-05", expected.loaded_rows)
    ]
    assert query(db, "SELECT count(*) FROM staging.transformed") == [(expected.loaded_rows,)]
    assert portal.hits[PAGE_PATH] == 1  # one discovery feeds the check and the capture
    assert portal.hits[portal.file_path(NEWEST_FILE)] == 1
    started = query(
        db,
        "SELECT nome_task FROM logs.registros WHERE id_execucao = %s AND nome_task IS NOT NULL ORDER BY id",
        (run.run_id,),
    )
    assert [name for name in dict.fromkeys(n for (n,) in started) if name in WORK_ORDER] == WORK_ORDER
    assert query(db, "SELECT estado_final FROM logs.execucoes WHERE id_execucao = %s", (run.run_id,)) == [("Success",)]


def test_failed_capture_skips_materialize_and_the_next_days_run_retries(db, portal, runtime):
    newest = portal.file_path(NEWEST_FILE)
    portal.faults[newest] = ["404"]  # the download of 1 September fails; later requests work
    runs = runtime.run_between(at("2026-09-01T00:00:00"), at("2026-09-03T00:00:01"))
    assert [r.outcome for r in runs] == [
        ("2026-09-01 00:00", "Failed"),
        ("2026-09-02 00:00", "Success"),
        ("2026-09-03 00:00", "Skipped"),
    ]
    failed = runs[0]
    assert failed.state.message.startswith("download_cgu_terceirizados_data: ") and "HTTP 404" in failed.state.message
    states = failed.task_states()
    assert all(isinstance(states[name], TriggerFailed) for name in MATERIALIZE_STEPS)  # never ran
    assert states["upload_logs_to_database"].is_successful()
    assert any("HTTP 404" in m for m in log_messages(db, failed.run_id))
    # the run's record says the cause once, by the task that failed (finish_scheduled_run, which
    # records the attempt, restates it: not a second cause)
    [(recorded,)] = query(db, "SELECT mensagem FROM logs.execucoes WHERE id_execucao = %s", (failed.run_id,))
    assert recorded.startswith("Falhou: download_cgu_terceirizados_data: ") and recorded.count("HTTP 404") == 1
    assert attempts(db) == [
        ("2026-09-01 00:00", "agendada", "Failed", failed.state.message),
        ("2026-09-02 00:00", "repeticao", "Success", CAPTURED),
    ]
    assert runs[2].state.message == (
        "Nada a fazer hoje: o ciclo de 01/09/2026 já foi concluído com sucesso. "
        "Próxima execução agendada: 01/01/2027 00:00 (horário de Brasília)."
    )

    # the success stops the retries until 1 January, whose attempt finds nothing new to capture
    later = runtime.run_between(at("2026-12-31T00:00:00"), at("2027-01-01T00:00:01"))
    assert [r.outcome for r in later] == [("2026-12-31 00:00", "Skipped"), ("2027-01-01 00:00", "Success")]
    assert later[1].state.message == "Período mais recente (2024-05) já capturado e materializado: nada a fazer."
    assert attempts(db)[-1] == ("2027-01-01 00:00", "agendada", "Success", later[1].state.message)
    assert portal.hits[newest] == 2  # the failed download and the retry; nothing downloaded on 1 January
    assert all(later[1].task_states()[name].is_skipped() for name in MATERIALIZE_STEPS)


def test_a_restart_in_the_middle_of_a_retry_series_resumes_it(db, portal, runtime):
    portal.faults[portal.file_path(NEWEST_FILE)] = "404"  # every download fails
    first = runtime.run_between(at("2026-05-01T00:00:00"), at("2026-05-02T12:00:00"))
    assert [r.outcome for r in first] == [("2026-05-01 00:00", "Failed"), ("2026-05-02 00:00", "Failed")]
    # the scheduler process (or Prefect Server with its agent) stops, and starts again in the evening
    resumed = runtime.run_between(at("2026-05-02T18:00:00"), at("2026-05-03T00:00:01"))
    assert [r.outcome for r in resumed if not r.state.is_skipped()] == [("2026-05-03 00:00", "Failed")]
    if runtime.name == "local":  # the local runner also decides at start-up
        assert resumed[0].outcome == ("2026-05-02 18:00", "Skipped")
        assert resumed[0].state.message == (
            "Nada a fazer agora: a última tentativa do ciclo de 01/05/2026 não teve sucesso. "
            "Nova tentativa (repetição diária) em 03/05/2026 00:00 (horário de Brasília)."
        )
    assert [(started, kind, state) for started, kind, state, _ in attempts(db)] == [
        ("2026-05-01 00:00", "agendada", "Failed"),
        ("2026-05-02 00:00", "repeticao", "Failed"),
        ("2026-05-03 00:00", "repeticao", "Failed"),
    ]


def test_an_interrupted_attempt_is_retried_the_next_day(db, settings, portal, runtime):
    store = PostgresAttemptStore(settings)
    store.start("morta", at("2026-05-01T00:00:00"), "agendada", at("2026-05-01T00:00:00"))
    finish_run(settings, "morta", "Interrompida", "processo encerrado", at("2026-05-01T00:03:00"))
    portal.faults[portal.file_path(NEWEST_FILE)] = "404"
    [run] = runtime.run_between(at("2026-05-02T00:00:00"), at("2026-05-02T00:00:01"))
    assert run.outcome == ("2026-05-02 00:00", "Failed")
    assert [(kind, state) for _, kind, state, _ in attempts(db)] == [
        ("agendada", "Interrompida"),
        ("repeticao", "Failed"),
    ]


def test_two_runs_for_the_same_day_start_one_attempt(db, settings):
    """Late runs started together (an agent back after a day off): the decision and the attempt's
    record are serialised, so the second run sees the first one's attempt and does not start another."""
    ready, outcomes = threading.Barrier(2), []

    def decide_in_a_run():
        with prefect.context(flow_run_id=str(uuid.uuid4()), scheduled_start_time=at("2026-05-01T00:00:00")):
            ready.wait()
            try:
                outcomes.append(decide_scheduled_run.run())
            except signals.SKIP as skipped:
                outcomes.append(skipped)

    threads = [threading.Thread(target=decide_in_a_run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    [attempt] = [o for o in outcomes if isinstance(o, dict)]
    [skipped] = [o for o in outcomes if isinstance(o, signals.SKIP)]
    assert str(skipped).startswith("Nada a fazer agora: a última tentativa do ciclo de 01/05/2026")
    assert [(kind, state) for _, kind, state, _ in attempts(db)] == [("agendada", "Running")]
    PostgresAttemptStore(settings).finish(attempt["id"], False, "encerrada pelo teste", at("2026-05-01T00:01:00"))


def test_an_attempt_now_counts_for_the_cycle(db, settings, portal):
    """``run/scheduler.py --agora``: an attempt outside the calendar; its failure starts the daily retries."""
    portal.faults[portal.file_path(NEWEST_FILE)] = "404"
    clock = FakeClock(at("2026-11-28T15:00:00"))
    scheduler = LocalScheduler(clock, lambda moment, manual=False: run_pipeline(settings, moment, manual))
    assert scheduler.run_now() is False
    assert scheduler.step().message == (
        "Nada a fazer agora: a última tentativa do ciclo de 01/09/2026 não teve sucesso. "
        "Nova tentativa (repetição diária) em 29/11/2026 00:00 (horário de Brasília)."
    )
    assert [(started, kind, state) for started, kind, state, _ in attempts(db)] == [
        ("2026-11-28 15:00", "manual", "Failed")
    ]


# -- the real scheduler process through a PostgreSQL outage ----------------------------------------------


class Output:
    """The lines a process prints, read on a thread; waits on them with a deadline (no sleeping)."""

    def __init__(self, stream):
        self.lines, self._queue = [], queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            self._queue.put(line)

    def wait_for(self, text, count=1, timeout=120):
        deadline = time.monotonic() + timeout
        while sum(text in line for line in self.lines) < count:
            if not self._next(deadline):
                raise AssertionError(f"{text!r} ({count}x) não apareceu:\n{''.join(self.lines[-60:])}")
        return [line for line in self.lines if text in line]

    def without(self, text, seconds):
        """Read for ``seconds`` (a bounded outage) and check ``text`` never appears."""
        deadline = time.monotonic() + seconds
        while self._next(deadline):
            assert text not in self.lines[-1], self.lines[-1]

    def _next(self, deadline):
        try:
            self.lines.append(self._queue.get(timeout=max(deadline - time.monotonic(), 0.01)))
        except queue.Empty:
            return False
        return True


def start_scheduler(env: dict, *options: str) -> subprocess.Popen:
    """The real local scheduler (``run/scheduler.py``) as a process, its output as text lines."""
    return subprocess.Popen(
        [sys.executable, "run/scheduler.py", *options],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


OUTAGE_SECONDS = 3  # three ticks of the scheduler under test


def test_scheduler_process_survives_a_database_outage(db, settings, portal, tmp_path):
    """PostgreSQL unreachable (through a TCP proxy switched off) for longer than the tick, then
    back: the real scheduler process logs the failed decision, stays alive, repeats the run at
    the next tick and records the attempt; only a signal stops it."""
    proxy = Proxy(settings.postgres_port)
    proxy.cut()  # PostgreSQL unreachable for the scheduler from the start
    cut_at = time.monotonic()
    env = {**os.environ, "POSTGRES_PORT": str(proxy.port), "LOG_DIR": str(tmp_path / "logs"), "PYTHONUNBUFFERED": "1"}
    process = start_scheduler(env, "--intervalo", "1")
    try:
        output = Output(process.stdout)
        output.wait_for("Agendador iniciado")
        output.wait_for("Task 'decide_scheduled_run': Finished task run for task with final state: 'Failed'")
        output.without("concluída com sucesso", OUTAGE_SECONDS - (time.monotonic() - cut_at))
        assert time.monotonic() - cut_at >= OUTAGE_SECONDS
        assert process.poll() is None
        assert attempts(db) == []
        proxy.enabled = True  # PostgreSQL is back
        [failure] = output.wait_for("não chegou a decidir")
        assert "O PostgreSQL está indisponível" in failure and "Nova tentativa em 1 s" in failure
        output.wait_for(f"concluída com sucesso: {CAPTURED}")
        assert process.poll() is None
        [(_, kind, state, message)] = attempts(db)
        assert (kind, state, message) == ("agendada", "Success", CAPTURED)
        assert query(
            db,
            "SELECT estado_final, count(*) FROM logs.execucoes WHERE nome_flow = %s GROUP BY 1",
            (constants.PIPELINE_FLOW,),
        ) == [("Success", 1)]  # the run without PostgreSQL left no row
        assert query(
            db, "SELECT count(*) > 0 FROM logs.registros WHERE nome_flow = %s", (constants.SCHEDULER_FLOW,)
        ) == [(True,)]  # the scheduler's own log, uploaded after each run
        process.send_signal(signal.SIGTERM)  # only a signal stops it
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_single_attempt_stopped_by_a_signal_exits_as_a_failure(db, settings, tmp_path):
    """``--agora`` stopped by SIGTERM in the middle of its attempt (here: waiting for a portal
    that never answers) did not succeed: it exits with 128 + SIGTERM, never 0."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # connections wait in the backlog: the request never gets an answer
    env = {
        **os.environ,
        "LOG_DIR": str(tmp_path / "logs"),
        "DATA_DIR": str(tmp_path / "dados"),
        "CGU_TERCEIRIZADOS_URL": f"http://127.0.0.1:{silent.getsockname()[1]}/cgu/terceirizados",
        "PYTHONUNBUFFERED": "1",
    }
    process = start_scheduler(env, "--agora")
    try:
        Output(process.stdout).wait_for("Task 'discover_published_files': Starting task run")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
        # the run in progress and its attempt say why they stopped (not left for the next start to guess)
        closed = query(db, "SELECT nome_flow, estado_final, mensagem FROM logs.execucoes ORDER BY iniciado_em")
        assert {flow for flow, _, _ in closed} == {constants.PIPELINE_FLOW, constants.SCHEDULER_FLOW}
        assert {(state, message) for _, state, message in closed} == {
            (
                "Interrompida",
                "Interrompida: o agendador recebeu SIGTERM (parada pedida) durante a execução. Conta como falha.",
            )
        }
        # its own records loaded, their pending file removed
        assert sorted(p.name for p in (tmp_path / "logs" / "pendentes").iterdir()) == []
        [(said,)] = query(
            db,
            "SELECT mensagem FROM logs.registros WHERE nome_flow = %s AND nivel = 'WARNING'",
            (constants.SCHEDULER_FLOW,),
        )
        assert said.startswith("Agendador parado por SIGTERM; execução(ões) interrompida(s): ")
        # and the interrupted run's records loaded at once (not left for the next start)
        assert query(
            db,
            "SELECT count(*) FROM logs.registros WHERE nome_flow = %s AND mensagem LIKE %s",
            # (a line written before the one the test waits for: the signal may cut that one short)
            (constants.PIPELINE_FLOW, "Task 'decide_scheduled_run': Finished task run%"),
        ) == [(1,)]
    finally:
        silent.close()
        if process.poll() is None:
            process.kill()
            process.wait()


def publish_may_as_june(portal) -> None:
    """The page's newest link: June 2024, to May's rows in another archive (a file identical to
    another period's is refused by the load)."""
    from tests.test_hostile_http_portal import FILES, link, page

    june = "terceirizados202406.xlsx"
    files = portal.portal.root / FILES.lstrip("/")
    with zipfile.ZipFile(files / NEWEST_FILE) as source, zipfile.ZipFile(files / june, "w") as copy:
        for item in source.infolist():
            copy.writestr(item.filename, source.read(item), compress_type=zipfile.ZIP_STORED)
    portal.page_override = page(("2024", link(f"{FILES}/{june}", "Junho"), link(f"{FILES}/{NEWEST_FILE}", "Maio")))


def may_published_as_june_fails_twice(db, portal, runtime):
    """May captured on 1 May, then June's link to May's rows: the runs of 1 and 2 September, both
    failed; with staging.transformed's state before them."""
    [first] = runtime.run_between(at("2026-05-01T00:00:00"), at("2026-05-01T00:00:01"))
    assert first.outcome == ("2026-05-01 00:00", "Success")
    before = transformed_state(db)
    publish_may_as_june(portal)
    runs = runtime.run_between(at("2026-09-01T00:00:00"), at("2026-09-02T00:00:01"))
    assert [r.outcome for r in runs] == [("2026-09-01 00:00", "Failed"), ("2026-09-02 00:00", "Failed")]
    return before, runs


def test_rows_that_fail_an_error_level_test_are_never_published_and_the_retry_does_not_succeed(
    db, portal, runtime, monkeypatch
):
    """A period whose rows fail an error-level test of staging.transformed only after the table
    is built (here a file published as June: `mes` 6 is not a month of the CGU's cycle): the
    check runs in the model's transaction (verify_before_commit), so the attempt fails naming it
    and the previous table stays; the next day's retry tries again and fails again, instead of
    finding the period "already materialized". The capture refuses such a file first (its rows
    say May: the next test); accepted on purpose here, so the check behind it is what is tested."""
    monkeypatch.setenv("MAX_WRONG_PERIOD_PERCENT", "100")
    before, runs = may_published_as_june_fails_twice(db, portal, runtime)
    for run in runs:
        assert run.state.message == (
            "dbt_build_staging_transformed: dbt build --select transformed falhou: transformed: Database Error in "
            "model transformed (models/staging/transformed.sql): verificação accepted_values (mes) falhou em "
            "staging.transformed (1 resultado(s), por exemplo (6,59)): a tabela anterior foi mantida"
        )
        assert type(run.task_states()["record_materialized_rows"]).__name__ == "TriggerFailed"
    assert query(db, "SELECT to_char(max(periodo), 'YYYY-MM') FROM raw.terceirizados") == [("2024-06",)]
    assert transformed_state(db) == before
    assert query(db, "SELECT DISTINCT ano, mes FROM staging.transformed") == [(2024, 5)]
    assert [state for _, _, state, _ in attempts(db)] == ["Success", "Failed", "Failed"]


def test_a_newest_file_whose_rows_say_another_period_is_refused_by_the_capture(db, portal, runtime):
    """The same June link to May's rows, with the default MAX_WRONG_PERIOD_PERCENT: the capture
    refuses the file (its load fields say 2024-05), nothing of it is loaded, the attempt fails
    naming the reason, and the retry the next day does the same."""
    before, runs = may_published_as_june_fails_twice(db, portal, runtime)
    rows = query(db, "SELECT count(*) FROM raw.terceirizados WHERE periodo = '2024-05-01'")[0][0]
    for run in runs:
        assert run.state.message.startswith(
            f"upload_csv_to_database: Período 2024-06 recusado: {rows} de {rows} linhas (100,0%) de "
            "terceirizados202406.xlsx dizem nos campos de carga (Num_Mes_Carga, Mes_Carga, Ano_Carga) ser de "
            "outro período que 2024-06 (o mais frequente: 2024-05)"
        ), run.state.message
    assert query(db, "SELECT to_char(max(periodo), 'YYYY-MM') FROM raw.terceirizados") == [("2024-05",)]
    assert query(db, "SELECT tentativa_situacao FROM raw.capturas WHERE periodo = '2024-06-01'") == [("recusada",)]
    assert transformed_state(db) == before
    assert [state for _, _, state, _ in attempts(db)] == ["Success", "Failed", "Failed"]


def test_a_newest_period_withdrawn_from_the_portal_fails_the_attempt_and_changes_nothing(db, portal, runtime):
    """The page's newest period is older than one already captured (its file left the page):
    the attempt fails saying so, before downloading anything, and every retry fails the same
    way; the newer period's rows stay. It used to capture the older period again, build
    staging.transformed from the newer one and say "Período 2023-09 capturado e materializado"."""
    from tests.test_hostile_http_portal import FILES, link, page

    [first] = runtime.run_between(at("2026-05-01T00:00:00"), at("2026-05-01T00:00:01"))
    assert first.outcome == ("2026-05-01 00:00", "Success")
    before = transformed_state(db)
    raw_before = query(db, "SELECT to_char(periodo, 'YYYY-MM'), count(*) FROM raw.terceirizados GROUP BY 1 ORDER BY 1")
    portal.page_override = page(("2023", link(f"{FILES}/terceirizados202309.csv", "Setembro")))
    portal.hits.clear()
    runs = runtime.run_between(at("2026-09-01T00:00:00"), at("2026-09-02T00:00:01"))
    assert [r.outcome for r in runs] == [("2026-09-01 00:00", "Failed"), ("2026-09-02 00:00", "Failed")]
    for run in runs:
        assert run.state.message == (
            "skip_if_already_materialized: O período mais recente publicado no portal (2023-09) é anterior ao "
            "mais recente já capturado (2024-05): o arquivo de 2024-05 saiu da página? Nada foi baixado nem "
            "alterado. Confira o portal; se a CGU retirou o período de vez, apague-o de raw.terceirizados, "
            "raw.terceirizados_quarentena e raw.capturas e rode de novo (e run/historic_materialize.py, para "
            "tirá-lo também das tabelas históricas)."
        )
    assert portal.hits.get(portal.file_path("terceirizados202309.csv"), 0) == 0  # nothing downloaded
    assert transformed_state(db) == before
    assert (
        query(db, "SELECT to_char(periodo, 'YYYY-MM'), count(*) FROM raw.terceirizados GROUP BY 1 ORDER BY 1")
        == raw_before
    )
    assert [state for _, _, state, _ in attempts(db)] == ["Success", "Failed", "Failed"]


def test_an_attempt_is_a_success_only_when_staging_transformed_holds_the_period_it_names(db, settings, monkeypatch):
    """The attempt's record says "Período X capturado e materializado" only after checking
    that staging.transformed was built from X's capture (here a build that left another
    period in it, as a newer period loaded meanwhile by another run would)."""
    from datetime import date

    from pipelines import tasks
    from pipelines.portal import PublishedFile

    newest = PublishedFile(2024, 5, "http://portal/terceirizados202405.xlsx", "xlsx")
    steps = {
        "select_newest_period": newest,
        "upload_csv_to_database": {"periodo": "2024-05"},
        "generate_dbt_docs": "ok",
    }
    monkeypatch.setattr(tasks, "newest_period_materialized", lambda settings, period: period == date(2024, 9, 1))
    assert tasks._attempt_outcome(steps) == (True, "Período 2024-05 capturado e materializado.")
    assert tasks.verified_outcome(settings, steps) == (
        False,
        (
            "finish_scheduled_run: o período 2024-05 foi capturado, mas staging.transformed não foi construído "
            "dessa captura (outra execução carregou um período mais novo ou o recapturou ao mesmo tempo?): a "
            "tentativa não é dada como concluída e será repetida."
        ),
    )
    monkeypatch.setattr(tasks, "newest_period_materialized", lambda settings, period: period == date(2024, 5, 1))
    assert tasks.verified_outcome(settings, steps) == (True, "Período 2024-05 capturado e materializado.")


def test_a_single_attempt_leaves_no_pending_log_file(db, settings, portal, tmp_path):
    """``--agora`` loads its own log records (the scheduler's session) at the end and removes
    their pending file: cron-driven single attempts do not pile files up in LOG_DIR/pendentes."""
    env = {
        **os.environ,
        "LOG_DIR": str(tmp_path / "logs"),
        "DATA_DIR": str(tmp_path / "dados"),
        "CGU_TERCEIRIZADOS_URL": portal.page_url,
    }
    done = subprocess.run(
        [sys.executable, "run/scheduler.py", "--agora"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in (tmp_path / "logs" / "pendentes").iterdir()) == []
    messages = [
        m for (m,) in query(db, "SELECT mensagem FROM logs.registros WHERE nome_flow = %s", (constants.SCHEDULER_FLOW,))
    ]
    assert len(messages) == 1 and " concluída com sucesso: " + CAPTURED in messages[0]  # the scheduler's own line
