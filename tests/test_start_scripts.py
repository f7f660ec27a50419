"""start.sh / stop.sh, run for real on this machine (no Docker engine here): static checks,
the configuration they resolve, a wrong or invalid PostgreSQL, a busy port, and the
project-local cluster from a checkout under a mode-700 folder (out of the postgres user's
reach) with a second start, a restart and stop.sh.

Each script test runs in a copy of the working tree (the virtualenv linked, not copied), so
that its .env, .run and data folders are its own. The virtualenv has the project installed
editable from this working tree: PYTHONPATH points the copy's scripts to the copy's code."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import psycopg2
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ["start.sh", "stop.sh", "run/container.sh", ".ci/run"]
# Variables a developer's shell (or tests/conftest.py) may set: the scripts must see only
# what each test gives them.
CONFIG_VARIABLES = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M)) | {
    "PYTHONPATH",
    "STOP_GRACE_SECONDS",
}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def script_env(checkout_dir=None, **variables):
    env = {name: value for name, value in os.environ.items() if name not in CONFIG_VARIABLES}
    if checkout_dir is not None:
        env["PYTHONPATH"] = str(checkout_dir)
    return {**env, **{name: str(value) for name, value in variables.items()}}


def run(command, cwd, env, timeout=120):
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    result.output = result.stdout + result.stderr
    return result


@pytest.fixture
def checkout(tmp_path):
    """The working tree copied into <mode-700 folder>/checkout, .venv linked."""
    private = tmp_path / "privada"
    private.mkdir(mode=0o700)
    private.chmod(0o700)  # whatever the umask: the postgres user cannot enter
    copy = private / "checkout"
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)  # keeps mtimes: `make venv` sees the venv up to date
    (copy / ".venv").symlink_to(ROOT / ".venv")
    # `make venv` would rebuild the linked virtualenv if a requirement file looked newer than it
    installed = (ROOT / ".venv" / ".installed").stat().st_mtime
    for requirement in [*(copy / "requirements").glob("*.txt"), copy / "pyproject.toml"]:
        if requirement.exists() and requirement.stat().st_mtime >= installed:
            os.utime(requirement, (installed - 1, installed - 1))
    imported = subprocess.run(
        [str(copy / ".venv" / "bin" / "python"), "-c", "import pipelines.settings as s; print(s.PROJECT_ROOT)"],
        cwd=copy / "run",
        env=script_env(copy),
        capture_output=True,
        text=True,
    )
    assert imported.stdout.strip() == str(copy), imported.stdout + imported.stderr  # the copy's code, not ours
    return copy


def project_processes(folder: Path) -> dict[int, str]:
    """pid -> command line of the processes running a run/*.py script from ``folder``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == str(folder) and re.search(r"run/(scheduler|results)\.py", command):
            found[int(entry.name)] = command
    return found


def recorded(checkout_dir: Path) -> dict[str, int]:
    lines = (checkout_dir / ".run" / "processes").read_text().split("\n")
    return {name: int(pid) for name, pid, _ in (line.split() for line in lines if line)}


def serving_pid(port: int) -> int:
    import json

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/saude", timeout=5) as response:
        answer = json.load(response)
    assert answer["app"] == "terceirizados-resultados"
    return answer["pid"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_pass_bash_n_and_shellcheck(script):
    assert subprocess.run(["bash", "-n", script], cwd=ROOT).returncode == 0
    assert shutil.which("shellcheck"), "shellcheck ausente: rode `make test` (instala o pacote shellcheck)"
    result = subprocess.run(["shellcheck", script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_help_prints_the_header_only():
    result = run(["./start.sh", "--help"], ROOT, script_env())
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "Sobe o pipeline de terceirizados."
    assert lines[-1] == "./stop.sh para tudo o que este script iniciou."
    for option in ("--amostra", "--local", "--pg-local", "--reiniciar", ".env.example"):
        assert option in result.stdout, option
    assert "set -euo" not in result.stdout and "#" not in result.stdout
    assert run(["./start.sh", "--nada"], ROOT, script_env()).returncode == 2


def test_settings_reach_the_scripts_through_the_pipelines_parser(checkout):
    """One parser: python-dotenv keeps the last of a repeated key, the environment wins over
    .env, and the values arrive shell-quoted."""
    odd = checkout / "pasta com espaço e 'aspas'"
    (checkout / ".env").write_text(
        f'RESULTS_PORT=1111\nRESULTS_PORT=2222\nPOSTGRES_DB=banco_env\nRUN_DIR="{odd}"\nLOCAL_POSTGRES_PORT=5999\n'
    )
    shown = run(
        [
            "bash",
            "-c",
            'eval "$(.venv/bin/python -m pipelines.env_export)" && '
            'printf "%s|" "$RESULTS_PORT" "$POSTGRES_DB" "$RUN_DIR" "$POSTGRES_CONFIGURED" '
            '"$LOCAL_POSTGRES_PORT" "$LOCAL_PGDATA" "$LOCAL_PGDATA_CONFIGURED"',
        ],
        checkout,
        script_env(checkout, POSTGRES_DB="banco_ambiente"),
    )
    assert shown.returncode == 0, shown.output
    assert shown.stdout.split("|")[:-1] == [
        "2222",
        "banco_ambiente",
        str(odd),
        "0",
        "5999",
        str(checkout / ".pgdata"),
        "0",
    ]
    # the container gets the same values (docker --env-file has a parser of its own)
    docker = run(
        [".venv/bin/python", "-m", "pipelines.env_export", "--docker-env"],
        checkout,
        script_env(checkout, POSTGRES_DB="banco_ambiente"),
    )
    assert docker.stdout.splitlines() == [
        "RESULTS_PORT=2222",
        "POSTGRES_DB=banco_ambiente",
        f"RUN_DIR={odd}",
        "LOCAL_POSTGRES_PORT=5999",
    ]
    (checkout / ".env").write_text("POSTGRES_PORT=5432\n")
    configured = run([".venv/bin/python", "-m", "pipelines.env_export"], checkout, script_env(checkout))
    assert "POSTGRES_CONFIGURED=1\n" in configured.stdout


def test_the_postgres_probe_tells_down_from_wrong(checkout):
    """With nothing configured start.sh probes the default server: exit 3 and silence when
    nothing answers (the local cluster follows), 0 when it answers, 2 with the message when
    it answers but refuses the configuration."""
    probe = [".venv/bin/python", "-m", "pipelines.env_export", "--postgres", "--sondar"]
    down = run(probe, checkout, script_env(checkout, POSTGRES_PORT=free_port()))
    assert (down.returncode, down.stdout, down.stderr) == (3, "", "")
    database = os.environ["POSTGRES_DB"]  # this session's test database (tests/conftest.py)
    up = run(probe, checkout, script_env(checkout, POSTGRES_DB=database))
    assert (up.returncode, up.stderr) == (0, ""), up.output
    refused = run(probe, checkout, script_env(checkout, POSTGRES_USER="ninguem_aqui", POSTGRES_DB=database))
    assert refused.returncode == 2
    assert refused.stderr.startswith(
        "Erro de configuração: Não foi possível conectar ao PostgreSQL em "
        "POSTGRES_HOST=127.0.0.1 POSTGRES_PORT=5432 POSTGRES_USER=ninguem_aqui"
    )


@pytest.mark.parametrize("port", ["dead", "abc"])
def test_a_configured_postgres_that_fails_stops_with_the_pipelines_message(checkout, port):
    """POSTGRES_PORT in .env names a server that does not answer (or is no port at all):
    start.sh stops with the message every run/*.py gives, and never falls back to a
    project-local cluster."""
    port = str(free_port()) if port == "dead" else port
    (checkout / ".env").write_text(f"POSTGRES_PORT={port}\nPOSTGRES_DB=terceirizados_start_nunca\n")
    env = script_env(checkout, RESULTS_PORT=free_port())
    started = run(["./start.sh", "--amostra"], checkout, env)
    flow = run([".venv/bin/python", "run/materialize.py"], checkout, env)
    assert started.returncode == flow.returncode == 2, started.output
    message = flow.stderr.strip().splitlines()
    assert message and all(line in started.stderr.splitlines() for line in message), (message, started.stderr)
    if port == "abc":
        assert message[0] == "Erro de configuração: POSTGRES_PORT='abc' não é um número inteiro."
    else:
        assert message[0].startswith(
            f"PostgreSQL indisponível: O PostgreSQL está indisponível em POSTGRES_HOST=127.0.0.1 POSTGRES_PORT={port} "
        )
        assert "./start.sh --pg-local" in started.stderr
    assert "cluster" not in started.stdout and "Capturando" not in started.stdout
    assert not (checkout / ".pgdata").exists() and not (checkout / ".run" / "processes").exists()


def test_a_busy_results_port_stops_before_anything_starts(checkout):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        started = run(["./start.sh", "--pg-local"], checkout, script_env(checkout, RESULTS_PORT=port))
    assert started.returncode == 1, started.output
    assert "Sem arquivo .env: usando os valores padrão (para ajustar: cp .env.example .env)." in started.stdout
    assert f"A porta RESULTS_PORT={port} (127.0.0.1) já está em uso por outro processo" in started.stderr
    assert "Nada foi iniciado" in started.stderr and "Capturando" not in started.stdout
    assert not (checkout / ".run" / "processes").exists() and not project_processes(checkout)


def test_stop_reports_each_process_even_one_that_ignores_sigterm(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    stubborn = subprocess.Popen(["bash", "-c", "trap '' TERM; while :; do sleep 0.1; done"])
    polite = subprocess.Popen(["sleep", "60"])
    try:

        def start_time(pid):
            return (Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split())[19]

        (run_dir / "processes").write_text(
            f"scheduler {stubborn.pid} {start_time(stubborn.pid)}\nresults {polite.pid} {start_time(polite.pid)}\n"
            "scheduler 999999 12345\n"
        )
        stopped = run(["./stop.sh"], ROOT, script_env(RUN_DIR=run_dir, STOP_GRACE_SECONDS=1), timeout=60)
        assert stopped.returncode == 0, stopped.output
        assert stopped.stdout.splitlines() == [
            f"Parado: app de resultados (pid {polite.pid}).",
            f"Parado à força (não terminou em 1 s): agendador (pid {stubborn.pid}).",
            "Já tinha terminado: agendador (pid 999999).",
        ]
        assert stubborn.wait(5) == -signal.SIGKILL and polite.wait(5) == -signal.SIGTERM
        assert not (run_dir / "processes").exists()
        again = run(["./stop.sh"], ROOT, script_env(RUN_DIR=run_dir))
        assert again.returncode == 0 and again.stdout.startswith("Nada a parar")
    finally:
        for process in (stubborn, polite):
            process.kill()


def test_local_cluster_from_a_mode_700_parent_second_start_restart_and_stop(checkout):
    """--pg-local from a checkout the postgres user cannot enter: the cluster's data goes to
    its home; a second start finds the running instance and starts nothing; --reiniciar
    replaces it; stop.sh stops every process and the cluster."""
    pg_port, results_port, dead_port = free_port(), free_port(), free_port()
    # a configured PostgreSQL that does not answer: --pg-local is what makes the local cluster
    (checkout / ".env").write_text(
        f"POSTGRES_PORT={dead_port}\nPOSTGRES_DB=terceirizados_start\n"
        f"RESULTS_PORT=1\nRESULTS_PORT={results_port}\nLOCAL_POSTGRES_PORT={pg_port}\n"
    )
    assert subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(checkout)]).returncode != 0
    env = script_env(checkout)
    cluster = None
    try:
        began = time.monotonic()
        started = run(["./start.sh", "--amostra", "--pg-local"], checkout, env, timeout=300)
        first_start_seconds = time.monotonic() - began
        assert started.returncode == 0, started.output[-3000:]
        out = started.stdout
        assert "Docker indisponível" in out and "Cluster PostgreSQL local do projeto solicitado (--pg-local)." in out
        cluster = Path(re.search(r"os dados do cluster local ficam em (\S+)\.\n", out)[1])
        assert cluster.parent == Path("/var/lib/postgresql/terceirizados") and (cluster / "PG_VERSION").is_file()
        assert f"Usando o cluster PostgreSQL local do projeto em 127.0.0.1:{pg_port} (dados em {cluster})." in out
        assert f"Resultados em http://127.0.0.1:{results_port} " in out
        assert "Permission denied" not in started.output
        pids = recorded(checkout)
        assert set(pids) == {"scheduler", "results"} and serving_pid(results_port) == pids["results"]
        assert set(project_processes(checkout)) == set(pids.values())
        page = urllib.request.urlopen(f"http://127.0.0.1:{results_port}/", timeout=10).read().decode()
        assert "Terceirizados" in page
        conn = psycopg2.connect(host="127.0.0.1", port=pg_port, user="postgres", dbname="terceirizados_start")
        with conn, conn.cursor() as cursor:
            cursor.execute("SELECT to_char(periodo, 'YYYY-MM'), count(*) FROM raw.terceirizados GROUP BY 1")
            assert cursor.fetchall() == [("2024-05", 1999)]  # sample portal: 2,000 rows, 1 quarantined
            cursor.execute("SELECT count(*) FROM staging.transformed")
            assert cursor.fetchone() == (1999,)
            cursor.execute(
                "SELECT estado_final FROM logs.execucoes WHERE nome_flow = 'adm_cgu_terceirizados__agendador'"
            )
            assert cursor.fetchall() == [("Success",)]
        conn.close()

        again = run(["./start.sh", "--amostra", "--pg-local"], checkout, env)
        assert again.returncode == 0, again.output
        assert again.stdout.splitlines()[-2:] == [
            f"O pipeline já está rodando a partir desta pasta: agendador (pid {pids['scheduler']}), app de "
            f"resultados (pid {pids['results']}); resultados em http://127.0.0.1:{results_port}.",
            "Nada foi iniciado de novo. Para parar: ./stop.sh; para reiniciar: ./start.sh --reiniciar.",
        ]
        assert recorded(checkout) == pids and set(project_processes(checkout)) == set(pids.values())

        restarted = run(["./start.sh", "--amostra", "--pg-local", "--reiniciar"], checkout, env, timeout=300)
        assert restarted.returncode == 0, restarted.output[-3000:]
        assert f"Parado: app de resultados (pid {pids['results']})." in restarted.stdout
        assert f"Parado: agendador (pid {pids['scheduler']})." in restarted.stdout
        new_pids = recorded(checkout)
        assert set(new_pids.values()).isdisjoint(pids.values())
        assert set(project_processes(checkout)) == set(new_pids.values())
        assert serving_pid(results_port) == new_pids["results"]
    finally:
        stopped = run(["./stop.sh"], checkout, env)
        if cluster is not None:
            shutil.rmtree(cluster, ignore_errors=True)
    assert stopped.returncode == 0, stopped.output
    assert stopped.stdout.splitlines() == [
        f"Parado: app de resultados (pid {new_pids['results']}).",
        f"Parado: agendador (pid {new_pids['scheduler']}).",
        f"Cluster PostgreSQL local parado ({cluster}).",
    ]
    assert project_processes(checkout) == {}
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{results_port}/", timeout=3)
    assert subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", str(pg_port), "-q"]).returncode != 0
    assert first_start_seconds < 240
