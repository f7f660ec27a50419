"""The parse in a child process (the scheduled run's) gives exactly what the parse in this
process gives, raises the parser's own errors, and turns a child that dies into a clear error."""

import errno
import os
import pickle
import stat
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.portal_generator import build_portal, default_periods
from pipelines.errors import PipelineError, SourceFormatError, StorageError
from pipelines.parse import parse_for_load
from pipelines.parse_process import STORAGE_EXIT, exit_when_orphaned, main, parse_file_in_child
from tests.test_parse import ROW, csv_bytes


def same_outcome(a, b) -> None:
    assert a.records == b.records
    assert a.quarantine == b.quarantine
    assert (a.data_rows, a.encoding, a.has_header, a.notes) == (b.data_rows, b.encoding, b.has_header, b.notes)


@pytest.mark.parametrize("seed", [3, 11])
def test_every_generated_file_parses_the_same_in_a_child_process(tmp_path, seed):
    """CSV and XLSX of every format the portal has used, with quirks (shifted rows, quarantine,
    cp1252, no header), two seeds."""
    portal = build_portal(tmp_path, default_periods(), rows=40, seed=seed)
    for spec in portal.specs:
        content = (tmp_path / "cgu/terceirizados/arquivos" / spec.file_name).read_bytes()
        here = parse_for_load(content, spec.format, spec.file_name)
        there = parse_file_in_child(content, spec.format, spec.file_name, tmp_path)
        same_outcome(here, there)
        expected = portal.expectations[spec.label]
        assert len(there.records) == len(expected.loaded), spec.label
        assert [q.line_number for q in there.quarantine] == expected.quarantined_lines, spec.label


# any text a CSV line may hold, the separator, quotes and line breaks included
FIELD = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(FIELD, min_size=20, max_size=26), min_size=1, max_size=8))
def test_generated_lines_parse_the_same_in_a_child_process(tmp_path, lines):
    content = csv_bytes([ROW, *lines])
    try:
        here = parse_for_load(content, "csv", "gerado.csv")
    except SourceFormatError as exc:
        with pytest.raises(SourceFormatError) as raised:
            parse_file_in_child(content, "csv", "gerado.csv", tmp_path)
        assert str(raised.value) == str(exc)
        return
    same_outcome(here, parse_file_in_child(content, "csv", "gerado.csv", tmp_path))


def test_the_parsers_own_error_comes_back_with_its_message(tmp_path):
    with pytest.raises(SourceFormatError, match=r"^Não foi possível ler o XLSX quebrado\.xlsx: "):
        parse_file_in_child(b"isto nao e um xlsx", "xlsx", "quebrado.xlsx", tmp_path)
    with pytest.raises(SourceFormatError, match=r"Formato de arquivo não suportado: pdf \(x\.pdf\)"):
        parse_file_in_child(b"%PDF", "pdf", "x.pdf", tmp_path)
    assert list((tmp_path / "tmp").iterdir()) == []  # the temporary files are gone


