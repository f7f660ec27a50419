"""The repository itself: no large or generated files tracked, nothing private sent to the image."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT_BYTES = 1024 * 1024
# Tracked files allowed above the limit (none today: the sample portal's files and the
# screenshots are each under it, but they are the only kinds that may grow past it).
ALLOWED_LARGE = ("pipelines/demo/portal/", "images/")
GENERATED = (".whl", ".pyc", ".user.yml", ".tar.gz", ".egg-info")


def tracked_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [name for name in listed.decode().split("\0") if name and (ROOT / name).is_file()]


def test_no_large_tracked_file_outside_the_allow_list():
    large = [
        (name, (ROOT / name).stat().st_size)
        for name in tracked_files()
        if (ROOT / name).stat().st_size > LIMIT_BYTES and not name.startswith(ALLOWED_LARGE)
    ]
    assert large == [], f"arquivos versionados acima de 1 MB (fora da lista permitida): {large}"


def test_no_generated_file_is_tracked():
    assert [name for name in tracked_files() if name.endswith(GENERATED) or "/__pycache__/" in name] == []


def test_the_image_never_receives_secrets_or_local_data():
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".env", ".venv", ".pgdata", ".run", "logs", "adm_cgu_terceirizados_local", "bench/work", "*.whl"} <= ignored
