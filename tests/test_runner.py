"""pipelines.runner.exit_process: a run/*.py process ends with main()'s status, at once, without
losing what a normal exit does (atexit handlers, buffered output, threads still working)."""

import subprocess
import sys
import textwrap

import pytest

from pipelines.settings import PROJECT_ROOT


def run_script(body: str) -> subprocess.CompletedProcess:
    script = textwrap.dedent(
        """
        import atexit, sys, threading, time
        from pipelines.runner import exit_process
        atexit.register(lambda: print("atexit rodou", flush=True))
        """
    ) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("returned", "status"), [("return 3", 3), ("return None", 0), ("return 0", 0), ("raise SystemExit(2)", 2)]
)
def test_the_status_of_main_and_everything_written_survive(returned, status):
    done = run_script(
        f"""
        def main():
            sys.stdout.write("saída sem quebra de linha e sem flush")
            sys.stderr.write("erro sem flush")
            {returned}
        exit_process(main)
        """
    )
    assert done.returncode == status
    assert done.stdout == "saída sem quebra de linha e sem flushatexit rodou\n"
    assert done.stderr == "erro sem flush"


def test_a_message_given_to_system_exit_is_printed_and_gives_1():
    done = run_script(
        """
        def main():
            raise SystemExit("Erro de configuração: POSTGRES_PORT inválida")
        exit_process(main)
        """
    )
    assert (done.returncode, done.stderr) == (1, "Erro de configuração: POSTGRES_PORT inválida\n")


def test_a_thread_still_working_is_waited_for():
    done = run_script(
        """
        def work():
            time.sleep(0.3)
            print("trabalho terminado", flush=True)
        def main():
            threading.Thread(target=work).start()
            return 5
        exit_process(main)
        """
    )
    assert done.returncode == 5
    assert done.stdout == "trabalho terminado\natexit rodou\n"
