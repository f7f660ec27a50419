"""Agendador local: roda o flow adm_cgu_terceirizados__pipeline com flow.run() todo dia às
00:00 (America/Sao_Paulo), o mesmo flow e o mesmo agendamento registrados no Prefect Server.
Cada execução decide: em 1º de janeiro, maio e setembro captura e materializa o período mais
recente; depois de uma tentativa que falhou, tenta de novo no dia seguinte até conseguir; nos
outros dias termina como Skipped, com o motivo. O estado fica em logs.execucoes, então
sobrevive a reinícios. Uma falha (PostgreSQL fora do ar, portal inacessível) é registrada no
log e tentada de novo; só um sinal (SIGTERM, Ctrl+C) para o agendador.

    python run/scheduler.py                  # roda para sempre (decide agora e a cada 00:00)
    python run/scheduler.py --uma-vez        # decide uma vez (executa se houver o que fazer) e sai
    python run/scheduler.py --agora          # executa uma tentativa agora e sai (código 1 se falhar)
    python run/scheduler.py --intervalo 10   # verifica o relógio a cada 10 s (padrão 60)
"""

import argparse
import functools
import logging
import os
import signal
import sys
import uuid

from pipelines import logs, runs
from pipelines.constants import SCHEDULER_FLOW, SCHEDULER_LOGGER
from pipelines.demo import add_sample_option, serve_sample_if_asked
from pipelines.errors import ConfigError
from pipelines.recovery import recover_runs
from pipelines.runner import exit_process, prepare
from pipelines.scheduled import DEFAULT_TICK_SECONDS, LocalScheduler, run_pipeline
from pipelines.schedules import SystemClock
from pipelines.settings import load_settings

INTERRUPTED = 128 + signal.SIGTERM  # exit code of --agora / --uma-vez stopped by SIGTERM


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} não é um número de segundos maior que zero")
    return value


def finish_session(upload_logs, settings, session_id: str) -> None:
    """The end of a single attempt: the scheduler's own records loaded once more (everything it
    logged is in the file by now) and their pending file removed, so attempts started by cron do
    not pile files up in LOG_DIR/pendentes. When the database cannot take them, the file stays
    (and the text log has the same lines), said on the console."""
    try:
        upload_logs()
    except Exception as exc:  # noqa: BLE001 - the file stays, said on the console
        path = logs.pending_path(settings.log_dir, SCHEDULER_FLOW, session_id)
        print(f"Registros do agendador não carregados no PostgreSQL (continuam em {path}): {exc}")
        return
    logs.discard(settings.log_dir, SCHEDULER_FLOW, session_id)


def after_signal(upload_logs, settings, session_id: str) -> None:
    """The scheduler stopped by SIGTERM: the run in progress and its attempt closed as
    Interrompida, saying so (they count as a failure), their log records loaded now (what the
    next start's recovery would do), then the scheduler's own records loaded and their pending
    file removed (finish_session)."""
    stopped = runs.interrupt_own_runs(
        settings, "Interrompida: o agendador recebeu SIGTERM (parada pedida) durante a execução. Conta como falha."
    )
    logs.detach_handlers()  # what is logged from here on is not the interrupted run's
    try:
        recover_runs(settings)
    except Exception as exc:  # noqa: BLE001 - the next start loads them
        print(f"Registros da execução interrompida não carregados agora (a próxima execução os carrega): {exc}")
    logging.getLogger(SCHEDULER_LOGGER).warning(
        "Agendador parado por SIGTERM%s.",
        f"; execução(ões) interrompida(s): {', '.join(stopped)}" if stopped else "",
    )
    finish_session(upload_logs, settings, session_id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uma-vez", action="store_true", help="decide uma vez e sai")
    parser.add_argument(
        "--agora",
        action="store_true",
        help="executa uma tentativa agora, fora do calendário, e sai (conta para o ciclo atual)",
    )
    parser.add_argument(
        "--intervalo",
        type=positive_seconds,
        default=DEFAULT_TICK_SECONDS,
        metavar="SEGUNDOS",
        help=f"de quanto em quanto tempo o agendador verifica o relógio e repete uma execução "
        f"que não conseguiu decidir (padrão: {DEFAULT_TICK_SECONDS} s)",
    )
    add_sample_option(parser)
    args = parser.parse_args()
    serve_sample_if_asked(args)
    if args.agora or args.uma_vez:
        settings = prepare()  # a single run needs the database now: exit 2 with the reason
    else:
        try:  # running for good: a database that is down now is waited for, not fatal
            settings = load_settings()
        except ConfigError as exc:
            print(f"Erro de configuração: {exc}", file=sys.stderr)
            print("Confira o arquivo .env (modelo em .env.example).", file=sys.stderr)
            return 2

    # unique even when the pid is reused (cron, containers): each upload replaces the session's records
    session_id = f"agendador-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    text_log = logs.setup_log_file(settings.log_dir, SCHEDULER_FLOW, session_id, loggers=(SCHEDULER_LOGGER,))
    scheduler_logger = logging.getLogger(SCHEDULER_LOGGER)
    scheduler_logger.addHandler(logging.StreamHandler(sys.stdout))
    scheduler_logger.setLevel(logging.INFO)
    print(f"Agendador iniciado (log em {text_log}).", flush=True)

    # interrupts the sleep too; a single attempt stopped half-way did not succeed: 128 + SIGTERM,
    # the shell's code for it. The handler only raises: the database work of the stop
    # (after_signal) is done once the interrupted code has unwound and closed its transactions,
    # so it cannot wait on a row the interrupted code itself holds.
    single = args.agora or args.uma_vez
    signalled = []

    def stop(*_) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM does not cut the clean-up short
        signalled.append(True)
        sys.exit(INTERRUPTED if single else 0)

    signal.signal(signal.SIGTERM, stop)

    def upload_logs() -> None:
        runs.insert_log_records(settings, logs.read_records(settings.log_dir, SCHEDULER_FLOW, session_id))

    scheduler = LocalScheduler(
        SystemClock(), functools.partial(run_pipeline, settings), args.intervalo, after_run=upload_logs
    )
    try:
        if args.agora:
            succeeded = scheduler.run_now()
            finish_session(upload_logs, settings, session_id)
            return 0 if succeeded else 1
        if args.uma_vez:
            state = scheduler.step()
            finish_session(upload_logs, settings, session_id)
            return 0 if state is not None and not state.is_failed() else 1
        try:
            scheduler.run_forever()
        except KeyboardInterrupt:
            pass
        return 0
    except SystemExit:
        if signalled:
            after_signal(upload_logs, settings, session_id)
        raise


if __name__ == "__main__":
    exit_process(main)
