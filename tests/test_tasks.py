"""Prefect glue: retry back-off and retry configuration."""

from datetime import timedelta

import pendulum
from prefect.engine.state import Retrying, Success

from pipelines.flows import capture_flow
from pipelines.settings import load_settings
from pipelines.tasks import configure_retries, download_data, exponential_backoff


def test_backoff_doubles_the_delay_at_each_retry():
    task = download_data.copy()
    task.retry_delay = timedelta(seconds=10)
    for run_count, expected in ((1, 10), (2, 20), (3, 40)):
        state = exponential_backoff(task, None, Retrying(run_count=run_count, message="HTTP 500"))
        wait = (state.start_time - pendulum.now("utc")).total_seconds()
        assert expected - 2 < wait <= expected
    assert isinstance(exponential_backoff(task, None, Success()), Success)


def test_retry_settings_reach_the_flow_tasks():
    settings = load_settings({"DOWNLOAD_MAX_RETRIES": "5", "DOWNLOAD_RETRY_DELAY_SECONDS": "7"})
    configure_retries(capture_flow, settings)
    retrying = {t.name: (t.max_retries, t.retry_delay) for t in capture_flow.tasks if t.max_retries}
    assert retrying == {
        "discover_published_files": (5, timedelta(seconds=7)),
        "download_cgu_terceirizados_data": (5, timedelta(seconds=7)),
    }
    configure_retries(capture_flow, load_settings())  # back to the test settings
