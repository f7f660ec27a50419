"""Registra os flows no Prefect Server, no projeto adm_cgu_terceirizados (opt-in: importar
os módulos dos flows nunca contata um servidor). Uso: ``python run/register.py``.

O pipeline agendado (adm_cgu_terceirizados__pipeline: captura e depois materializa o período
mais recente) é registrado com o seu agendamento diário (00:00, America/Sao_Paulo): cada
execução decide se o dia tem trabalho (1º de janeiro, maio e setembro, ou a repetição diária
depois de uma falha) e, se não tiver, termina como Skipped com o motivo. É o mesmo flow que
o agendador local (run/scheduler.py) roda. Os flows históricos são registrados sem
agendamento (rodam sob demanda).
"""

import argparse
import sys

from pipelines.constants import PROJECT_NAME
from pipelines.flows import historic_capture_flow, historic_materialize_flow, pipeline_flow
from pipelines.settings import load_settings
from pipelines.tasks import configure_retries

LABELS = [PROJECT_NAME]


def flows_to_register():
    """The scheduled pipeline (it carries its schedule) and the on-demand historic flows."""
    return [pipeline_flow, historic_capture_flow, historic_materialize_flow]


def main() -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    try:
        import prefect
        import requests
        from prefect import Client

        endpoint = prefect.config.server.endpoint
        requests.get(endpoint, timeout=5)  # fail fast when no server answers (the client retries for a minute)
        settings = load_settings()
        Client().create_project(project_name=PROJECT_NAME)
        for flow in flows_to_register():
            configure_retries(flow, settings)  # DOWNLOAD_MAX_RETRIES/DELAY, as in a local run
            flow.register(project_name=PROJECT_NAME, labels=LABELS, add_default_labels=False)
    except Exception as exc:  # no server: say so instead of a stack trace
        print(
            f"Não foi possível registrar os flows no Prefect Server: {exc}\n"
            "Suba o servidor com ./start.sh (precisa de Docker) ou rode os flows localmente "
            "(python run/scheduler.py, python run/capture.py ...).",
            file=sys.stderr,
        )
        return 1
    print(f"Flows registrados no projeto {PROJECT_NAME}: " + ", ".join(f.name for f in flows_to_register()) + ".")
    return 0


if __name__ == "__main__":
    sys.exit(main())
