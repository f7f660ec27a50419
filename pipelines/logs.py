"""Each flow run's log: written as text for people (``logs__<flow>.txt``, the flow's
latest run, cleared at set-up) and as JSON lines for the database, one file per run
(``pendentes/<flow>__<run id>.jsonl``), removed only once its records are in
``logs.registros``: no run's records are overwritten before they are loaded, even when
the run crashed or the database was down at the end of it."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import prefect

from pipelines.errors import storage_error

# Loggers whose records belong to a flow run: Prefect's runners and tasks, this package, dbt.
CAPTURED_LOGGERS = ("prefect", "pipelines")
TEXT_FORMAT = "[%(asctime)s] %(levelname)s - %(name)s | %(message)s"


def current_task_name() -> str | None:
    """The running Prefect task (None outside a task, e.g. in dbt's own threads)."""
    return prefect.context.get("task_full_name") or prefect.context.get("task_name")


def structured(record: logging.LogRecord, flow_name: str, run_id: str) -> dict:
    """A log record as one row of ``logs.registros``."""
    message = record.getMessage()
    if record.exc_info:
        message = f"{message}\n{logging.Formatter().formatException(record.exc_info)}"
    return {
        "nome_flow": flow_name,
        "id_execucao": run_id,
        "registrado_em": datetime.fromtimestamp(record.created, UTC).isoformat(),
        "nivel": record.levelname,
        "nome_task": getattr(record, "nome_task", None) or current_task_name(),
        "logger": record.name,
        "mensagem": message,
        # a structured fact (constants.EVENT_*), so readers never depend on a message's wording
        "evento": getattr(record, "evento", None),
        "detalhe": getattr(record, "detalhe", None),  # the event's facts (a dict of JSON values)
    }


class FlowLogHandler(logging.Handler):
    """Writes every record to the flow's text file and to its structured JSON-lines file."""

    def __init__(self, text_path: Path, jsonl_path: Path, flow_name: str, run_id: str):
        super().__init__(level=logging.INFO)
        self.text_path, self.jsonl_path = text_path, jsonl_path
        self.flow_name, self.run_id = flow_name, run_id
        self.setFormatter(logging.Formatter(TEXT_FORMAT))
        self.failures = 0
        self.last_error: OSError | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            row = structured(record, self.flow_name, self.run_id)
            text = self.format(record)
            with self.text_path.open("a", encoding="utf-8") as handle:
                handle.write(text + "\n")
            with self.jsonl_path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        except OSError as exc:  # disk full, read-only: counted, and the run cannot end as Success
            self.failures += 1
            self.last_error = exc
            _FAILURES[self.run_id] = (_FAILURES.get(self.run_id, (0, exc))[0] + 1, exc)
        except Exception:  # a logging failure must never break the flow
            self.handleError(record)


class DatabaseLogHandler(logging.Handler):
    """Sends every record straight to ``logs.registros`` through ``sink`` (a callable that
    appends rows): used by tasks running in another process than the flow's, such as Dask
    workers on other machines, whose files the flow would never read."""

    def __init__(self, sink, flow_name: str, run_id: str):
        super().__init__(level=logging.INFO)
        self.sink, self.flow_name, self.run_id = sink, flow_name, run_id

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink([structured(record, self.flow_name, self.run_id)])
        except Exception:  # a logging failure must never break the task; the flow's file still has its own
            self.handleError(record)


def attach_database_handler(sink, flow_name: str, run_id: str, loggers: tuple[str, ...] = CAPTURED_LOGGERS) -> None:
    """Route this process's loggers to the database for the run (idempotent)."""
    for name in loggers:
        target = logging.getLogger(name)
        current = [h for h in target.handlers if isinstance(h, DatabaseLogHandler)]
        if any(h.run_id == run_id for h in current):
            continue
        for old in current:
            target.removeHandler(old)
        target.addHandler(DatabaseLogHandler(sink, flow_name, run_id))
        if target.level == logging.NOTSET or target.level > logging.INFO:
            target.setLevel(logging.INFO)


# run id -> (records that could not be written, last error), for this process
_FAILURES: dict[str, tuple[int, OSError]] = {}


def write_failures(run_id: str) -> tuple[int, OSError | None]:
    """How many of the run's records this process could not write, and the last error."""
    return _FAILURES.get(run_id, (0, None))


PENDING_DIR = "pendentes"


def pending_path(log_dir: Path, flow_name: str, run_id: str) -> Path:
    """The run's JSON-lines file, kept until its records are in the database."""
    return log_dir / PENDING_DIR / f"{flow_name.split('__')[-1]}__{run_id}.jsonl"


def pending_runs(log_dir: Path) -> list[tuple[str, Path]]:
    """(run id, file) of every run whose records were not loaded yet."""
    folder = log_dir / PENDING_DIR
    if not folder.is_dir():
        return []
    return [(path.stem.split("__", 1)[1], path) for path in sorted(folder.glob("*__*.jsonl"))]


def read_pending(path: Path) -> list[dict]:
    records = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:  # the last line of a run killed mid-write
                    continue
    return records


def log_paths(log_dir: Path, flow_name: str, run_id: str) -> tuple[Path, Path]:
    short = flow_name.split("__")[-1]
    return log_dir / f"logs__{short}.txt", pending_path(log_dir, flow_name, run_id)


def attach_handler(log_dir: Path, flow_name: str, run_id: str, loggers: tuple[str, ...] = CAPTURED_LOGGERS) -> Path:
    """Route the flow's loggers of this process into its log files (idempotent).

    Called at set-up and again by tasks that may run in other processes (Dask
    workers), which append to the same files."""
    text_path, jsonl_path = log_paths(log_dir, flow_name, run_id)
    for name in loggers:
        target = logging.getLogger(name)
        current = [h for h in target.handlers if isinstance(h, FlowLogHandler)]
        if any(h.run_id == run_id and h.text_path == text_path for h in current):
            continue
        for old in current:
            target.removeHandler(old)
        target.addHandler(FlowLogHandler(text_path, jsonl_path, flow_name, run_id))
        if target.level == logging.NOTSET or target.level > logging.INFO:
            target.setLevel(logging.INFO)
    return text_path


def detach_handlers(loggers: tuple[str, ...] = CAPTURED_LOGGERS) -> None:
    """Stop routing these loggers into a flow run's log files: a run that was cut short by a
    signal, whose own end never came (later lines are not its)."""
    for name in loggers:
        target = logging.getLogger(name)
        for handler in [h for h in target.handlers if isinstance(h, FlowLogHandler)]:
            target.removeHandler(handler)


def setup_log_file(log_dir: Path, flow_name: str, run_id: str, loggers: tuple[str, ...] = CAPTURED_LOGGERS) -> Path:
    """Clear the flow's text log, create the run's records file, route the loggers into them.
    A folder that cannot be written fails here, naming LOG_DIR and the path."""
    text_path, jsonl_path = log_paths(log_dir, flow_name, run_id)
    for path in (text_path, jsonl_path):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("", encoding="utf-8")
        except OSError as exc:
            raise storage_error("LOG_DIR", path, exc) from exc
    text_path = attach_handler(log_dir, flow_name, run_id, loggers)
    return text_path


def check_writable(log_dir: Path, flow_name: str, run_id: str) -> None:
    """Fail, naming LOG_DIR and the path, when the run's log files cannot be written."""
    for path in log_paths(log_dir, flow_name, run_id):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8"):
                pass
        except OSError as exc:
            raise storage_error("LOG_DIR", path, exc) from exc


def read_records(log_dir: Path, flow_name: str, run_id: str) -> list[dict]:
    """The structured records of one run (empty when its file is missing)."""
    path = pending_path(log_dir, flow_name, run_id)
    if not path.exists():
        return []
    return [record for record in read_pending(path) if record.get("id_execucao") == run_id]


def discard(log_dir: Path, flow_name: str, run_id: str) -> None:
    """Forget a run's records file once they are in the database."""
    pending_path(log_dir, flow_name, run_id).unlink(missing_ok=True)
