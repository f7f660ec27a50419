"""Prefect 1 flows. Importing this module builds the flows and contacts no server.

The capture and materialization steps are wired by one function each, used by their own
flows and by the scheduled pipeline, which captures the newest period and then
materializes it. The scheduled pipeline is the only flow with a schedule."""

from __future__ import annotations

from prefect import Flow, Parameter, Task, unmapped
from prefect.tasks.core.resource_manager import ResourceSetupTask

from pipelines import constants
from pipelines.schedules import SCHEDULE
from pipelines.tasks import (
    RawDataHold,
    capture_period,
    check_raw_data,
    dbt_build,
    dbt_build_task_name,
    decide_scheduled_run,
    discover_published_files,
    download_data,
    final_state_in_portuguese,
    finish_scheduled_run,
    generate_dbt_docs,
    parse_data,
    prepare_dbt,
    record_materialized_rows,
    record_run,
    save_data_as_csv,
    save_raw_data_locally,
    scheduled_run_final_state,
    select_newest_period,
    setup_log_file,
    skip_if_already_materialized,
    step_key,
    summarize_historic_capture,
    upload_csv_to_database,
    upload_logs_to_database,
)


def newest_period_steps(portal_url, after: Task) -> list[Task]:
    """discover the published files (after ``after``) -> select the newest period."""
    published_files = discover_published_files(portal_url, upstream_tasks=[after])
    return [published_files, select_newest_period(published_files)]


def capture_steps(newest: Task, prepare_dbt_family: str | None = None) -> list[Task]:
    """download -> save raw -> parse -> save CSV -> load, for the period ``newest`` returns.
    ``prepare_dbt_family``: right before the parse, dbt is prepared for that family in the
    background (``prepare_dbt``) and the parse runs in a child process, on the other core. Not
    earlier: a busy background thread slows the download's many small reads (Python's GIL)."""
    downloaded = download_data(newest)
    steps = [downloaded, save_raw_data_locally(downloaded)]
    if prepare_dbt_family is not None:
        steps.append(prepare_dbt(prepare_dbt_family, upstream_tasks=[steps[-1]]))
    parsed = parse_data(downloaded, in_child_process=prepare_dbt_family is not None, upstream_tasks=[steps[-1]])
    csv_file = save_data_as_csv(downloaded, parsed)
    loaded = upload_csv_to_database(csv_file, parsed, downloaded)
    return [*steps, parsed, csv_file, loaded]


def materialize_steps(
    models: tuple[str, ...], family: str, after: Task, full_refresh: Task | bool = False, marts: str | None = None
) -> list[Task]:
    """check raw data (after ``after``) -> one ``dbt build`` task per model, in order -> rows,
    all while the raw data is held (``RawDataHold``: no load changes it half-way).
    ``family``: the models' dbt build family (constants.DBT_LATEST or DBT_HISTORIC).
    ``full_refresh``: dbt's --full-refresh for every model (a flow parameter, or a constant)."""
    # The latest models are built by one dbt invocation (one Prefect task still reports each
    # model); the historic ones by one each, which their up-to-date check skips one by one.
    chain = models if family == constants.DBT_LATEST else None
    with RawDataHold(models[-1], upstream_tasks=[after]):
        built = check_raw_data(upstream_tasks=[after])
        steps = [built]
        for model in models:
            built = dbt_build(
                model,
                family,
                full_refresh,
                chain,
                upstream_tasks=[built],
                task_args={"name": dbt_build_task_name(model)},
            )
            steps.append(built)
        steps.append(record_materialized_rows(models[-1], upstream_tasks=[built]))
        if marts:  # then the analysis tables (schema marts) built from the last model, in one dbt build
            steps.append(
                dbt_build(
                    marts,
                    family,
                    full_refresh,
                    upstream_tasks=[steps[-1]],
                    task_args={"name": f"dbt_build_{constants.MARTS_SCHEMA}"},
                )
            )
    # last: the dbt documentation of what was just built (the results app serves it under
    # /docs/); regenerated only when the project or the tables changed, and it never fails the
    # run (a warning when it cannot be made). Outside the hold's block, but Prefect may release
    # the hold after it (the cleanup is not upstream of it: a dependency would turn the docs of
    # a run that failed or had nothing to do from TriggerFailed/Skipped into another state); a
    # load then waits the docs' seconds too, nothing worse.
    steps.append(generate_dbt_docs(upstream_tasks=[steps[-1]]))
    return steps


