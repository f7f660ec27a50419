"""Materializa o período mais recente em staging (dbt): ``python run/materialize.py``."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.flows import materialize_flow  # noqa: E402
from pipelines.runner import run_flow  # noqa: E402


def main() -> int:
    argparse.ArgumentParser(description=__doc__).parse_args()
    return run_flow(materialize_flow)


if __name__ == "__main__":
    sys.exit(main())
