"""Materializa todos os períodos capturados em staging.historic_* (dbt):
``python run/historic_materialize.py``.

Os modelos históricos são incrementais por período: cada execução reconstrói só os períodos
capturados (ou recapturados) desde a última construção verificada e remove os que saíram de
raw.terceirizados. ``--full-refresh`` reconstrói tudo e roda todos os testes em todas as linhas."""

import argparse

from pipelines.flows import historic_materialize_flow
from pipelines.runner import exit_process, run_flow


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--full-refresh",
        action="store_true",
        help="reconstrói todos os períodos (dbt --full-refresh) e testa todas as linhas",
    )
    args = parser.parse_args()
    return run_flow(historic_materialize_flow, {"full_refresh": args.full_refresh})


if __name__ == "__main__":
    exit_process(main)
