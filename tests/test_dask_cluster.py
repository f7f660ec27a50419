"""The historic capture on a real Dask cluster whose workers know nothing of the project's
configuration: a `dask scheduler` and two `dask worker` processes started with an empty
environment (only PATH and the Python path) in another directory, as on other machines."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.executors import parallel_executor
from pipelines.flows import historic_capture_flow
from pipelines.settings import load_settings
from tests.conftest import query, run_flow

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def bare_cluster(tmp_path):
    """Scheduler and workers in an empty environment, in a directory with no .env."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    processes = [
        subprocess.Popen(
            [
                "env",
                "-i",
                *[f"{k}={v}" for k, v in env.items()],
                str(BIN / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-dashboard",
            ],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    for number in range(2):
        workdir = tmp_path / f"worker{number}"
        workdir.mkdir()
        processes.append(
            subprocess.Popen(
                [
                    "env",
                    "-i",
                    *[f"{k}={v}" for k, v in env.items()],
                    str(BIN / "dask"),
                    "worker",
                    address,
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--local-directory",
                    str(workdir),
                ],
                cwd=workdir,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    import distributed

    deadline = time.monotonic() + 60
    while True:
        try:
            with distributed.Client(address, timeout=5) as client:
                if len(client.scheduler_info()["workers"]) == 2:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("o cluster Dask de teste não subiu")
        time.sleep(0.5)
    yield address
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def test_historic_capture_on_workers_without_configuration(db, fresh_portal, bare_cluster, monkeypatch):
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", bare_cluster)
    executor = parallel_executor(load_settings())
    assert type(executor).__name__ == "DaskExecutor"
    state, run_id = run_flow(historic_capture_flow, executor=executor, url=fresh_portal.page_url, force=True)
    assert state.is_successful(), state.message
    expectations = fresh_portal.portal.expectations
    assert query(db, "SELECT to_char(periodo, 'YYYY-MM'), count(*) FROM raw.terceirizados GROUP BY 1 ORDER BY 1") == [
        (label, e.loaded_rows) for label, e in sorted(expectations.items())
    ]
    # every mapped task's records reached the run's log, whatever process ran it
    per_task = dict(
        query(db, "SELECT nome_task, count(*) FROM logs.registros WHERE id_execucao = %s GROUP BY 1", (run_id,))
    )
    downloads = query(
        db,
        "SELECT count(*) FROM logs.registros WHERE id_execucao = %s AND mensagem LIKE 'Realizando o download%%'",
        (run_id,),
    )
    assert downloads == [(len(expectations),)]
    assert per_task.get("capture_period", 0) >= 3 * len(expectations) or any(
        name and name.startswith("capture_period") for name in per_task
    )
    # which host saved the files is recorded
    assert query(db, "SELECT count(*) FROM raw.capturas WHERE host_arquivos = %s", (socket.gethostname(),)) == [
        (len(expectations),)
    ]


def test_workers_that_cannot_import_the_project_are_named(tmp_path, monkeypatch):
    """A cluster without the project: the flow fails at start, saying so. (This test's own
    environment has the project installed, so the workers see an empty ``pipelines`` package
    first on their path instead, as a machine with a different package of that name would.)"""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    (tmp_path / "vazio" / "pipelines").mkdir(parents=True)
    (tmp_path / "vazio" / "pipelines" / "__init__.py").write_text("raise ImportError('não é este projeto')\n")
    env = ["env", "-i", f"PATH={BIN}:/usr/bin:/bin", f"HOME={tmp_path}", f"PYTHONPATH={tmp_path / 'vazio'}"]
    processes = [
        subprocess.Popen(
            [*env, str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [*env, str(BIN / "dask"), "worker", address, "--nworkers", "1", "--no-dashboard"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        from pipelines.errors import ConfigError
        from pipelines.executors import check_cluster

        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", address)
        with pytest.raises(ConfigError, match="não conseguem importar o projeto"):
            check_cluster(load_settings(), timeout=60)
    finally:
        for process in processes:
            process.terminate()
            process.wait(15)


def test_settings_never_show_the_password():
    settings = load_settings({**os.environ, "POSTGRES_PASSWORD": "segredo-123"})
    assert "segredo-123" not in repr(settings) and "segredo-123" not in str(settings)