def fake_python(tmp_path, monkeypatch, script: str) -> None:
    """The child's Python replaced by a shell script (arguments: -P -m module source result ...)."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\n" + script)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(sys, "executable", str(fake))


def test_a_child_that_fails_is_a_clear_error_with_its_traceback_in_the_log(tmp_path, monkeypatch, caplog):
    """A child that fails (here: a Python that prints a traceback and exits 3) never yields a
    partial result: the error names the file, the exit code and the child's last line, and the
    whole traceback goes to the log."""
    fake_python(
        tmp_path,
        monkeypatch,
        "echo 'Traceback (most recent call last):' >&2\necho '  File \"parse.py\", line 9' >&2\n"
        "echo 'ValueError: bug no parser' >&2\nexit 3\n",
    )
    with pytest.raises(PipelineError) as raised:
        parse_file_in_child(csv_bytes([ROW]), "csv", "terceirizados202405.csv", tmp_path / "dados")
    assert str(raised.value) == (
        "A leitura de terceirizados202405.csv num processo separado falhou (código de saída 3): "
        "ValueError: bug no parser"
    )
    [record] = [r for r in caplog.records if r.name == "pipelines.parse_process"]
    assert record.levelname == "ERROR" and 'File "parse.py", line 9' in record.getMessage()
    assert list((tmp_path / "dados" / "tmp").iterdir()) == []


def test_a_child_killed_by_the_system_is_named(tmp_path, monkeypatch):
    fake_python(tmp_path, monkeypatch, "kill -KILL $$\n")
    with pytest.raises(PipelineError) as raised:
        parse_file_in_child(csv_bytes([ROW]), "csv", "a.csv", tmp_path)
    assert str(raised.value) == (
        "A leitura de a.csv num processo separado falhou (o processo foi encerrado pelo sinal SIGKILL "
        "(provavelmente faltou memória e o sistema encerrou o processo)): sem mensagem"
    )


def test_a_child_that_answers_nonsense_is_a_clear_error(tmp_path, monkeypatch):
    fake_python(tmp_path, monkeypatch, 'printf "lixo" > "$5"\nexit 0\n')  # $5: the result's path
    with pytest.raises(PipelineError, match=r"^A leitura de a\.csv num processo separado devolveu um resultado ilegí"):
        parse_file_in_child(csv_bytes([ROW]), "csv", "a.csv", tmp_path)


@pytest.mark.parametrize(
    ("module", "name", "expected"),
    [
        ("pipelines.errors", "SourceFormatError", SourceFormatError),
        ("pipelines.errors", "NaoExiste", PipelineError),  # a class this side does not know
        ("os", "system", PipelineError),  # never anything outside the package
    ],
)
def test_the_parsers_error_is_rebuilt_by_type_and_message(tmp_path, monkeypatch, module, name, expected):
    answer = tmp_path / "resposta.pickle"
    answer.write_bytes(pickle.dumps(("erro", module, name, "Arquivo a.csv ilegível.")))
    fake_python(tmp_path, monkeypatch, f'cp "{answer}" "$5"\nexit 0\n')
    with pytest.raises(PipelineError) as raised:
        parse_file_in_child(csv_bytes([ROW]), "csv", "a.csv", tmp_path)
    assert type(raised.value) is expected and str(raised.value) == "Arquivo a.csv ilegível."


def test_a_data_dir_that_cannot_be_written_names_the_variable(tmp_path):
    blocked = tmp_path / "arquivo"
    blocked.write_text("não é uma pasta")
    with pytest.raises(StorageError, match=r"\(pasta de DATA_DIR\).*aponte DATA_DIR no \.env"):
        parse_file_in_child(csv_bytes([ROW]), "csv", "a.csv", blocked)


def test_a_child_that_cannot_write_its_result_names_data_dir(tmp_path, monkeypatch):
    """DATA_DIR filling up while the child writes its result: the child cannot write an error
    message either, so it says it by its exit code, and the parent names DATA_DIR."""
    fake_python(tmp_path, monkeypatch, f"exit {STORAGE_EXIT + errno.ENOSPC}\n")
    with pytest.raises(StorageError) as raised:
        parse_file_in_child(csv_bytes([ROW]), "csv", "a.csv", tmp_path)
    assert "(pasta de DATA_DIR): disco cheio [Errno 28]" in str(raised.value)


def test_the_child_reports_a_result_it_could_not_write(tmp_path):
    source = tmp_path / "arquivo"
    source.write_bytes(csv_bytes([ROW]))
    missing = tmp_path / "nao-existe" / "resultado.pickle"  # ENOENT, as a full disk would give ENOSPC
    assert main([str(source), str(missing), "csv", "a.csv"], parent=os.getppid()) == STORAGE_EXIT + errno.ENOENT


def test_an_orphaned_child_stops(tmp_path):
    """The parent killed with -9: the child notices it has another parent and stops."""
    stopped = []
    watchdog = exit_when_orphaned(parent=os.getppid() + 1_000_000, interval=0.01, stop=stopped.append)
    watchdog.join(5)
    assert stopped == [1]


def test_the_temporary_folders_of_dead_parses_are_swept(tmp_path):
    folder = tmp_path / "tmp"
    abandoned = folder / f"leitura-{2**22 + 12345}-x1"  # above pid_max: no process has this pid
    alive = folder / f"leitura-{os.getpid()}-x2"  # a parse still running in this process
    for path in (abandoned, alive):
        path.mkdir(parents=True)
        (path / "arquivo").write_bytes(b"89 MB")
    parse_file_in_child(csv_bytes([ROW]), "csv", "a.csv", tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == [alive.name]
