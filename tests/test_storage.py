"""Local files: the CSV that COPY loads must round-trip every value exactly."""

import csv
import hashlib
from datetime import UTC, datetime

from pipelines.constants import RAW_COLUMNS
from pipelines.csv_dialect import csv_line
from pipelines.download import DownloadedFile
from pipelines.parse import ParsedFile
from pipelines.portal import PublishedFile
from pipelines.storage import discard, publish, save_csv, save_raw_file


def test_csv_round_trips_values_that_need_quoting(tmp_path):
    plain = [str(i) for i in range(23)], 2, None
    tricky = ["A;B", 'diz "oi"', "linha\nquebrada", "", "x\r"] + [str(i) for i in range(18)], 3, None
    repaired = ["EMPRESA; FILIAL"] + [str(i) for i in range(22)], 4, "1 ';' a mais dentro de nm_razao_social"
    values = [plain, tricky, repaired]
    parsed = ParsedFile([(csv_line(v), n, note) for v, n, note in values], [], 3, "utf-8", True)
    published = PublishedFile(2024, 5, "http://h/a,b/terceirizados202405.csv", "csv")
    content = b"conteudo"
    downloaded = DownloadedFile(
        published, content, hashlib.sha256(content).hexdigest(), None, None, datetime(2024, 7, 28, 2, 45, tzinfo=UTC)
    )
    path = save_csv(tmp_path, parsed, downloaded)
    final = tmp_path / "csv" / "ano=2024" / "mes=05" / "terceirizados_202405.csv"
    assert path == final.with_name(f"terceirizados_202405.csv.pendente-{downloaded.capture_id}")
    assert not final.exists()  # until the load commits: publish
    assert publish(tmp_path, downloaded) == [final, final.with_name("quarentena_202405.csv")]
    assert not path.exists()
    path = final
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    assert rows[0] == list(RAW_COLUMNS)
    metadata = ["2024-05-01", "terceirizados202405.csv", published.url, downloaded.sha256]
    for written, (record, line_number, note) in zip(rows[1:], values):
        assert written == record + metadata + [str(line_number), note or "", "2024-07-28T02:45:00+00:00"]
    assert len(rows) == 4


def test_raw_file_is_saved_with_its_checksum(tmp_path):
    content = b"id_terc;...\n1;...\n"
    published = PublishedFile(2019, 1, "http://h/terceirizados-201901_1.csv", "csv")
    digest = hashlib.sha256(content).hexdigest()
    downloaded = DownloadedFile(published, content, digest, None, None, datetime.now(UTC))
    waiting = save_raw_file(tmp_path, downloaded)
    path = tmp_path / "raw" / "ano=2019" / "mes=01" / "terceirizados-201901_1.csv"
    assert waiting == path.with_name(f"{path.name}.pendente-{downloaded.capture_id}")
    assert publish(tmp_path, downloaded) == [path, path.with_name(path.name + ".sha256")]
    assert path.read_bytes() == content
    assert path.with_name(path.name + ".sha256").read_text() == f"{digest}  terceirizados-201901_1.csv\n"


def test_a_discarded_download_leaves_the_period_files_as_they_were(tmp_path):
    published = PublishedFile(2019, 1, "http://h/terceirizados-201901_1.csv", "csv")

    def download(content: bytes) -> DownloadedFile:
        return DownloadedFile(published, content, hashlib.sha256(content).hexdigest(), None, None, datetime.now(UTC))

    kept, refused = download(b"bom"), download(b"recusado")
    save_raw_file(tmp_path, kept)
    publish(tmp_path, kept)
    save_raw_file(tmp_path, refused)
    discard(tmp_path, refused)
    folder = tmp_path / "raw" / "ano=2019" / "mes=01"
    assert sorted(p.name for p in folder.iterdir()) == [
        "terceirizados-201901_1.csv",
        "terceirizados-201901_1.csv.sha256",
    ]
    assert (folder / "terceirizados-201901_1.csv").read_bytes() == b"bom"
