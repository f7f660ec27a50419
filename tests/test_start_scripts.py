"""start.sh / stop.sh: static checks, and the local fallback run for real on this machine
(no Docker engine here): a project-local PostgreSQL cluster, the sample portal, the
scheduler and the results app."""

import os
import shutil
import socket
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import psycopg2
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ["start.sh", "stop.sh", "run/container.sh", ".ci/run"]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_pass_bash_n_and_shellcheck(script):
    assert subprocess.run(["bash", "-n", script], cwd=ROOT).returncode == 0
    assert shutil.which("shellcheck"), "shellcheck ausente: rode `make test` (instala o pacote shellcheck)"
    result = subprocess.run(["shellcheck", script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_local_fallback_serves_results_and_stops(tmp_path):
    work = Path(tempfile.mkdtemp(prefix="terceirizados-start-", dir="/tmp"))
    work.chmod(0o755)  # the postgres user runs initdb in it
    pg_port, results_port = free_port(), free_port()
    env = {
        **os.environ,
        "POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": str(free_port()),  # nothing answers there
        "POSTGRES_DB": "terceirizados_start", "LOCAL_PGDATA": str(work / "pgdata"),
        "LOCAL_POSTGRES_PORT": str(pg_port), "RESULTS_PORT": str(results_port), "RUN_DIR": str(work / "run"),
        "DATA_DIR": str(work / "data"), "LOG_DIR": str(work / "logs"),
    }
    try:
        started = subprocess.run(["./start.sh", "--amostra"], cwd=ROOT, env=env, capture_output=True, text=True,
                                 timeout=300)
        output = started.stdout + started.stderr
        assert started.returncode == 0, output[-3000:]
        assert "Docker indisponível" in output
        assert "criando um cluster local" in output and f"127.0.0.1:{pg_port}" in output
        assert f"Resultados em http://127.0.0.1:{results_port}" in output
        page = urllib.request.urlopen(f"http://127.0.0.1:{results_port}/", timeout=10).read().decode()
        assert "Terceirizados" in page
        conn = psycopg2.connect(host="127.0.0.1", port=pg_port, user="postgres", dbname="terceirizados_start")
        with conn, conn.cursor() as cursor:
            cursor.execute("SELECT to_char(periodo, 'YYYY-MM'), count(*) FROM raw.terceirizados GROUP BY 1")
            assert cursor.fetchall() == [("2024-05", 1999)]  # sample portal: 2,000 rows, 1 quarantined
            cursor.execute("SELECT count(*) FROM staging.transformed")
            assert cursor.fetchone() == (1999,)
            cursor.execute("SELECT estado_final FROM logs.execucoes WHERE nome_flow = "
                           "'adm_cgu_terceirizados__agendador'")
            assert cursor.fetchall() == [("Success",)]
        conn.close()
        assert (work / "run" / "scheduler.pid").exists()
    finally:
        stopped = subprocess.run(["./stop.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert "Cluster PostgreSQL local parado" in stopped.stdout
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{results_port}/", timeout=3)
    assert subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", str(pg_port), "-q"]).returncode != 0
    shutil.rmtree(work, ignore_errors=True)
