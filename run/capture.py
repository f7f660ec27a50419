"""Captura o período mais recente publicado pela CGU: ``python run/capture.py``."""

import argparse

from pipelines.demo import add_sample_option, serve_sample_if_asked
from pipelines.flows import capture_flow
from pipelines.runner import exit_process, run_flow


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="página do portal (padrão: CGU_TERCEIRIZADOS_URL do .env)")
    add_sample_option(parser)
    args = parser.parse_args()
    serve_sample_if_asked(args)
    return run_flow(capture_flow, {"url": args.url})


if __name__ == "__main__":
    exit_process(main)
