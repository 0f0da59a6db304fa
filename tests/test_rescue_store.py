"""Rescue records on one long-lived Dagster home: every rescue saved, found and advanced, with
several writers, and one broken rescue never stopping the others."""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from rescue_defs import rescues
from rescue_defs.assets.dbt import model_asset_keys
from rescue_defs.planning.plan import PlanRequest
from tests.helpers import evaluate_rescue_sensor, evaluate_sensor, execute_request

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real DAGSTER_HOME directory with the demo's dagster.yaml (SQLite storage)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def open_instance() -> dg.DagsterInstance:
    """What each CLI call, job run and daemon tick does: its own instance on the home."""
    return dg.DagsterInstance.get()


def test_every_rescue_on_a_sqlite_home_is_saved_and_found(dagster_home, shop_planner):
    keys = model_asset_keys(shop_planner.manifest)
    ids = []
    for select in ["stg_orders", "fct_orders", "+dim_customers", "stg_payments+"] * 3:
        with open_instance() as instance:
            plan = shop_planner.plan(PlanRequest(select, reason="soak"))
            ids.append(rescues.register(instance, plan, keys, dry_run=True)["id"])
    with open_instance() as instance:
        assert rescues.rescue_ids(instance) == ids  # in the order they were registered
        for rescue_id in ids:
            assert rescues.load(instance, rescue_id)["status"] == rescues.DRY_RUN
        assert rescues.active_ids(instance) == []
        # each has its partition of rescue_report, with the plan
        report = instance.get_latest_materialization_event(rescues.REPORT_ASSET)
        assert report.asset_materialization.partition == ids[-1]
        assert "Rescue plan" in report.asset_materialization.metadata["report"].value
    assert os.path.exists(dagster_home / "history")  # it really is the SQLite home


def test_a_record_changed_meanwhile_is_not_overwritten(dagster_home, shop_planner):
    keys = model_asset_keys(shop_planner.manifest)
    with open_instance() as instance:
        plan = shop_planner.plan(PlanRequest("stg_orders"))
        rescue_id = rescues.register(instance, plan, keys)["id"]
        sensor_copy = rescues.load(instance, rescue_id)
        rescues.cancel(instance, rescue_id, keys)  # the CLI cancels while the sensor works
        sensor_copy["message"] = "launched run(s) 0"
        with pytest.raises(rescues.ConcurrentUpdate):
            rescues.save(instance, sensor_copy)
        assert rescues.load(instance, rescue_id)["status"] == rescues.CANCELED
        assert rescues.active_ids(instance) == []


def test_a_rescue_that_cannot_advance_fails_with_the_reason_and_others_go_on(
    dagster_home, shop_planner, shop_defs
):
    keys = model_asset_keys(shop_planner.manifest)
    with open_instance() as instance:
        broken = rescues.register(instance, shop_planner.plan(PlanRequest("stg_orders")), keys)
        healthy = rescues.register(instance, shop_planner.plan(PlanRequest("stg_payments")), keys)
        # the project changed under the rescue: its model is gone
        record = rescues.load(instance, broken["id"])
        record["steps"][0]["remaining"] = ["model.shop.renamed_away"]
        record["proof"] = {**(record.get("proof") or {}), "status": "running", "attempt": 0}
        rescues.save(instance, record)

        result = evaluate_rescue_sensor(shop_defs, instance)
        assert [r.tags[rescues.TAG_ID] for r in result.run_requests] == [healthy["id"]]
        failed = rescues.load(instance, broken["id"])
        assert failed["status"] == rescues.FAILED
        assert "cannot advance" in failed["message"] and "renamed_away" in failed["message"]
        # its proof did not run: not shown as running on a failed rescue, proven on resume
        assert failed["proof"]["status"] == "pending" and failed["proof"]["attempt"] == 1
        assert rescues.active_ids(instance) == [healthy["id"]]


