"""Materializa todos os períodos capturados em staging.historic_* (dbt):
``python run/historic_materialize.py``."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.flows import historic_materialize_flow  # noqa: E402
from pipelines.runner import run_flow  # noqa: E402


def main() -> int:
    argparse.ArgumentParser(description=__doc__).parse_args()
    return run_flow(historic_materialize_flow)


if __name__ == "__main__":
    sys.exit(main())
