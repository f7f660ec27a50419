"""Agendador: captura e materializa o período mais recente em 1º de janeiro, maio e
setembro (America/Sao_Paulo) e, se uma tentativa falhar, tenta de novo todo dia até
conseguir. O estado fica em logs.execucoes, então sobrevive a reinícios.

    python run/scheduler.py             # roda para sempre
    python run/scheduler.py --uma-vez   # decide uma vez (executa se for a hora) e sai
    python run/scheduler.py --agora     # executa uma tentativa agora e sai (código 1 se falhar)
"""

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines import database, logs  # noqa: E402
from pipelines.constants import SCHEDULER_FLOW  # noqa: E402
from pipelines.runner import prepare  # noqa: E402
from pipelines.sample_portal import add_sample_option, serve_sample_if_asked  # noqa: E402
from pipelines.schedules import PostgresAttemptStore, Scheduler, SystemClock  # noqa: E402
from pipelines.scheduled import run_scheduled_pipeline  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uma-vez", action="store_true", help="decide uma vez e sai")
    parser.add_argument("--agora", action="store_true",
                        help="executa uma tentativa agora, fora do calendário, e sai (conta para o ciclo atual)")
    add_sample_option(parser)
    args = parser.parse_args()
    serve_sample_if_asked(args)
    settings = prepare()

    session_id = f"agendador-{os.getpid()}"
    text_log = logs.setup_log_file(settings.log_dir, SCHEDULER_FLOW, session_id, loggers=("agendador",))
    scheduler_logger = logging.getLogger("agendador")
    scheduler_logger.addHandler(logging.StreamHandler(sys.stdout))
    scheduler_logger.setLevel(logging.INFO)
    print(f"Agendador iniciado (log em {text_log}).", flush=True)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # interrupts the sleep too

    def upload_logs() -> None:
        database.insert_log_records(settings, logs.read_records(settings.log_dir, SCHEDULER_FLOW, session_id))

    scheduler = Scheduler(SystemClock(), PostgresAttemptStore(settings),
                          lambda attempt_id: run_scheduled_pipeline(settings, attempt_id), max_sleep_seconds=60)
    if args.agora:
        succeeded = scheduler.run_now()
        upload_logs()
        return 0 if succeeded else 1
    if args.uma_vez:
        scheduler.step()
        upload_logs()
        return 0
    scheduler.run_forever(after_step=upload_logs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
