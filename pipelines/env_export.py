"""The resolved configuration for start.sh and stop.sh, from the same parser as the
pipeline (the environment first, then ``.env`` read by python-dotenv), so the scripts
never read ``.env`` themselves.

    python -m pipelines.env_export              shell assignments (shell-quoted) for start.sh;
                                                exit 2 with the settings' message on a bad value
    python -m pipelines.env_export --postgres   reach the configured PostgreSQL as the flows do
                                                (exit 2 with their message); with --sondar, exit
                                                3 quietly when nothing answers
    python -m pipelines.env_export --run-dir    only RUN_DIR, without validating the rest (stop.sh)
    python -m pipelines.env_export --docker-env the variables of .env, resolved, for docker --env-file
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from dotenv import dotenv_values, load_dotenv

from pipelines.errors import ConfigError, DatabaseUnavailableError
from pipelines.settings import PROJECT_ROOT, _integer, _path, load_settings

ENV_FILE = PROJECT_ROOT / ".env"
# A PostgreSQL is "configured" when one of these names it, in the environment or in .env;
# only then is a server that does not answer an error instead of a reason for the
# project-local cluster.
SERVER_VARIABLES = ("POSTGRES_HOST", "POSTGRES_PORT")
UNAVAILABLE_EXIT = 3


def _environment() -> dict:
    """The process environment plus .env (the environment wins), as load_settings sees it."""
    load_dotenv(ENV_FILE, override=False)
    return dict(os.environ)


def postgres_configured(env: dict) -> bool:
    return any((env.get(name) or "").strip() for name in SERVER_VARIABLES)


def resolve(env: dict | None = None) -> dict[str, str]:
    """The values start.sh needs, validated like the pipeline's settings (ConfigError)."""
    env = _environment() if env is None else env
    settings = load_settings(env)
    local_pgdata = (env.get("LOCAL_PGDATA") or "").strip()
    return {
        "POSTGRES_HOST": settings.postgres_host,
        "POSTGRES_PORT": str(settings.postgres_port),
        "POSTGRES_USER": settings.postgres_user,
        "POSTGRES_DB": settings.postgres_db,
        "POSTGRES_CONFIGURED": "1" if postgres_configured(env) else "0",
        "RESULTS_HOST": settings.results_host,
        "RESULTS_PORT": str(settings.results_port),
        "RUN_DIR": str(_path(env, "RUN_DIR", ".run")),
        "LOCAL_PGDATA": str(_path(env, "LOCAL_PGDATA", ".pgdata")),
        "LOCAL_PGDATA_CONFIGURED": "1" if local_pgdata else "0",
        "LOCAL_POSTGRES_PORT": str(_integer(env, "LOCAL_POSTGRES_PORT", 5433, 1, 65535)),
        "ENV_FILE_FOUND": "1" if ENV_FILE.is_file() else "0",
    }


def shell_assignments(values: dict[str, str]) -> str:
    return "".join(f"{name}={shlex.quote(value)}\n" for name, value in values.items())


def check_postgres(probe: bool) -> int:
    """Reach PostgreSQL and create the database and tables, exactly as every run/*.py does
    before a flow (same messages, exit 2). ``probe``: a server that does not answer is
    not an error but exit 3, without a message (start.sh then uses the local cluster)."""
    from pipelines import database

    if probe:
        try:
            database.connect(load_settings(_environment()), "postgres").close()
        except DatabaseUnavailableError:
            return UNAVAILABLE_EXIT
        except ConfigError:
            pass  # prepare() below reports it
    from pipelines.runner import prepare  # imports prefect: only when the check is asked for

    prepare()
    return 0


def docker_env() -> str:
    """``KEY=value`` lines for ``docker run --env-file``: every variable of .env with the
    value the pipeline resolves (the environment first), unquoted as docker expects."""
    env = _environment()
    lines = []
    for name in dotenv_values(ENV_FILE) if ENV_FILE.is_file() else {}:
        value = env.get(name) or ""
        if "\n" in value:
            raise ConfigError(f"{name}: valores com quebra de linha não passam para o contêiner (docker --env-file).")
        lines.append(f"{name}={value}\n")
    return "".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--postgres", action="store_true")
    mode.add_argument("--run-dir", action="store_true")
    mode.add_argument("--docker-env", action="store_true")
    parser.add_argument("--sondar", action="store_true")
    args = parser.parse_args(argv)
    if args.run_dir:
        print(shell_assignments({"RUN_DIR": str(_path(_environment(), "RUN_DIR", ".run"))}), end="")
        return 0
    try:
        if args.postgres:
            return check_postgres(args.sondar)
        print(docker_env() if args.docker_env else shell_assignments(resolve()), end="")
    except ConfigError as exc:
        print(f"Erro de configuração: {exc}", file=sys.stderr)
        print("Confira o arquivo .env (modelo em .env.example).", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
