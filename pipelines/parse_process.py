"""``parse_file`` run in a child process (``python -m pipelines.parse_process``).

The parse is CPU work in Python: in another process it runs on the other core while this
process does something else (the scheduled run imports dbt and reads the dbt project
meanwhile, ``pipelines.dbt.prepare_in_background``). Same function, same result: the file's
bytes and the pickled ``ParsedFile`` travel through temporary files, each written and read
in one call (a pipe would be read in thousands of small pieces, each waiting for Python's
GIL while the other thread works). An error the parser raises on purpose (a
``PipelineError``, e.g. an unreadable file) is raised here again with its own message; a
child that dies or fails otherwise becomes a ``PipelineError`` naming the file and the
child's last words."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

from pipelines.errors import PipelineError
from pipelines.parse import ParsedFile, parse_file

OK, ERROR = "ok", "erro"


def _child_environment() -> dict[str, str]:
    """This environment, with the folder this ``pipelines`` package was imported from first on
    the child's path (the same code even when the package is not installed, as in the image)."""
    package_root = str(Path(__file__).resolve().parents[1])
    path = [package_root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def parse_file_in_child(content: bytes, file_format: str, file_name: str) -> ParsedFile:
    """``parse_file(content, file_format, file_name)``, computed by a child Python process."""
    with tempfile.TemporaryDirectory(prefix="terceirizados-parse-") as folder:
        source, result, errors = (Path(folder, name) for name in ("arquivo", "resultado.pickle", "erros.txt"))
        source.write_bytes(content)
        with errors.open("wb") as stderr:
            child = subprocess.run(
                [sys.executable, "-m", __name__, str(source), str(result), file_format, file_name],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=_child_environment(),
                check=False,
            )
        if child.returncode == 0:
            try:
                status, value = pickle.loads(result.read_bytes())
            except Exception as exc:  # never a partial result
                raise PipelineError(
                    f"A leitura de {file_name} num processo separado devolveu um resultado ilegível: {exc}"
                ) from exc
            if status == OK and isinstance(value, ParsedFile):
                return value
            if status == ERROR and isinstance(value, PipelineError):
                raise value
        lines = errors.read_text(encoding="utf-8", errors="replace").strip().splitlines() or ["sem mensagem"]
    raise PipelineError(
        f"A leitura de {file_name} num processo separado falhou (código de saída {child.returncode}): {lines[-1]}"
    )


def main(argv: list[str]) -> int:
    """The child: reads the file at ``source``, writes ``(status, value)`` pickled to ``result``."""
    source, result, file_format, file_name = argv
    content = Path(source).read_bytes()
    try:
        outcome = (OK, parse_file(content, file_format, file_name))
    except PipelineError as exc:
        outcome = (ERROR, exc)
    Path(result).write_bytes(pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
