"""App Dash com as tabelas, os logs, as execuções e gráficos: ``python run/results.py``
(http://127.0.0.1:8050; RESULTS_HOST e RESULTS_PORT mudam o endereço). Para uso local:
usa o servidor de desenvolvimento do Werkzeug; o contêiner serve o app com waitress
(veja run/container.sh)."""

import argparse
import sys

from pipelines.errors import ConfigError
from pipelines.results.app import create_app
from pipelines.settings import load_settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", help="endereço (padrão: RESULTS_HOST ou 127.0.0.1)")
    parser.add_argument("--port", type=int, help="porta (padrão: RESULTS_PORT ou 8050)")
    args = parser.parse_args()
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"Erro de configuração: {exc}", file=sys.stderr)
        return 2
    host, port = args.host or settings.results_host, args.port or settings.results_port
    print(f"Resultados em http://{host}:{port}", flush=True)
    create_app(settings).run(host=host, port=port, debug=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
