"""Prefect 1 flows. Importing this module builds the flows and contacts no server."""

from __future__ import annotations

from prefect import Flow, Parameter, unmapped

from pipelines import constants
from pipelines.tasks import (
    capture_period,
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
    summarize_historic_capture,
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


def build_materialize_flow(name: str, models: tuple[str, ...]) -> Flow:
    """set-up -> check raw data -> one ``dbt build`` task per model, in order -> rows -> logs."""
    with Flow(name, state_handlers=[record_run]) as flow:
        run_id = setup_log_file(name)
        built = check_raw_data(upstream_tasks=[run_id])
        for model in models:
            built = dbt_build(model, upstream_tasks=[built],
                              task_args={"name": f"dbt_build_{constants.STAGING_SCHEMA}.{model}"})
        materialized = record_materialized_rows(models[-1], upstream_tasks=[built])
        logs_loaded = upload_logs_to_database(name, upstream_tasks=[materialized])
    flow.set_reference_tasks([materialized, logs_loaded])
    return flow


materialize_flow = build_materialize_flow(constants.MATERIALIZE_FLOW, constants.LATEST_MODELS)
historic_materialize_flow = build_materialize_flow(constants.HISTORIC_MATERIALIZE_FLOW, constants.HISTORIC_MODELS)


with Flow(constants.HISTORIC_CAPTURE_FLOW, state_handlers=[record_run]) as historic_capture_flow:
    portal_url = Parameter("url", default=None)
    force = Parameter("force", default=False)
    run_id = setup_log_file(constants.HISTORIC_CAPTURE_FLOW)
    published_files = discover_published_files(portal_url, upstream_tasks=[run_id])
    periods = capture_period.map(published_files, force=unmapped(force))
    summary = summarize_historic_capture(published_files, periods)
    logs_loaded = upload_logs_to_database(constants.HISTORIC_CAPTURE_FLOW, upstream_tasks=[summary])

historic_capture_flow.set_reference_tasks([summary, logs_loaded])