def at_once(work, args: list[tuple]) -> list:
    """`work(*each, ready)` in a process of its own for each of `args` (new interpreters, as
    the CLI and the daemon are), all starting together when `ready` is set; their results. Each
    ends by itself: a pool's terminate() would send SIGTERM, which a suite started in the
    background ignores and hands down (its workers then hang in join)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    ready, results = context.Event(), context.Queue()
    processes = [
        context.Process(target=_report, args=(results, i, work, (*each, ready)))
        for i, each in enumerate(args)
    ]
    for process in processes:
        process.start()
    ready.set()
    found = dict(results.get(timeout=300) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    return [found[i] for i in range(len(args))]


def _report(results, index: int, work, args: tuple) -> None:
    results.put((index, work(*args)))


def _add_each(home: str, keys: list[str], ready) -> int:
    """In a process of its own, as the CLI and rescue_sensor are: each key's partition added."""
    os.environ["DAGSTER_HOME"] = home
    errors = 0
    with open_instance() as instance:
        ready.wait()
        for key in keys:
            try:
                rescues.store.add_partition(instance, "race", key)
            except Exception:
                errors += 1
    return errors


def test_two_processes_adding_the_same_partitions_at_once_both_succeed(dagster_home):
    # the CLI following a rescue and rescue_sensor both end it when its last run ends: each
    # adds its id to the same partitions; Dagster adds a partition by looking, then inserting,
    # so the slower one failed on the storage's unique constraint (a succeeded rescue of 200
    # models was then marked failed by the sensor)
    keys = [f"rescue-{i}" for i in range(300)]
    with open_instance():  # the home's storage exists, as on any home in use
        pass
    assert at_once(_add_each, [(str(dagster_home), keys)] * 2) == [0, 0]
    with open_instance() as instance:
        assert instance.get_dynamic_partitions("race") == keys


def _save_each(home: str, rescue_id: str, who: str, times: int, ready) -> int:
    """In a process of its own: load, change, save, `times` over; how many saves were taken."""
    os.environ["DAGSTER_HOME"] = home
    taken = 0
    with open_instance() as instance:
        ready.wait()
        for i in range(times):
            record = rescues.load(instance, rescue_id)
            record.setdefault("writes", []).append(f"{who}{i}")
            try:
                rescues.save(instance, record)
                taken += 1
            except rescues.ConcurrentUpdate:
                pass  # what a caller does: load it again (next round)
    return taken


@pytest.mark.parametrize("storage", ["sqlite", "postgres"])
def test_two_processes_saving_one_rescue_at_once_lose_no_save_they_were_told_was_taken(
    dagster_home, storage
):
    # the CLI (cancel, resume) and rescue_sensor save the same record: each save checks the
    # version it loaded, but the check and the write were two statements, so a save told it
    # was taken could be overwritten by the other process's (~40% of 2 x 150 saves were lost)

    from tests.helpers import (
        create_postgres_database,
        drop_postgres_database,
        postgres_storage_yaml,
    )

    database = create_postgres_database("rescue_saves") if storage == "postgres" else None
    if database:
        with (dagster_home / "dagster.yaml").open("a") as f:
            f.write(postgres_storage_yaml(database))
    try:
        _save_from_two_processes(dagster_home)
    finally:
        if database:
            drop_postgres_database(database)


def _save_from_two_processes(dagster_home: Path) -> None:
    with open_instance() as instance:
        rescues.save(instance, {"id": "shared", "status": rescues.DRY_RUN})
    taken = sum(at_once(_save_each, [(str(dagster_home), "shared", who, 150) for who in "ab"]))
    with open_instance() as instance:
        record = rescues.load(instance, "shared")
    assert len(record["writes"]) == taken
    assert record["version"] == taken + 1


def _advance_while_active(home: str, ids: list[str], pause: float, ready) -> int:
    """In a process of its own, as rescue_sensor is: save the record of the first rescue of
    `ids` still active and not resumed over and over, `pause` seconds apart (its message, as a
    tick does), until none is left; how many saves were taken."""
    import time

    os.environ["DAGSTER_HOME"] = home
    taken, deadline, left = 0, time.monotonic() + 60, list(ids)
    with open_instance() as instance:
        ready.wait()
        while left and time.monotonic() < deadline:
            record = rescues.load(instance, left[0])
            if record["status"] != rescues.ACTIVE or record["message"].startswith("resumed"):
                left.pop(0)
                continue
            record["message"] = f"tick {taken}"
            try:
                rescues.save(instance, record)
                taken += 1
            except rescues.ConcurrentUpdate:
                pass
            time.sleep(pause)
    return taken


