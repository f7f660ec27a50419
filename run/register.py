"""Registra os flows no Prefect Server, no projeto adm_cgu_terceirizados (opt-in: importar
os módulos dos flows nunca contata um servidor). Uso: ``python run/register.py``.

Os flows de captura e materialização são registrados com o agendamento quadrimestral
(1º de janeiro, maio e setembro); os históricos, sem agendamento (rodam sob demanda).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.constants import PROJECT_NAME  # noqa: E402
from pipelines.flows import (  # noqa: E402
    capture_flow,
    historic_capture_flow,
    historic_materialize_flow,
    materialize_flow,
)
from pipelines.schedules import MATERIALIZE_CRON, SCHEDULE, cron_schedule  # noqa: E402

LABELS = [PROJECT_NAME]


def flows_to_register():
    """Copies of the flows with the schedules the server should fire."""
    capture, materialize = capture_flow.copy(), materialize_flow.copy()
    capture.schedule, materialize.schedule = SCHEDULE, cron_schedule(MATERIALIZE_CRON)
    return [capture, materialize, historic_capture_flow, historic_materialize_flow]


def main() -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    try:
        import prefect
        import requests
        from prefect import Client

        endpoint = prefect.config.server.endpoint
        requests.get(endpoint, timeout=5)  # fail fast when no server answers (the client retries for a minute)
        Client().create_project(project_name=PROJECT_NAME)
        for flow in flows_to_register():
            flow.register(project_name=PROJECT_NAME, labels=LABELS, add_default_labels=False)
    except Exception as exc:  # no server: say so instead of a stack trace
        print(f"Não foi possível registrar os flows no Prefect Server: {exc}\n"
              "Suba o servidor com ./start.sh (precisa de Docker) ou rode os flows localmente "
              "(python run/capture.py ...).", file=sys.stderr)
        return 1
    print(f"Flows registrados no projeto {PROJECT_NAME}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
