"""bench/benchmark.py keeps, in the file it replaces, what the README compares with: the
headline of the previous measurements and the app's 10x measurement (bench/scale.py)."""

import json

from bench.benchmark import EARLIER_KEPT, carried_over, median_of_runs


def measurement(at: str, scheduled: float, **extra) -> dict:
    return {
        "measured_at": at,
        "machine": {"cpu_calibration_seconds": 0.3},
        "historic_capture": {"wall_seconds": 15.0},
        "historic_materialize": {"wall_seconds": 70.0},
        "strict_floor": {"wall_seconds": 10.0},
        "pipeline_over_strict_floor": 8.5,
        "rerun_nothing_new": {"wall_seconds": 2.2},
        "scheduled_run_new_period": {"wall_seconds": scheduled, "flow_seconds": scheduled - 0.5},
        **extra,
    }


def test_the_replaced_measurement_becomes_the_previous_one(tmp_path):
    output = tmp_path / "benchmark.json"
    scale = {"scale": 10, "slowest_seconds": 0.024}
    earlier = [{"measured_at": f"2026-11-{day:02d}"} for day in range(20, 10, -1)]
    output.write_text(
        json.dumps(
            measurement(
                "2026-11-29T21:00",
                5.7,
                previous_measurement={"measured_at": "2026-11-29T20:00"},
                earlier_measurements=earlier,
                results_app_at_scale=scale,
            )
        )
    )
    kept = carried_over(output)
    assert kept["previous_measurement"] == {
        "measured_at": "2026-11-29T21:00",
        "cpu_calibration_seconds": 0.3,
        "historic_capture_wall_seconds": 15.0,
        "historic_materialize_wall_seconds": 70.0,
        "strict_floor_wall_seconds": 10.0,
        "pipeline_over_strict_floor": 8.5,
        "rerun_nothing_new_wall_seconds": 2.2,
        "scheduled_run_new_period_wall_seconds": 5.7,
        "scheduled_run_new_period_flow_seconds": 5.2,
    }
    assert [e["measured_at"] for e in kept["earlier_measurements"]] == [
        "2026-11-29T20:00",
        *[e["measured_at"] for e in earlier[: EARLIER_KEPT - 1]],
    ]
    assert kept["results_app_at_scale"] == scale


def test_nothing_is_carried_from_a_missing_or_unreadable_file(tmp_path):
    assert carried_over(tmp_path / "nao_existe.json") == {}
    broken = tmp_path / "quebrado.json"
    broken.write_text("{meio arquivo")
    assert carried_over(broken) == {}
    only_scale = tmp_path / "so_escala.json"  # bench/scale.py ran before any full measurement
    only_scale.write_text(json.dumps({"results_app_at_scale": {"scale": 10}}))
    assert carried_over(only_scale) == {"results_app_at_scale": {"scale": 10}}


def test_the_scheduled_run_is_the_median_of_its_runs_each_kept():
    runs = [
        {"wall_seconds": 8.7, "flow_seconds": 7.9, "peak_rss_mib": 340.0},
        {"wall_seconds": 7.2, "flow_seconds": 6.5, "peak_rss_mib": 351.2},
        {"wall_seconds": 8.4, "flow_seconds": 7.6, "peak_rss_mib": 339.0},
        {"wall_seconds": 9.1, "flow_seconds": 8.0, "peak_rss_mib": 345.5},
    ]
    summary = median_of_runs(runs)
    assert summary == {
        "wall_seconds": 8.55,
        "flow_seconds": 7.75,
        "peak_rss_mib": 351.2,
        "wall_seconds_range": [7.2, 9.1],
        "runs": runs,
    }
    one = median_of_runs(runs[:1])
    assert (one["wall_seconds"], one["flow_seconds"], one["wall_seconds_range"]) == (8.7, 7.9, [8.7, 8.7])