def _act_on_each(home: str, action: str, ids: list[str], keys, ready) -> list[str]:
    """In a process of its own, as `rescue cancel` or `rescue resume` is: `action` on each
    rescue, one after the other; the errors."""
    import time

    os.environ["DAGSTER_HOME"] = home
    errors = []
    with open_instance() as instance:
        ready.wait()
        time.sleep(1)  # the sensor is saving by now
        for rescue_id in ids:
            try:
                getattr(rescues, action)(instance, rescue_id, keys)
            except rescues.RescueError as e:
                errors.append(str(e))
    return errors


def _play(role: str, *args):
    return _advance_while_active(*args) if role == "sensor" else _act_on_each(*args)


def _registered(instance, planner, keys) -> list[str]:
    return [
        rescues.register(instance, planner.plan(PlanRequest(s)), keys)["id"]
        for s in ["stg_orders", "stg_payments", "stg_customers", "fct_orders"] * 3
    ]


def test_a_cancel_while_the_sensor_saves_the_rescue_cancels_it(any_home, shop_planner):
    # `rescue cancel` of a rescue in flight answered "changed meanwhile (version 3, not 2):
    # load it again" when rescue_sensor saved the record between the cancel's load and save:
    # the user's cancel must win over a tick's progress note, not ask them to type it again
    keys = model_asset_keys(shop_planner.manifest)
    with open_instance() as instance:
        ids = _registered(instance, shop_planner, keys)
    home = str(any_home)
    # as fast as it can: a cancel loads and saves within milliseconds
    saves, errors = at_once(_play, [("sensor", home, ids, 0), ("act", home, "cancel", ids, keys)])
    assert errors == []
    assert saves > 0  # the sensor really was saving
    with open_instance() as instance:
        assert rescues.active_ids(instance) == []
        for rescue_id in ids:
            # what `rescue status` and the report say: canceled, why, and when it ended
            record = rescues.load(instance, rescue_id)
            assert record["status"] == rescues.CANCELED
            assert record["message"] == "canceled (cli); no run was in flight"
            assert record["ended_at"]


def test_a_resume_while_the_sensor_saves_the_rescue_resumes_it(any_home, shop_planner):
    # the same for `rescue resume` of a rescue the sensor has in hand: done on the record as
    # the tick left it, or refused for what that record says, never "load it again"
    keys = model_asset_keys(shop_planner.manifest)
    with open_instance() as instance:
        ids = _registered(instance, shop_planner, keys)
    home = str(any_home)
    # a resume reads the rescue's runs between its load and its save: a tick every 50 ms
    # (rescue_sensor saves a rescue once a tick, 1 s apart at the least)
    sensor = ("sensor", home, ids, 0.05)
    saves, errors = at_once(_play, [sensor, ("act", home, "resume", ids, keys)])
    assert errors == []
    assert saves > 0
    with open_instance() as instance:
        for rescue_id in ids:
            record = rescues.load(instance, rescue_id)
            assert record["status"] == rescues.ACTIVE
            assert record["message"].startswith("resumed: "), record["message"]


def test_an_error_after_a_rescue_ended_does_not_change_how_it_ended(dagster_home, shop_planner):
    from rescue_defs.sensors.rescue import _fail

    keys = model_asset_keys(shop_planner.manifest)
    with open_instance() as instance:
        rescue_id = rescues.register(instance, shop_planner.plan(PlanRequest("stg_orders")), keys)[
            "id"
        ]
        record = rescues.load(instance, rescue_id)
        rescues.stop(instance, record, keys, rescues.SUCCEEDED, "every step succeeded")
        # the sensor had the rescue in hand when it ended, then its own step raised
        said = _fail(instance, rescue_id, keys, RuntimeError("the storage refused a write"))
        ended = rescues.load(instance, rescue_id)
        assert ended["status"] == rescues.SUCCEEDED
        assert ended["message"] == "every step succeeded"
        assert "already succeeded" in said and "the storage refused a write" in said


