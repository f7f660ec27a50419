"""Captura todos os períodos já publicados pela CGU: ``python run/historic_capture.py``.

Períodos cujo arquivo não mudou desde a última captura são ignorados (use --forcar).
Roda em paralelo com LocalDaskExecutor, ou no cluster Dask de DASK_SCHEDULER_ADDRESS.
"""

import argparse

from pipelines.demo import add_sample_option, serve_sample_if_asked
from pipelines.flows import historic_capture_flow
from pipelines.runner import exit_process, run_flow


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="página do portal (padrão: CGU_TERCEIRIZADOS_URL do .env)")
    parser.add_argument(
        "--forcar",
        "--force",
        action="store_true",
        dest="force",
        help="recarrega também os períodos inalterados (--force é o nome antigo)",
    )
    add_sample_option(parser)
    args = parser.parse_args()
    serve_sample_if_asked(args)
    return run_flow(historic_capture_flow, {"url": args.url, "force": args.force}, parallel=True)


if __name__ == "__main__":
    exit_process(main)
