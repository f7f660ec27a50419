"""Prefect 1 flows. Importing this module builds the flows and contacts no server."""

from __future__ import annotations

from prefect import Flow, Parameter

from pipelines import constants
from pipelines.tasks import (
    check_raw_data,
    dbt_build,
    discover_published_files,
    download_data,
    parse_data,
    record_materialized_rows,
    record_run,
    save_data_as_csv,
    save_raw_data_locally,
    select_newest_period,
    setup_log_file,
    upload_csv_to_database,
    upload_logs_to_database,
)

with Flow(constants.CAPTURE_FLOW, state_handlers=[record_run]) as capture_flow:
    portal_url = Parameter("url", default=None)
    run_id = setup_log_file(constants.CAPTURE_FLOW)
    published_files = discover_published_files(portal_url, upstream_tasks=[run_id])
    newest = select_newest_period(published_files)
    downloaded = download_data(newest)
    raw_file = save_raw_data_locally(downloaded)
    parsed = parse_data(downloaded, upstream_tasks=[raw_file])
    csv_file = save_data_as_csv(downloaded, parsed)
    loaded = upload_csv_to_database(csv_file, parsed, downloaded)
    logs_loaded = upload_logs_to_database(constants.CAPTURE_FLOW, upstream_tasks=[loaded])

capture_flow.set_reference_tasks([loaded, logs_loaded])


def _dbt_chain(models: tuple[str, ...], upstream):
    """One ``dbt build`` task per model, in order, each named after its model."""
    for model in models:
        upstream = dbt_build(model, upstream_tasks=[upstream],
                             task_args={"name": f"dbt_build_{constants.STAGING_SCHEMA}.{model}"})
    return upstream


with Flow(constants.MATERIALIZE_FLOW, state_handlers=[record_run]) as materialize_flow:
    run_id = setup_log_file(constants.MATERIALIZE_FLOW)
    newest_period = check_raw_data(upstream_tasks=[run_id])
    built = _dbt_chain(constants.LATEST_MODELS, newest_period)
    materialized = record_materialized_rows(constants.LATEST_MODELS[-1], upstream_tasks=[built])
    logs_loaded = upload_logs_to_database(constants.MATERIALIZE_FLOW, upstream_tasks=[materialized])

materialize_flow.set_reference_tasks([materialized, logs_loaded])