def test_a_rescue_through_an_ephemeral_model_of_a_project_we_did_not_write_succeeds(
    jaffle_project_dir, instance, warehouse, monkeypatch
):
    from rescue_defs.definitions import build_definitions
    from rescue_defs.project import load_dbt_project
    from tests.helpers import drive_rescue, materialize_all, query, rescue_id_of, start_rescue

    monkeypatch.setenv("RESCUE_TODAY", "2018-01-05")  # the seeds' last day
    defs = build_definitions(load_dbt_project(str(jaffle_project_dir)))
    assert materialize_all(defs, instance).success  # seeds and models, as on day one

    started = start_rescue(defs, instance, select="stg_payments+")  # through order_payments
    assert started.success, started.all_events
    record = drive_rescue(defs, instance, rescue_id_of(started))
    assert record["status"] == rescues.SUCCEEDED, record["message"]
    assert record["inlined"] == ["model.jaffle_shop.order_payments"]
    planned = {m for step in record["steps"] for m in step["models"]}
    assert planned == {
        "model.jaffle_shop.stg_payments",
        "model.jaffle_shop.orders",
        "model.jaffle_shop.customers",
    }
    assert query(warehouse, "select count(*) from main.orders where amount > 0") == [(5,)]
    # and no checklist item calls the ephemeral model a stale table
    assert not [i for i in record["plan"]["checklist"] if "order_payments" in i["reason"]]


