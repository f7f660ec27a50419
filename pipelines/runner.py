"""What every ``run/*.py`` entry point does: check the configuration, run a flow
locally with ``flow.run()``, print the outcome and turn it into an exit code."""

from __future__ import annotations

import sys
import uuid

from pipelines import database
from pipelines.errors import ConfigError, DatabaseUnavailableError
from pipelines.executors import parallel_executor
from pipelines.settings import Settings, load_settings
from pipelines.tasks import SETTINGS_KEY, configure_retries, failure_causes


def prepare() -> Settings:
    """Load settings and reach the database, or exit with a message naming the variable."""
    try:
        settings = load_settings()
        database.ensure_schema(settings)
    except DatabaseUnavailableError as exc:
        print(f"PostgreSQL indisponível: {exc}", file=sys.stderr)
        print("Confira se o servidor está no ar e se POSTGRES_HOST/POSTGRES_PORT do .env apontam para ele "
              "(modelo em .env.example).", file=sys.stderr)
        raise SystemExit(2) from None
    except ConfigError as exc:
        print(f"Erro de configuração: {exc}", file=sys.stderr)
        print("Confira o arquivo .env (modelo em .env.example).", file=sys.stderr)
        raise SystemExit(2) from None
    return settings


def execute(flow, settings: Settings, parameters: dict | None = None, executor=None):
    """Run ``flow`` locally with ``flow.run()`` (on ``executor`` if given); returns (final state, run id)."""
    configure_retries(flow, settings)
    run_id = str(uuid.uuid4())
    options = {"executor": executor} if executor is not None else {}
    # the settings travel with the flow run to every task, on any process or machine
    context = {"flow_run_id": run_id, SETTINGS_KEY: settings}
    return flow.run(parameters=parameters or {}, context=context, **options), run_id


def run_flow(flow, parameters: dict | None = None, parallel: bool = False) -> int:
    """Run ``flow`` locally (``parallel``: on the Dask executor); 0 when it succeeded, 1 when it failed."""
    settings = prepare()
    try:
        executor = parallel_executor(settings) if parallel else None
    except ConfigError as exc:
        print(f"Erro de configuração: {exc}", file=sys.stderr)
        return 2
    state, run_id = execute(flow, settings, parameters, executor)
    if state.is_successful():
        print(f"Flow {flow.name} concluído com sucesso (execução {run_id}).")
        return 0
    print(f"Flow {flow.name} falhou (execução {run_id}): {state.message}", file=sys.stderr)
    for cause in failure_causes(state):
        print(f"  - {cause}", file=sys.stderr)
    return 1
