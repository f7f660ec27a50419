"""Each flow's log file: cleared and configured at set-up, written as text for people
(``logs__<flow>.txt``) and as JSON lines for the database (``logs__<flow>.jsonl``)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

import prefect

# Loggers whose records belong to a flow run: Prefect's runners and tasks, this package, dbt.
CAPTURED_LOGGERS = ("prefect", "pipelines")
TEXT_FORMAT = "[%(asctime)s] %(levelname)s - %(name)s | %(message)s"


def current_task_name() -> str | None:
    """The running Prefect task (None outside a task, e.g. in dbt's own threads)."""
    return prefect.context.get("task_full_name") or prefect.context.get("task_name")


class FlowLogHandler(logging.Handler):
    """Writes every record to the flow's text file and to its structured JSON-lines file."""

    def __init__(self, text_path: Path, jsonl_path: Path, flow_name: str, run_id: str):
        super().__init__(level=logging.INFO)
        self.text_path, self.jsonl_path = text_path, jsonl_path
        self.flow_name, self.run_id = flow_name, run_id
        self.setFormatter(logging.Formatter(TEXT_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message = f"{message}\n{logging.Formatter().formatException(record.exc_info)}"
            structured = {
                "nome_flow": self.flow_name,
                "id_execucao": self.run_id,
                "registrado_em": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
                "nivel": record.levelname,
                "nome_task": getattr(record, "nome_task", None) or current_task_name(),
                "logger": record.name,
                "mensagem": message,
            }
            text = self.format(record)
            with self.text_path.open("a", encoding="utf-8") as handle:
                handle.write(text + "\n")
            with self.jsonl_path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(structured, ensure_ascii=False) + "\n")
        except Exception:  # a logging failure must never break the flow
            self.handleError(record)


def log_paths(log_dir: Path, flow_name: str) -> tuple[Path, Path]:
    short = flow_name.split("__")[-1]
    return log_dir / f"logs__{short}.txt", log_dir / f"logs__{short}.jsonl"


def attach_handler(log_dir: Path, flow_name: str, run_id: str, loggers: tuple[str, ...] = CAPTURED_LOGGERS) -> Path:
    """Route the flow's loggers of this process into its log files (idempotent).

    Called at set-up and again by tasks that may run in other processes (Dask
    workers), which append to the same files."""
    text_path, jsonl_path = log_paths(log_dir, flow_name)
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


def setup_log_file(log_dir: Path, flow_name: str, run_id: str, loggers: tuple[str, ...] = CAPTURED_LOGGERS) -> Path:
    """Clear the flow's log files and route the flow's loggers into them."""
    log_dir.mkdir(parents=True, exist_ok=True)
    for path in log_paths(log_dir, flow_name):
        path.write_text("", encoding="utf-8")
    text_path = attach_handler(log_dir, flow_name, run_id, loggers)
    logging.getLogger(loggers[-1]).info("Configuração do arquivo de log %s realizada com sucesso.", text_path)
    return text_path


def read_records(log_dir: Path, flow_name: str, run_id: str | None = None) -> list[dict]:
    """The structured records of the flow's current log file (of one run, if given)."""
    _, jsonl_path = log_paths(log_dir, flow_name)
    if not jsonl_path.exists():
        return []
    records = []
    with jsonl_path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                if run_id is None or record["id_execucao"] == run_id:
                    records.append(record)
    return records
