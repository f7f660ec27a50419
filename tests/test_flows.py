"""Every flow is a valid Prefect 1 flow that would register; importing never contacts a server."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import flows

ROOT = Path(__file__).resolve().parent.parent
ALL_FLOWS = [flows.capture_flow, flows.materialize_flow, flows.historic_capture_flow, flows.historic_materialize_flow]


@pytest.mark.parametrize("flow", ALL_FLOWS, ids=lambda f: f.name)
def test_flow_validates_and_serializes(flow):
    flow.validate()
    serialized = flow.serialize()
    assert serialized["name"] == flow.name
    assert {t["name"] for t in serialized["tasks"]} >= {"setup_log_file", "upload_logs_to_database"}
    assert [t.name for t in flow.sorted_tasks()][0] in ("setup_log_file", "url")


def test_capture_flow_follows_the_original_steps_in_order():
    order = [t.name for t in flows.capture_flow.sorted_tasks() if t.name != "url"]
    assert order == [
        "setup_log_file",
        "discover_published_files",
        "select_newest_period",
        "download_cgu_terceirizados_data",
        "save_raw_data_locally",
        "parse_data_into_dataframes",
        "save_data_as_csv_locally",
        "upload_csv_to_database",
        "upload_logs_to_database",
    ]


def test_only_the_scheduled_pipeline_is_registered_with_a_schedule():
    sys.path.insert(0, str(ROOT / "run"))
    import register

    registered = {f.name: f for f in register.flows_to_register()}
    assert {name: flow.schedule is not None for name, flow in registered.items()} == {
        "adm_cgu_terceirizados__pipeline": True,
        "adm_cgu_terceirizados__historic_capture": False,
        "adm_cgu_terceirizados__historic_materialize": False,
    }
    assert all(flow.schedule is None for flow in ALL_FLOWS)  # their flow.run() never waits
    for flow in registered.values():
        flow.serialize()


def test_import_and_registration_without_a_server():
    env = {
        **os.environ,
        "PREFECT__BACKEND": "server",
        "PREFECT__SERVER__HOST": "http://127.0.0.1",
        "PREFECT__SERVER__PORT": "9",
    }
    imported = subprocess.run(
        [sys.executable, "-c", "import pipelines.flows"], cwd=ROOT, env=env, timeout=60, capture_output=True, text=True
    )
    assert imported.returncode == 0, imported.stderr
    registered = subprocess.run(
        [sys.executable, "run/register.py"], cwd=ROOT, env=env, timeout=120, capture_output=True, text=True
    )
    assert registered.returncode == 1
    assert "Não foi possível registrar os flows no Prefect Server" in registered.stderr