with Flow(
    constants.CAPTURE_FLOW, state_handlers=[record_run], terminal_state_handler=final_state_in_portuguese
) as capture_flow:
    portal_url = Parameter("url", default=None)
    run_id = setup_log_file(constants.CAPTURE_FLOW)
    found = newest_period_steps(portal_url, run_id)
    captured = capture_steps(found[-1])
    logs_loaded = upload_logs_to_database(constants.CAPTURE_FLOW, upstream_tasks=[captured[-1]])

# Every step (and every set-up the steps wait for) is a reference task: the run fails as when
# only the last one was (a failed step leaves the last one TriggerFailed), and a run whose task
# states are not returned (started by a Prefect agent) still finds the failed step's cause
# among the reference tasks' states. Not the hold's clean-up: its failure never failed a run.
capture_flow.set_reference_tasks([run_id, *found, *captured, logs_loaded])


def build_materialize_flow(
    name: str, models: tuple[str, ...], family: str, full_refresh_option: bool = False, marts: str | None = None
) -> Flow:
    """set-up -> materialize steps -> logs. ``full_refresh_option``: the flow has a
    ``full_refresh`` parameter (the historic models, which are built incrementally)."""
    with Flow(name, state_handlers=[record_run], terminal_state_handler=final_state_in_portuguese) as flow:
        run_id = setup_log_file(name)
        full_refresh = Parameter("full_refresh", default=False) if full_refresh_option else False
        materialized = materialize_steps(models, family, run_id, full_refresh, marts)
        logs_loaded = upload_logs_to_database(name, upstream_tasks=[materialized[-1]])
    holds = [task for task in flow.tasks if isinstance(task, ResourceSetupTask)]  # the raw data's hold
    flow.set_reference_tasks([run_id, *holds, *materialized, logs_loaded])  # see capture_flow's
    return flow


materialize_flow = build_materialize_flow(constants.MATERIALIZE_FLOW, constants.LATEST_MODELS, constants.DBT_LATEST)
historic_materialize_flow = build_materialize_flow(
    constants.HISTORIC_MATERIALIZE_FLOW,
    constants.HISTORIC_MODELS,
    constants.DBT_HISTORIC,
    full_refresh_option=True,
    marts=constants.HISTORIC_MARTS_SELECTOR,
)


with Flow(
    constants.HISTORIC_CAPTURE_FLOW, state_handlers=[record_run], terminal_state_handler=final_state_in_portuguese
) as historic_capture_flow:
    portal_url = Parameter("url", default=None)
    force = Parameter("force", default=False)
    run_id = setup_log_file(constants.HISTORIC_CAPTURE_FLOW)
    published_files = discover_published_files(portal_url, upstream_tasks=[run_id])
    periods = capture_period.map(published_files, force=unmapped(force))
    summary = summarize_historic_capture(published_files, periods)
    logs_loaded = upload_logs_to_database(constants.HISTORIC_CAPTURE_FLOW, upstream_tasks=[summary])

historic_capture_flow.set_reference_tasks([summary, logs_loaded])


# The scheduled pipeline: fired every day at 00:00 (Sao Paulo) by Prefect Server, or by the
# local scheduler (pipelines.scheduled) on the same schedule. Its decision SKIPs the run when
# nothing is due; otherwise it captures the newest period (discovered once) and, only after
# a successful load, materializes it. The attempt is recorded either way, and the logs loaded.
with Flow(
    constants.PIPELINE_FLOW,
    schedule=SCHEDULE,
    state_handlers=[record_run],
    terminal_state_handler=scheduled_run_final_state,
) as pipeline_flow:
    portal_url = Parameter("url", default=None)
    manual = Parameter("manual", default=False)
    run_id = setup_log_file(constants.PIPELINE_FLOW)
    attempt = decide_scheduled_run(manual, upstream_tasks=[run_id])
    found = newest_period_steps(portal_url, attempt)
    pending = skip_if_already_materialized(found[-1])
    # dbt is imported and the project read in the background while the capture parses the
    # file (in a child process, on the other core) and loads it: the first build finds them done
    captured = capture_steps(pending, prepare_dbt_family=constants.DBT_LATEST)
    materialized = materialize_steps(constants.LATEST_MODELS, constants.DBT_LATEST, captured[-1])
    # every step is an input of the attempt's record, which reports the one that failed
    finished = finish_scheduled_run(
        attempt, **{step_key(step.name): step for step in [*found, pending, *captured, *materialized]}
    )
    logs_loaded = upload_logs_to_database(
        constants.PIPELINE_FLOW, upstream_tasks=[finished], task_args={"skip_on_upstream_skip": False}
    )

pipeline_flow.set_reference_tasks([finished, logs_loaded])
