"""Local files, partitioned by period: the raw file as downloaded (plus its sha256)
and the parsed rows as UTF-8 CSV, exactly as they are loaded into PostgreSQL.

A capture writes its files under pending names (``pending``: the final name plus
``.pendente-<capture_id>``, one per download, so two captures of a period never write the
same file) and the load loads its own pending CSV. At the end of the load's transaction,
under the period's lock, they are renamed over the period's files (``publish``); a refused or
failed load removes them (``discard``): the local copies are those of the last load, like the
tables (a crash between the rename and the commit leaves the tables behind the files, and the
next capture loads the file again).

The CSVs are separated by ';' like the CGU's own files (and Excel in pt-BR): money
with a decimal comma ("2524,37") needs no quoting, and the parser hands over almost
every source line as it is (see ``ParsedFile.records``)."""

from __future__ import annotations

import csv
import glob
import os
import time
import uuid
from pathlib import Path

from pipelines.constants import RAW_COLUMNS
from pipelines.csv_dialect import CSV_DELIMITER, csv_value
from pipelines.download import DownloadedFile
from pipelines.errors import storage_error
from pipelines.parse import ParsedFile
from pipelines.portal import PublishedFile

QUARANTINE_CSV_COLUMNS = ("linha_origem", "motivo", "linha_bruta")
# The CSVs are written through a large buffer: a few system calls per file instead of one per
# 8 KiB. Each system call gives up Python's GIL and waits to take it back, up to the switch
# interval (5 ms) while another thread computes (the scheduled run imports dbt meanwhile):
# 0.05 s of writing became 0.6 s that way, and 13 s next to a thread that never waits.
WRITE_BUFFER_BYTES = 4 << 20


def period_dir(base: Path, kind: str, published: PublishedFile) -> Path:
    return base / kind / f"ano={published.year}" / f"mes={published.month:02d}"


def _write_atomically(path: Path, write) -> Path:
    """Write through a temporary file renamed into place: a reader never sees half a file,
    and a failed write (disk full, read-only) leaves neither the temporary file nor a
    changed target behind, and names DATA_DIR and the path."""
    temporary = path.with_name(f"{path.name}.{uuid.uuid4().hex[:12]}.tmp")  # never another writer's
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(temporary)
        os.replace(temporary, path)
    except OSError as exc:
        try:
            temporary.unlink(missing_ok=True)
        except OSError:
            pass
        raise storage_error("DATA_DIR", path, exc) from exc
    return path


# A pending file this old belongs to a capture that died (a capture waits for the period's lock
# at most LOCK_WAIT_SECONDS, 30 minutes by default): removed when the period is published again.
STALE_PENDING_SECONDS = 24 * 3600


def pending(path: Path, downloaded: DownloadedFile) -> Path:
    """Where ``downloaded``'s version of the period file ``path`` waits for its load to commit."""
    return path.with_name(f"{path.name}.pendente-{downloaded.capture_id}")


def raw_path(data_dir: Path, published: PublishedFile) -> Path:
    return period_dir(data_dir, "raw", published) / published.file_name


def save_raw_file(data_dir: Path, downloaded: DownloadedFile) -> Path:
    """Save the downloaded bytes and a ``sha256sum``-style checksum file next to them (pending)."""
    published = downloaded.published
    raw = raw_path(data_dir, published)
    path = pending(raw, downloaded)
    _write_atomically(path, lambda p: p.write_bytes(downloaded.content))
    checksum = f"{downloaded.sha256}  {published.file_name}\n"
    _write_atomically(pending(_checksum_path(raw), downloaded), lambda p: p.write_text(checksum))
    return path


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _period_files(data_dir: Path, published: PublishedFile) -> list[Path]:
    raw = raw_path(data_dir, published)
    return [csv_path(data_dir, published), quarantine_csv_path(data_dir, published), raw, _checksum_path(raw)]


def publish(data_dir: Path, downloaded: DownloadedFile) -> list[Path]:
    """With the load: the download's pending files become the period's files. Pending files of
    captures killed before their load ended, older than ``STALE_PENDING_SECONDS``, go too."""
    published = []
    for path in _period_files(data_dir, downloaded.published):
        waiting = pending(path, downloaded)
        try:
            if waiting.exists():
                os.replace(waiting, path)
                published.append(path)
            for leftover in path.parent.glob(glob.escape(path.name) + ".pendente-*"):
                if time.time() - leftover.stat().st_mtime > STALE_PENDING_SECONDS:
                    leftover.unlink(missing_ok=True)
        except OSError as exc:
            raise storage_error("DATA_DIR", path, exc) from exc
    return published


def discard(data_dir: Path, downloaded: DownloadedFile) -> None:
    """A refused or failed capture: its pending files go; the period's files stay as they were."""
    for path in _period_files(data_dir, downloaded.published):
        try:
            pending(path, downloaded).unlink(missing_ok=True)
        except OSError:
            pass  # never hides the failure being handled


def csv_path(data_dir: Path, published: PublishedFile) -> Path:
    return period_dir(data_dir, "csv", published) / f"terceirizados_{published.year}{published.month:02d}.csv"


def quarantine_csv_path(data_dir: Path, published: PublishedFile) -> Path:
    return csv_path(data_dir, published).with_name(f"quarentena_{published.year}{published.month:02d}.csv")


def _write_records(handle, records: list[tuple[str, int, str | None]], before: list[str], after: list[str]) -> None:
    """CSV rows: the values (already CSV text), then the metadata in RAW_COLUMNS order."""
    middle = CSV_DELIMITER + CSV_DELIMITER.join(csv_value(v) for v in before) + CSV_DELIMITER
    tail = CSV_DELIMITER + CSV_DELIMITER.join(csv_value(v) for v in after) + "\n"
    for values, line_number, note in records:
        note_text = "" if note is None else csv_value(note)
        handle.write(values + middle + str(line_number) + CSV_DELIMITER + note_text + tail)


def save_csv(data_dir: Path, parsed: ParsedFile, downloaded: DownloadedFile) -> Path:
    """Write the rows with their capture metadata, in ``raw.terceirizados`` column order
    (pending: ``publish`` after the load).

    The file is what ``COPY`` loads, so what is on disk is what is in the table.
    The quarantined lines go to a CSV of their own next to it.
    """
    published = downloaded.published
    # per-file metadata, around the per-row line number and repair note (RAW_COLUMNS order)
    before = [published.period.isoformat(), published.file_name, published.url, downloaded.sha256]
    after = [downloaded.downloaded_at.isoformat()]

    def write_rows(p: Path) -> None:
        with p.open("w", encoding="utf-8", newline="", buffering=WRITE_BUFFER_BYTES) as handle:
            handle.write(CSV_DELIMITER.join(RAW_COLUMNS) + "\n")
            _write_records(handle, parsed.records, before, after)

    path = pending(csv_path(data_dir, published), downloaded)
    _write_atomically(path, write_rows)

    def write_quarantine(p: Path) -> None:
        with p.open("w", encoding="utf-8", newline="", buffering=WRITE_BUFFER_BYTES) as handle:
            writer = csv.writer(handle, delimiter=CSV_DELIMITER)
            writer.writerow(QUARANTINE_CSV_COLUMNS)
            writer.writerows((q.line_number, q.reason, q.raw_line) for q in parsed.quarantine)

    _write_atomically(pending(quarantine_csv_path(data_dir, published), downloaded), write_quarantine)
    return path
