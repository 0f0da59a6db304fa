"""A run worker killed after dbt built part of a stage and before the checks ran (issue 11,
item 3): the report must not say those models were validated, and resume must check them."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._serdes import serialize_value

from rescue_defs import cli, rescues
from rescue_defs.assets.dbt import load_manifest, model_asset_keys
from rescue_defs.rescues.liveness import TAG_ALIVE, silent_seconds
from tests.conftest import copy_of_build
from tests.helpers import (
    drive_rescue,
    evaluate_rescue_sensor,
    rescue_id_of,
    start_rescue,
)
from tests.test_soak import make_home

WORKER = """
import sys
from dagster import DagsterInstance
from dagster._serdes import deserialize_value
from rescue_defs.definitions import build_definitions
from rescue_defs.project import load_dbt_project
from tests.helpers import execute_request

request = deserialize_value(open(sys.argv[1]).read())
defs = build_definitions(load_dbt_project(sys.argv[2]))
with DagsterInstance.get() as instance:
    execute_request(defs, instance, request)
"""


def test_models_built_by_a_killed_worker_are_not_validated_and_resume_checks_them(
    shop_defs, shop_project, warehouse, tmp_path, monkeypatch, shop_builds
):
    # the home and warehouse as after the daily pipeline through 2026-01-10
    copy_of_build(shop_builds("2026-01-10"), warehouse, make_home(tmp_path, monkeypatch, None))
    keys = model_asset_keys(
        load_manifest(str(shop_project.manifest_path), str(shop_project.project_dir))
    )
    with dg.DagsterInstance.get() as instance:
        rescue_id = rescue_id_of(
            start_rescue(shop_defs, instance, select="+int_orders_enriched+", layered=False)
        )
        (request,) = evaluate_rescue_sensor(shop_defs, instance).run_requests
        planned = set(rescues.load(instance, rescue_id)["steps"][0]["models"])

    # the stage runs in its own process, as a run worker does; killed (SIGKILL, with its dbt)
    # once dbt has reported a few models built: the checks run only after dbt exits
    request_file = tmp_path / "request.json"
    request_file.write_text(serialize_value(request))
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(request_file), str(shop_project.project_dir)],
        cwd=Path(__file__).resolve().parent.parent,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    built: set = set()
    with dg.DagsterInstance.get() as instance:
        while time.monotonic() < deadline and worker.poll() is None:
            runs = instance.get_runs(filters=dg.RunsFilter(tags={rescues.TAG_ID: rescue_id}))
            built = rescues.materialized(instance, (r.run_id for r in runs))
            if len(built) >= 3:
                os.killpg(worker.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        worker.wait()
        assert 3 <= len(built) < len(planned), "the worker was not caught while dbt ran"
        (run,) = [
            r
            for r in instance.get_runs(filters=dg.RunsFilter(tags={rescues.TAG_ID: rescue_id}))
            if rescues.TAG_STEP in r.tags
        ]
        assert run.status == dg.DagsterRunStatus.STARTED  # a dead worker says nothing
        # what run monitoring does once the run outlives its max_runtime tag
        instance.report_run_failed(run, "run worker died (max_runtime exceeded)")

        # before the sensor looks again: what the event log says of the dead run's models
        record = rescues.load(instance, rescue_id)
        outcomes = rescues.model_outcomes(instance, rescues.step_runs(instance, rescue_id), keys)
        rebuilt = [m for m in planned if outcomes[m].rebuilt]
        assert rebuilt and all(outcomes[m].unchecked for m in rebuilt)
        assert not any(outcomes[m].validated for m in planned)
        lines = rescues.status_lines(instance, rescue_id, keys)
        assert f"{len(rebuilt)}/{len(planned)} rebuilt, 0/{len(planned)} validated" in lines[1]
        report = rescues.report_markdown(instance, record, keys)
        assert f"rebuilt, not validated: checks never ran ({len(rebuilt)})" in report
        assert "Nothing:" not in report

        # the sensor resumes it once by itself: everything again, the unchecked ones included
        assert not evaluate_rescue_sensor(shop_defs, instance).run_requests
        record = rescues.load(instance, rescue_id)
        assert record["status"] == rescues.ACTIVE and record["auto_resumes"] == 1
        assert "resumed automatically" in record["message"]
        assert set(record["steps"][0]["remaining"]) == planned
        record = drive_rescue(shop_defs, instance, rescue_id)
        assert record["status"] == rescues.SUCCEEDED, record["message"]
        outcomes = rescues.model_outcomes(instance, rescues.step_runs(instance, rescue_id), keys)
        assert all(outcomes[m].validated for m in planned)


@pytest.mark.built("2026-01-10")
def test_a_second_dead_run_stops_the_rescue_for_a_human_whose_resume_the_status_tells(
    shop_defs, shop_project, instance, capsys
):
    rescue_id = rescue_id_of(start_rescue(shop_defs, instance, select="stg_orders", reason="t"))

    def dies(defs, inst, request):  # the run starts, then its worker is gone
        from dagster._core.test_utils import create_run_for_test

        run = create_run_for_test(
            inst, job_name=request.job_name, tags=request.tags, status=dg.DagsterRunStatus.STARTED
        )
        inst.report_run_failed(run, "run worker died")

    record = drive_rescue(shop_defs, instance, rescue_id, max_ticks=6, on_request=dies)
    assert record["status"] == rescues.FAILED
    assert record["auto_resumes"] == 1
    assert "rescue resume" in record["message"]

    # a human resumes it: it succeeds, and `rescue status` tells the whole story, as the report
    keys = model_asset_keys(
        load_manifest(str(shop_project.manifest_path), str(shop_project.project_dir))
    )
    rescues.resume(instance, rescue_id, keys)
    record = drive_rescue(shop_defs, instance, rescue_id)
    assert record["status"] == rescues.SUCCEEDED, record["message"]
    assert cli.main(["status", rescue_id, "--project-dir", str(shop_project.project_dir)]) == 0
    printed = capsys.readouterr().out
    report = rescues.report_markdown(instance, rescues.load(instance, rescue_id), keys, False)
    assert report in printed
    history = report[report.index("## History") :]
    step_runs = [r for r in rescues.step_runs(instance, rescue_id) if rescues.TAG_STEP in r.tags]
    assert len(step_runs) == 3  # died, resumed automatically and died, resumed by hand
    for run in step_runs:
        assert run.run_id[:8] in report  # every attempt in the runs table
    order = [
        "resumed automatically",
        "stopped",
        "resumed: ",
        "succeeded: ",
    ]
    at = 0
    for text in order:  # in this order
        at = history.find(text, at)
        assert at != -1, (text, history)


def _vanished(instance, request, silent_for: float) -> dg.DagsterRun:
    """A run whose worker beat, then vanished with everything around it (a `kill -9` of the
    whole `dagster dev`): STARTED in the instance, nobody left to say otherwise."""
    from dagster._core.test_utils import create_run_for_test

    run = create_run_for_test(
        instance, job_name=request.job_name, tags=request.tags, status=dg.DagsterRunStatus.STARTED
    )
    instance.add_run_tags(run.run_id, {TAG_ALIVE: f"{time.time() - silent_for:.0f}"})
    return instance.get_run_by_id(run.run_id)


@pytest.mark.built("2026-01-10")
def test_a_run_left_started_by_a_vanished_worker_is_failed_once_silent_and_the_rescue_goes_on(
    shop_defs, shop_project, instance
):
    rescue_id = rescue_id_of(start_rescue(shop_defs, instance, select="stg_orders", reason="t"))
    (request,) = evaluate_rescue_sensor(shop_defs, instance).run_requests

    # a worker that beat a moment ago is alive: left alone, nothing launched beside it
    alive = _vanished(instance, request, silent_for=5)
    assert not evaluate_rescue_sensor(shop_defs, instance).run_requests
    assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED
    instance.report_run_failed(alive, "the test's first run")  # (it did die after all)
    assert not evaluate_rescue_sensor(shop_defs, instance).run_requests  # resumes it once
    record = rescues.load(instance, rescue_id)
    assert record["status"] == rescues.ACTIVE and record["auto_resumes"] == 1

    # the resumed run's worker goes silent for good: failed, saying why; the rescue stops for
    # a human (its automatic resume is spent) with the command that resumes it
    (request,) = evaluate_rescue_sensor(shop_defs, instance).run_requests
    silent = _vanished(instance, request, silent_for=silent_seconds() + 30)
    evaluate_rescue_sensor(shop_defs, instance)
    failed = instance.get_run_by_id(silent.run_id)
    assert failed.status == dg.DagsterRunStatus.FAILURE
    said = instance.all_logs(silent.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)[-1].message
    assert "run worker silent since" in said and "marked failed" in said
    record = rescues.load(instance, rescue_id)
    assert record["status"] == rescues.FAILED and f"rescue resume {rescue_id}" in record["message"]

    # and `rescue resume` is no longer refused: the rescue ends rebuilt and validated
    keys = model_asset_keys(
        load_manifest(str(shop_project.manifest_path), str(shop_project.project_dir))
    )
    rescues.resume(instance, rescue_id, keys)
    record = drive_rescue(shop_defs, instance, rescue_id)
    assert record["status"] == rescues.SUCCEEDED, record["message"]
    # a real step run stamps its signs of life in its tags
    ran = [
        r
        for r in rescues.step_runs(instance, rescue_id)
        if r.is_success and rescues.TAG_STEP in r.tags
    ]
    assert ran and all(TAG_ALIVE in r.tags for r in ran)


@pytest.mark.built("2026-01-10")
def test_cancel_of_a_rescue_whose_worker_is_gone_is_one_line_and_leaves_nothing_in_flight(
    shop_defs, shop_project, instance, capsys
):
    rescue_id = rescue_id_of(start_rescue(shop_defs, instance, select="stg_orders", reason="t"))
    (request,) = evaluate_rescue_sensor(shop_defs, instance).run_requests
    run = _vanished(instance, request, silent_for=silent_seconds() + 30)
    project = ["--project-dir", str(shop_project.project_dir)]
    assert cli.main(["cancel", rescue_id, *project]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    record = rescues.load(instance, rescue_id)
    assert record["status"] == rescues.CANCELED
    # nothing in flight: the rescue resumes
    keys = model_asset_keys(
        load_manifest(str(shop_project.manifest_path), str(shop_project.project_dir))
    )
    rescues.resume(instance, rescue_id, keys)
    assert drive_rescue(shop_defs, instance, rescue_id)["status"] == rescues.SUCCEEDED
