"""Offline: a portal whose name does not resolve fails at once (no retries), with one
clear block on the console and the tracebacks only in the log file."""

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_an_unresolvable_portal_fails_at_once_with_one_clear_block(settings, tmp_path):
    env = {
        **os.environ,
        "CGU_TERCEIRIZADOS_URL": "http://portal-inexistente.invalid/cgu/terceirizados",
        "DOWNLOAD_MAX_RETRIES": "3",
        "DOWNLOAD_RETRY_DELAY_SECONDS": "10",
        "LOG_DIR": str(tmp_path),
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "run/capture.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    # no retry: three retries would wait 10 + 20 + 40 s (timing itself lives in bench/, this only bounds it)
    assert elapsed < 60
    console = done.stdout + done.stderr
    assert "Traceback" not in console
    assert "Nova tentativa" not in console and "Retrying" not in console
    block = done.stderr.strip().splitlines()
    assert block[0].startswith("Flow adm_cgu_terceirizados__capture falhou (execução ")
    assert block[1] == (
        "  - discover_published_files: O nome do servidor portal-inexistente.invalid não pôde ser "
        "resolvido (sem internet ou sem DNS?): http://portal-inexistente.invalid/cgu/terceirizados "
        "não foi acessado."
    )
    assert block[2] == f"Detalhes (com os tracebacks) no log: {tmp_path / 'logs__capture.txt'}"
    assert block[-1] == "  python run/capture.py --amostra"
    assert "Traceback" in (tmp_path / "logs__capture.txt").read_text(encoding="utf-8")
