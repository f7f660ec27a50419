"""Captura o período mais recente publicado pela CGU: ``python run/capture.py``."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.flows import capture_flow  # noqa: E402
from pipelines.runner import run_flow  # noqa: E402
from pipelines.sample_portal import add_sample_option, serve_sample_if_asked  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="página do portal (padrão: CGU_TERCEIRIZADOS_URL do .env)")
    add_sample_option(parser)
    args = parser.parse_args()
    serve_sample_if_asked(args)
    return run_flow(capture_flow, {"url": args.url})


if __name__ == "__main__":
    sys.exit(main())
