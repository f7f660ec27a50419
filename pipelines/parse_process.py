"""``parse_for_load`` run in a child process (``python -m pipelines.parse_process``).

The parse is CPU work in Python: in another process it runs on the other core while this
process does something else (the scheduled run imports dbt and reads the dbt project
meanwhile, ``pipelines.dbt.prepare_in_background``). Same function, same result: the file's
bytes and the pickled ``ParsedFile`` travel through temporary files under ``work_dir`` (the
pipeline's DATA_DIR), each written and read in one call (a pipe would be read in thousands of
small pieces, each waiting for Python's GIL while the other thread works). An error the
parser raises on purpose (a ``PipelineError``, e.g. an unreadable file) is raised here again
with its type and message; any other failure of the child, or a child that dies, becomes a
``PipelineError`` naming the file and the cause, with the child's traceback in the log."""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pipelines.errors import PipelineError, storage_error
from pipelines.parse import ParsedFile, parse_for_load

logger = logging.getLogger("pipelines.parse_process")

OK, ERROR = "ok", "erro"
TEMPORARY_FOLDER = "tmp"  # under work_dir
# The child could not write its result (DATA_DIR full): it exits with this + errno, since it
# cannot write an error message either.
STORAGE_EXIT = 100
ORPHAN_CHECK_SECONDS = 1.0


def _child_environment() -> dict[str, str]:
    """This environment, with the folder this ``pipelines`` package was imported from first on
    the child's path (the same code even when the package is not installed, as in the image)."""
    package_root = str(Path(__file__).resolve().parents[1])
    path = [package_root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def _rebuilt_error(module: str, name: str, message: str) -> PipelineError:
    """The parser's own error, by type and message (an error class whose constructor wants more
    than the message comes back as a plain PipelineError with the same message)."""
    try:
        kind = getattr(importlib.import_module(module), name) if module.startswith("pipelines.") else None
        if isinstance(kind, type) and issubclass(kind, PipelineError):
            return kind(message)
    except Exception:  # any failure to rebuild falls back to the plain error below
        pass
    return PipelineError(message)


def _sweep_abandoned(folder: Path) -> None:
    """Remove the temporary folders of parses whose process is gone (a parent killed with -9
    never removes its own): each folder is named after the pid that made it."""
    for abandoned in folder.glob("leitura-*-*"):
        try:
            pid = int(abandoned.name.split("-")[1])
            os.kill(pid, 0)  # alive (or another user's): kept
        except ProcessLookupError:
            shutil.rmtree(abandoned, ignore_errors=True)
        except (ValueError, PermissionError, OSError):
            continue


def _death(returncode: int) -> str:
    """How the child ended, in words."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"sinal {-returncode}"
        killed = -returncode == signal.SIGKILL
        hint = " (provavelmente faltou memória e o sistema encerrou o processo)" if killed else ""
        return f"o processo foi encerrado pelo sinal {name}{hint}"
    return f"código de saída {returncode}"


def parse_file_in_child(content: bytes, file_format: str, file_name: str, work_dir: Path) -> ParsedFile:
    """``parse_for_load(content, file_format, file_name)``, computed by a child Python process;
    its temporary files go under ``work_dir`` (DATA_DIR), removed before returning."""
    folder = work_dir / TEMPORARY_FOLDER
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _sweep_abandoned(folder)
        temporary = tempfile.TemporaryDirectory(prefix=f"leitura-{os.getpid()}-", dir=folder)
    except OSError as exc:
        raise storage_error("DATA_DIR", folder, exc) from exc
    with temporary as name:
        source, result, errors = (Path(name, part) for part in ("arquivo", "resultado.pickle", "erros.txt"))
        try:
            source.write_bytes(content)
            with errors.open("wb") as stderr:
                # -P: nothing from the current folder shadows the package's modules in the child
                child = subprocess.run(
                    [sys.executable, "-P", "-m", __name__, str(source), str(result), file_format, file_name],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    env=_child_environment(),
                    check=False,
                )
            answer = result.read_bytes() if child.returncode == 0 else b""
        except OSError as exc:
            raise storage_error("DATA_DIR", source.parent, exc) from exc
        if child.returncode == 0:
            try:
                status, *value = pickle.loads(answer)
            except Exception as exc:  # never a partial result
                raise PipelineError(
                    f"A leitura de {file_name} num processo separado devolveu um resultado ilegível: {exc}"
                ) from exc
            if status == OK and len(value) == 1 and isinstance(value[0], ParsedFile):
                return value[0]
            if status == ERROR and len(value) == 3:
                raise _rebuilt_error(*value)
        trace = errors.read_text(encoding="utf-8", errors="replace").strip()
        if not trace and STORAGE_EXIT < child.returncode < STORAGE_EXIT + 100:
            code = child.returncode - STORAGE_EXIT
            raise storage_error("DATA_DIR", source.parent, OSError(code, os.strerror(code)))
    if trace:
        logger.error("Saída de erro do processo que lia %s:\n%s", file_name, trace[-4000:])
    last_line = trace.splitlines()[-1] if trace else "sem mensagem"
    raise PipelineError(
        f"A leitura de {file_name} num processo separado falhou ({_death(child.returncode)}): {last_line}"
    )


def exit_when_orphaned(parent: int, interval: float = ORPHAN_CHECK_SECONDS, stop=os._exit) -> threading.Thread:
    """A watchdog for the child: when the process that started it is gone (killed with -9, its
    temporary files then swept by the next parse), the child stops instead of parsing on."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        stop(1)

    thread = threading.Thread(target=watch, name="orfao", daemon=True)
    thread.start()
    return thread


def main(argv: list[str], parent: int | None = None) -> int:
    """The child: reads the file at ``source``, writes the outcome pickled to ``result``:
    ``(OK, parsed)`` or ``(ERROR, module, class name, message)`` of the parser's own error.
    A result that cannot be written (disk full) ends it with ``STORAGE_EXIT + errno``."""
    source, result, file_format, file_name = argv
    exit_when_orphaned(os.getppid() if parent is None else parent)
    content = Path(source).read_bytes()
    try:
        outcome = (OK, parse_for_load(content, file_format, file_name))
    except PipelineError as exc:
        outcome = (ERROR, type(exc).__module__, type(exc).__qualname__, str(exc))
    try:
        Path(result).write_bytes(pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
    except OSError as exc:
        if exc.errno is None or not 0 < exc.errno < 100:
            raise
        return STORAGE_EXIT + exc.errno
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