def test_cli_links_point_at_the_ui_the_deployment_recorded_on_the_instance(
    dagster_home, shop_project, capsys, monkeypatch
):
    from rescue_defs import cli
    from rescue_defs.definitions import build_definitions

    # rescue_sensor, in a deployment whose RESCUE_UI_URL is set (./dev demo sets it), records
    # the address on the instance; the CLI, on another machine without the variable, reads it
    monkeypatch.setenv("RESCUE_UI_URL", "http://127.0.0.1:4123")
    with dg.DagsterInstance.get() as instance:
        evaluate_rescue_sensor(build_definitions(shop_project), instance)
    monkeypatch.delenv("RESCUE_UI_URL")
    args = ["launch", "--project-dir", str(shop_project.project_dir), "--select", "stg_orders"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "runs: http://127.0.0.1:4123/runs?q%5B0%5D=tag%3Arescue%2Fid%3D" in out
    assert "report: http://127.0.0.1:4123/assets/rescue_report?view=partitions&partition=" in out
    assert cli.main([*args, "--ui", "http://ui.internal:80/"]) == 0
    assert "runs: http://ui.internal:80/runs?" in capsys.readouterr().out


def test_resuming_a_blocked_dry_run_needs_force_and_records_it(dagster_home, shop_planner):
    from datetime import UTC, datetime

    from rescue_defs.planning.checklist import ActiveRun, Environment

    keys = model_asset_keys(shop_planner.manifest)
    fct_orders = shop_planner.manifest.by_name["fct_orders"][0]
    busy = Environment(
        now=datetime(2026, 3, 4, 3, 0, tzinfo=UTC),
        known=True,
        active_runs=(ActiveRun("a1b2c3d4e5", "STARTED", frozenset({fct_orders}), "daily"),),
    )
    plan = shop_planner.plan(PlanRequest("fct_orders"), env=busy)
    assert plan.blocks
    with open_instance() as instance:
        dry = rescues.register(instance, plan, keys, dry_run=True)
        with pytest.raises(rescues.RescueError, match="dry run whose plan was blocked"):
            rescues.resume(instance, dry["id"], keys)
        assert rescues.load(instance, dry["id"])["status"] == rescues.DRY_RUN
        resumed = rescues.resume(instance, dry["id"], keys, force=True)
        assert resumed["status"] == rescues.ACTIVE and resumed["forced"] is True


def cli_decides(instance, rescue_id: str, planner) -> rescues.Tick:
    """What `rescue launch` decides before it submits through the webserver."""
    from rescue_defs.rescues import kickoff

    record = rescues.load(instance, rescue_id)
    keys = model_asset_keys(planner.manifest)
    return rescues.advance(instance, record, keys, planner.manifest, launcher=kickoff.BY_CLI)


def test_a_run_the_cli_is_submitting_is_neither_launched_again_nor_overlapped_by_the_sensor(
    dagster_home, shop_planner, shop_defs
):
    from rescue_defs.rescues import kickoff

    keys = model_asset_keys(shop_planner.manifest)
    with open_instance() as instance:
        first = rescues.register(instance, shop_planner.plan(PlanRequest("stg_orders+")), keys)
        # `rescue launch` decided to start it and is submitting the run through the webserver
        assert len(cli_decides(instance, first["id"], shop_planner).requests) == 1
        # meanwhile another rescue of some of the same models becomes active
        second = rescues.register(instance, shop_planner.plan(PlanRequest("fct_orders")), keys)

        result = evaluate_rescue_sensor(shop_defs, instance)
        assert not result.run_requests  # not the CLI's run twice, nor one over its models
        assert "the rescue CLI is starting its run" in result.skip_message
        assert "a run requested in this tick writes fct_orders" in result.skip_message

        # the submission failed: the sensor launches the first rescue's run at once
        kickoff.release(instance, first["id"])
        result = evaluate_rescue_sensor(shop_defs, instance)
        assert [r.tags[rescues.TAG_ID] for r in result.run_requests] == [first["id"]]
        assert rescues.load(instance, second["id"])["status"] == rescues.ACTIVE


def test_a_tick_between_registering_and_the_cli_starting_the_run_launches_nothing(
    dagster_home, shop_planner, shop_defs
):
    from rescue_defs.rescues import kickoff

    keys = model_asset_keys(shop_planner.manifest)
    with open_instance() as instance:
        plan = shop_planner.plan(PlanRequest("stg_orders+"))
        rescue = rescues.register(instance, plan, keys, reserve=kickoff.BY_CLI)
        # the daemon's tick comes right after `rescue launch` registered the rescue
        result = evaluate_rescue_sensor(shop_defs, instance)
        assert not result.run_requests
        # the CLI decides and submits (here: its decision only)
        assert len(cli_decides(instance, rescue["id"], shop_planner).requests) == 1
        assert not evaluate_rescue_sensor(shop_defs, instance).run_requests
        # a CLI that gives up (no webserver, say) hands the rescue to the next tick
        kickoff.release(instance, rescue["id"])
        result = evaluate_rescue_sensor(shop_defs, instance)
        assert [r.tags[rescues.TAG_ID] for r in result.run_requests] == [rescue["id"]]


def test_a_launch_marker_left_by_a_cli_that_died_expires_and_the_sensor_launches(
    dagster_home, shop_planner, shop_defs
):

    keys = model_asset_keys(shop_planner.manifest)
    with open_instance() as instance:
        rescue = rescues.register(instance, shop_planner.plan(PlanRequest("stg_orders")), keys)
        assert cli_decides(instance, rescue["id"], shop_planner).requests
        assert not evaluate_rescue_sensor(shop_defs, instance).run_requests
        record = rescues.load(instance, rescue["id"])
        record["launching"]["until"] -= 3600  # the CLI died an hour ago, nothing submitted
        rescues.save(instance, record)
        result = evaluate_rescue_sensor(shop_defs, instance)
        assert [r.tags[rescues.TAG_ID] for r in result.run_requests] == [rescue["id"]]


def test_without_a_webserver_the_cli_leaves_the_launch_to_the_sensor(
    dagster_home, shop_project, shop_defs, capsys
):
    from rescue_defs import cli

    args = ["launch", "--project-dir", str(shop_project.project_dir), "--select", "stg_orders"]
    # nothing listens there
    assert cli.main([*args, "--ui", "http://127.0.0.1:9"]) == 0
    out = capsys.readouterr().out
    assert "no Dagster webserver answered at http://127.0.0.1:9" in out
    assert "rescue_sensor launches the runs" in out
    with open_instance() as instance:
        (rescue_id,) = rescues.active_ids(instance)
        assert "launching" not in rescues.load(instance, rescue_id)
        result = evaluate_rescue_sensor(shop_defs, instance)
        assert [r.tags[rescues.TAG_ID] for r in result.run_requests] == [rescue_id]


def test_the_cli_plans_the_dbt_tests_the_sensor_plans_and_no_other_check(shop_planner, shop_defs):
    from rescue_defs.checks.coverage import VALIDATION_CHECKS
    from rescue_defs.checks.proof import PROOF_CHECK
    from rescue_defs.rescues.kickoff import dbt_test_checks

    manifest = shop_planner.manifest
    keys = model_asset_keys(manifest)
    dbt_models = shop_defs.resolve_assets_def(next(iter(keys.values())))
    # what rescue_sensor plans for a run of every model (checks_of, less the validation ones
    # and the proof's, which are the dbt assets' checks too but run in the proof's own run)
    models = set(keys.values())
    planned = {
        c
        for c in dbt_models.check_keys
        if c.name not in (*VALIDATION_CHECKS, PROOF_CHECK) and c.asset_key in models
    }
    assert planned
    assert dbt_test_checks(manifest, set(keys)) == planned
    # the webserver lists the proof's checks for the same models too: never planned
    assert {c for c in shop_defs.resolve_asset_graph().asset_check_keys if c.name == PROOF_CHECK}


def test_a_run_the_sensor_requested_is_not_launched_again_by_the_cli_meanwhile(
    dagster_home, shop_planner, shop_defs
):
    from rescue_defs.rescues import kickoff

    keys = model_asset_keys(shop_planner.manifest)
    with open_instance() as instance:
        rescue = rescues.register(instance, shop_planner.plan(PlanRequest("stg_orders+")), keys)
        (request,) = evaluate_rescue_sensor(shop_defs, instance).run_requests
        # the daemon is still creating that run when `--wait` looks (a run of it just ended)
        tick = cli_decides(instance, rescue["id"], shop_planner)
        assert not tick.requests
        assert tick.messages == [f"rescue {rescue['id']}: rescue_sensor is starting its run"]
        # the CLI giving up leaves the sensor's marker alone
        kickoff.release(instance, rescue["id"])
        marker = rescues.load(instance, rescue["id"])["launching"]
        assert marker["by"] == "rescue_sensor"
        assert [tuple(pair) for pair in marker["steps"]] == rescues.covered_steps(request)


def test_a_resumed_rescue_says_it_is_running_not_how_long_its_last_attempt_took(
    dagster_home, shop_planner
):
    keys = model_asset_keys(shop_planner.manifest)
    with open_instance() as instance:
        plan = shop_planner.plan(PlanRequest("stg_orders+", reason="outage"))
        record = rescues.register(instance, plan, keys)
        record.update(status=rescues.FAILED, message="a run failed")
        rescues.finish(instance, record, keys)
        assert "took" in rescues.status_lines(instance, record["id"], keys)[1]
        resumed = rescues.resume(instance, record["id"], keys)
        assert resumed["status"] == rescues.ACTIVE
        # `rescue resume --wait` printed a frozen "took 103 s" eleven times while it ran
        line = rescues.status_lines(instance, record["id"], keys)[1]
        assert "running for" in line and "took" not in line, line


def test_succeeded_failed_and_canceled_rescues_are_told_apart_by_their_check_partitions(
    dagster_home, shop_planner, shop_defs
):
    from rescue_defs.assets.report import RESCUE_SUCCEEDED
    from rescue_defs.rescues.store import TAG_REPORT_OF

    keys = model_asset_keys(shop_planner.manifest)
    with open_instance() as instance:
        canceled = rescues.register(instance, shop_planner.plan(PlanRequest("stg_orders")), keys)
        failed = rescues.register(instance, shop_planner.plan(PlanRequest("+fct_orders")), keys)
        active = rescues.register(instance, shop_planner.plan(PlanRequest("stg_payments")), keys)
        rescues.cancel(instance, canceled["id"], keys)
        record = rescues.load(instance, failed["id"])
        record["steps"][0]["remaining"] = ["model.shop.renamed_away"]  # cannot advance: fails
        rescues.save(instance, record)
        evaluate_rescue_sensor(shop_defs, instance)
        assert rescues.load(instance, failed["id"])["status"] == rescues.FAILED
        # ids read as labels where Dagster shows only them
        assert "-fct_orders-" in failed["id"] and "-stg_orders-" in canceled["id"]

        requests = evaluate_sensor(shop_defs, instance, "rescue_report_sensor").run_requests
        assert sorted(r.tags[TAG_REPORT_OF] for r in requests) == sorted(
            [canceled["id"], failed["id"]]
        )
        for request in requests:
            assert execute_request(shop_defs, instance, request).success
        check = dg.AssetCheckKey(rescues.REPORT_ASSET, RESCUE_SUCCEEDED)
        latest = {
            info.partition_key: info
            for info in instance.event_log_storage.get_asset_check_partition_info([check])
        }
        assert set(latest) == {canceled["id"], failed["id"]}  # the active one: not evaluated
        for rescue_id in (canceled["id"], failed["id"]):
            info = latest[rescue_id]
            assert info.latest_execution_status.value == "FAILED"
            # current: evaluated against the report the rescue's end published
            assert info.latest_target_materialization_storage_id == (
                info.latest_materialization_storage_id
            )
        # the next tick has nothing left to evaluate
        assert not evaluate_sensor(shop_defs, instance, "rescue_report_sensor").run_requests
        assert active["id"] not in latest


@pytest.fixture(params=["sqlite", "postgres"])
def any_home(request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real home with the demo's dagster.yaml, its storage on SQLite or on the PostgreSQL
    server (skipped when there is none): storage ids and the asset index differ between them."""
    from tests.helpers import create_postgres_database, drop_postgres_database
    from tests.test_soak import make_home

    database = create_postgres_database("rescue_store") if request.param == "postgres" else None
    try:
        yield make_home(tmp_path, monkeypatch, database)
    finally:
        if database:
            drop_postgres_database(database)


def _run_that_built(instance, keys, status: dg.DagsterRunStatus, tags=None) -> dg.DagsterRun:
    """A finished (or still running) run of the daily pipeline, or of a rescue (`tags`), that
    stored a materialization of each of `keys`, as its step would."""
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.test_utils import create_run_for_test

    run = create_run_for_test(
        instance, job_name="daily_pipeline_job", status=status, tags=tags or {}
    )
    for key in keys:
        instance.report_dagster_event(
            DagsterEvent(
                event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
                job_name=run.job_name,
                event_specific_data=StepMaterializationData(dg.AssetMaterialization(key)),
            ),
            run_id=run.run_id,
        )
    return run


def _awaiting_its_next_run(instance, shop_planner, shop_defs, monkeypatch):
    """A succeeded rescue of +fct_orders awaiting its next run: its rescued keys, tick() (one
    rescue_report_sensor tick, then the rescue's record), and the materialization reads and
    asset-index reads of the last tick."""
    keys = model_asset_keys(shop_planner.manifest)
    record = rescues.register(instance, shop_planner.plan(PlanRequest("+fct_orders")), keys)
    record["status"] = rescues.SUCCEEDED
    rescues.finish(instance, record, keys)
    rescued = [keys[m] for step in record["steps"] for m in step["models"]]
    reads, indexed = [], []

    def counted(real, into):
        return lambda *a, **k: into.append(a) or real(*a, **k)

    for name, into in (("fetch_materializations", reads), ("get_asset_records", indexed)):
        monkeypatch.setattr(instance, name, counted(getattr(instance, name), into))

    def tick() -> dict:
        reads.clear(), indexed.clear()
        evaluate_sensor(shop_defs, instance, "rescue_report_sensor")
        return rescues.load(instance, record["id"])

    return rescued, tick, reads, indexed


def test_a_succeeded_rescue_awaiting_its_next_run_reads_each_new_materialization_once(
    any_home, shop_planner, shop_defs, monkeypatch
):
    """rescue_report_sensor looks for the next run after a succeeded rescue on every tick,
    for days: it read the materializations of every rescued model on each tick (2,000 queries,
    ~9 s a tick at 2,000 models, while the next rescue's dbt waited for the cores)."""
    from rescue_defs.rescues.store import TAG_ID

    with open_instance() as instance:
        rescued, tick, reads, _ = _awaiting_its_next_run(
            instance, shop_planner, shop_defs, monkeypatch
        )
        assert len(rescued) >= 5
        assert "confirmation" not in tick() and reads == [], "nothing was built since the end"
        # the next rescue's run rebuilds the same models: proves nothing, read once
        _run_that_built(instance, rescued, dg.DagsterRunStatus.SUCCESS, {TAG_ID: "another"})
        assert "confirmation" not in tick() and 0 < len(reads) <= len(rescued)
        assert "confirmation" not in tick() and reads == []
        # the pipeline builds them: not confirmed while its run goes on, then read as it ended
        pipeline = _run_that_built(instance, rescued[:2], dg.DagsterRunStatus.STARTED)
        assert "confirmation" not in tick()
        assert "confirmation" not in tick() and len(reads) <= 2
        instance.report_run_failed(pipeline)
        found = tick()["confirmation"]
        assert (found["run_id"], found["verdict"], found["rebuilt"]) == (
            pipeline.run_id,
            "failed",
            2,
        )


def test_awaiting_its_next_run_another_rescues_going_run_is_read_once_and_a_quiet_log_not_at_all(
    any_home, shop_planner, shop_defs, monkeypatch
):
    """While the next rescue's run went on (minutes at 2,000 models), each tick read all it had
    built again (it held the mark, as a pipeline run does), 14 s a tick at its end; and with
    nothing new at all, each tick still read the asset index for every rescued model."""
    from rescue_defs.rescues.store import TAG_ID

    with open_instance() as instance:
        rescued, tick, reads, indexed = _awaiting_its_next_run(
            instance, shop_planner, shop_defs, monkeypatch
        )
        assert "confirmation" not in tick() and indexed, "the first tick reads the asset index"
        assert "confirmation" not in tick() and reads == indexed == [], "a quiet log: no read"
        going = _run_that_built(instance, rescued, dg.DagsterRunStatus.STARTED, {TAG_ID: "next"})
        assert "confirmation" not in tick() and 0 < len(reads) <= len(rescued)
        assert "confirmation" not in tick() and reads == [], "another rescue's run: read once"
        instance.report_run_failed(going)
        assert "confirmation" not in tick() and reads == []
        # the pipeline's run, going, is read again until it ends, then confirms
        pipeline = _run_that_built(instance, rescued[:2], dg.DagsterRunStatus.STARTED)
        assert "confirmation" not in tick() and "confirmation" not in tick() and reads
        instance.report_run_failed(pipeline)
        assert tick()["confirmation"]["run_id"] == pipeline.run_id


def test_a_run_that_built_many_steps_is_read_once_not_once_a_step_when_the_rescue_settles(
    any_home, shop_planner, monkeypatch
):
    """Its steps share one run: the run's check verdicts were read again for each step (54
    steps of a 2,000-model rescue: 27 s between the run's end and the rescue's)."""
    from dagster._core.test_utils import create_run_for_test

    from rescue_defs.rescues.store import TAG_ID, TAG_STEPS

    keys = model_asset_keys(shop_planner.manifest)
    with open_instance() as instance:
        record = rescues.register(
            instance, shop_planner.plan(PlanRequest("+int_orders_enriched+")), keys
        )
        assert len(record["steps"]) == 3
        steps = ",".join(f"{step['index']}:0" for step in record["steps"])
        create_run_for_test(
            instance,
            job_name="rescue_step_job",
            status=dg.DagsterRunStatus.SUCCESS,
            tags={TAG_ID: record["id"], TAG_STEPS: steps},
        )
        reads = []
        read = instance.get_records_for_run
        monkeypatch.setattr(
            instance, "get_records_for_run", lambda *a, **k: reads.append(a) or read(*a, **k)
        )
        rescues.settle(instance, rescues.load(instance, record["id"]), keys)
        # once to settle its three steps, once for the report it ends with (was once a step)
        assert rescues.load(instance, record["id"])["status"] == rescues.SUCCEEDED
        assert len(reads) == 2


def test_a_rescue_with_a_proof_to_run_expects_it_where_its_status_says_how_long(
    dagster_home, shop_planner
):
    keys = model_asset_keys(shop_planner.manifest)
    plan = shop_planner.plan(PlanRequest("fct_orders"))
    on = {"on": True, "max_seconds": 600, "why_off": ""}
    with open_instance() as instance:
        dry = rescues.register(instance, plan, keys, dry_run=True, proof=on)
        lines = rescues.status_lines(instance, dry["id"], keys)
    assert dry["proof"]["status"] == "pending"
    assert dry["expected_seconds"] > plan.total_seconds  # the proof is part of the wait
    assert f"(expected ~{dry['expected_seconds']:.0f} s)" in lines[1]
