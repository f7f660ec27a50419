"""Materializa o período mais recente em staging (dbt): ``python run/materialize.py``."""

import argparse

from pipelines.flows import materialize_flow
from pipelines.runner import exit_process, run_flow


def main() -> int:
    argparse.ArgumentParser(description=__doc__).parse_args()
    return run_flow(materialize_flow)


if __name__ == "__main__":
    exit_process(main)
