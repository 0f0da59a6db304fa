"""Rescues as Dagster runs: ordered stages, stop on failure, full refresh where meant, resume
after a kill, a contention guard, and bad input refused before dbt runs."""

import os
import re
import threading
import time
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.test_utils import create_run_for_test

from rescue_defs import cli, rescues
from rescue_defs.assets.dbt import load_manifest, model_asset_keys
from rescue_defs.checks.proof import PROOF_CHECK, rebuilt_from_scratch
from rescue_defs.rescues.facts import run_models
from rescue_defs.rescues.proving import proof_request
from tests.conftest import NO_COMPUTE_LOGS, copy_of_build
from tests.helpers import (
    dbt_commands,
    drive_rescue,
    evaluate_rescue_sensor,
    execute_request,
    kill_child_dbt,
    query,
    raw_config,
    rescue_id_of,
    rows_differing,
    start_rescue,
)


@pytest.fixture
def instance(request, tmp_path, warehouse, shop_builds):
    """The test's own Dagster home; for a test that asks for `built`, a copy of the home and
    the warehouse as after a night of the daily pipeline (built once, copied per test)."""
    home = tmp_path / "dagster_home"
    if "built" in request.fixturenames:
        copy_of_build(shop_builds("2026-01-12"), warehouse, home)
    else:
        home.mkdir()
    with dg.instance_for_test(temp_dir=str(home), overrides=NO_COMPUTE_LOGS) as instance:
        yield instance


@pytest.fixture
def built(shop_defs, instance):
    """The bundled warehouse loaded and built, as after a night of the daily pipeline, with
    that night's runs in the Dagster home (the history rescues plan from)."""
    return shop_defs


def rescue_runs(instance, rescue_id):
    """The rescue's stage runs (not the run that started it), in start order."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={rescues.TAG_ID: rescue_id}))
    runs = [r for r in runs if rescues.TAG_STEP in r.tags]
    return sorted(runs, key=lambda r: instance.get_run_record_by_id(r.run_id).start_time)


def test_three_stage_rescue_launched_from_the_cli_runs_stage_after_stage(
    built, instance, shop_project, capsys
):
    # `rescue launch` talks to the instance in DAGSTER_HOME: the test instance's
    launch = ["launch", "--project-dir", str(shop_project.project_dir), "--layered"]
    launch.append("--separate-runs")  # one run per stage, as when other runs hold the queue
    assert cli.main([*launch, "--select", "+int_orders_enriched+", "--reason", "test"]) == 0
    out = capsys.readouterr().out
    assert "Step 3 [downstream]" in out
    rescue_id = re.search(r"^rescue (\S+): active$", out, re.M).group(1)
    assert f"tag%3Arescue%2Fid%3D{rescue_id}" in out

    record = drive_rescue(built, instance, rescue_id)
    assert record["status"] == rescues.SUCCEEDED
    runs = rescue_runs(instance, rescue_id)
    assert [r.tags[rescues.TAG_STAGE] for r in runs] == ["upstream", "target", "downstream"]
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert {r.tags[rescues.TAG_REASON] for r in runs} == {"test"}
    # a dead run worker cannot hold the queue for good: run monitoring fails a stage run that
    # outlives 6x its estimate (15 min at least), and the rescue stops with a resume hint
    assert all(int(r.tags["dagster/max_runtime"]) >= 900 for r in runs)
    times = [instance.get_run_record_by_id(r.run_id) for r in runs]
    for before, after in zip(times, times[1:], strict=False):
        assert before.end_time <= after.start_time
    planned = {m for s in record["steps"] for m in s["models"]}
    keys = model_asset_keys(load_manifest(*_manifest_args(built)))
    assert rescues.materialized(instance, (r.run_id for r in runs)) == {keys[m] for m in planned}

    # the per-run folders dagster-dbt leaves in target/ are gone
    target = Path(_manifest_args(built)[1]) / "target"
    for run in runs:
        assert not list(target.glob(f"dbt_models-{run.run_id[:7]}-*")), run.run_id
    # what these runs cost besides their models is learned for the next estimate
    learned = rescues.history(instance, keys)
    assert len(learned.run_overhead) == 3 and learned.run_stages == [1, 1, 1]

    assert cli.main(["status", rescue_id]) == 0
    status = capsys.readouterr().out
    assert f"rescue {rescue_id}: succeeded" in status
    assert "step 3 [downstream] SUCCESS" in status
    for step in record["steps"]:  # each run's line counts what its run rebuilt
        n = len(step["models"])
        assert f"step {step['index'] + 1} [{step['stage']}] SUCCESS" in status
        assert re.search(
            rf"step {step['index'] + 1} \[\w+\] SUCCESS \(\S+\): {n}/{n} rebuilt", status
        )
    # the rescue report follows: every planned model rebuilt and validated, nothing left
    assert f"{len(planned)}/{len(planned)} rebuilt, {len(planned)} validated" in status
    assert "Nothing: every planned model was rebuilt" in status


def _manifest_args(defs):
    dbt = defs.resources["dbt"]
    project = dbt.project_dir if isinstance(dbt.project_dir, str) else dbt.project_dir
    from rescue_defs.project import load_dbt_project

    p = load_dbt_project(str(project))
    return str(p.manifest_path), str(p.project_dir)


def test_launch_wait_ends_the_rescue_when_its_run_ends_not_at_the_next_sensor_tick(
    built, instance, shop_project, capsys
):
    # one sensor tick launches the run and no tick follows: `--wait` ends the rescue itself
    launch = ["launch", "--project-dir", str(shop_project.project_dir), "--select"]
    exit_code = {}
    waiting = threading.Thread(
        target=lambda: exit_code.update(
            code=cli.main([*launch, "stg_customers+", "--wait", "--wait-timeout", "300"])
        )
    )
    waiting.start()
    deadline = time.monotonic() + 120
    while not rescues.active_ids(instance) and time.monotonic() < deadline:
        time.sleep(0.1)
    (rescue_id,) = rescues.active_ids(instance)
    # the daemon's ticks: none launches while the CLI holds the rescue (it tries the UI's
    # webserver first; none answers here), then one does, once
    requests = []
    while not requests and time.monotonic() < deadline:
        requests = evaluate_rescue_sensor(built, instance).run_requests or []
        time.sleep(0 if requests else 0.2)
    (request,) = requests
    assert execute_request(built, instance, request).success
    waiting.join(timeout=60)
    assert not waiting.is_alive() and exit_code == {"code": 0}

    record = rescues.load(instance, rescue_id)
    assert record["status"] == rescues.SUCCEEDED
    assert record["message"] == "every planned model was rebuilt"
    assert rescue_id not in rescues.active_ids(instance)
    # the report says so too, published once at the end
    reports = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=rescues.REPORT_ASSET, asset_partitions=[rescue_id]),
        limit=10,
    ).records
    statuses = [r.asset_materialization.metadata["status"].value for r in reports]
    assert statuses.count(rescues.SUCCEEDED) == 1
    assert f"rescue {rescue_id}: succeeded" in capsys.readouterr().out


def test_a_rescue_ends_with_its_proving_run_not_at_the_sensors_next_tick(built, instance):
    rescue_id = rescue_id_of(start_rescue(built, instance, select="fct_orders"))
    (request,) = evaluate_rescue_sensor(built, instance).run_requests
    assert execute_request(built, instance, request).success  # it builds, then proves
    # what `rescue launch --wait` does while it waits, between two of the sensor's ticks
    keys = model_asset_keys(load_manifest(*_manifest_args(built)))
    assert rescues.settle(instance, rescues.load(instance, rescue_id), keys) is not None
    record = rescues.load(instance, rescue_id)
    assert record["status"] == rescues.SUCCEEDED, record["message"]
    assert record["proof"]["status"] == "equal"
    # the verdict is one stored event, not planned and not a step output (three events at
    # 1,000 incremental models: 2,000 more to store), and the UI shows it as the check's latest
    proof = dg.AssetCheckKey(dg.AssetKey("fct_orders"), PROOF_CHECK)
    (run,) = rescue_runs(instance, rescue_id)
    events = [e.dagster_event for e in instance.all_logs(run.run_id) if e.dagster_event]

    def about_proof(e) -> bool:
        data = e.event_specific_data
        if e.event_type == dg.DagsterEventType.STEP_OUTPUT:
            return PROOF_CHECK in data.step_output_handle.output_name
        return (
            dg.AssetCheckKey(getattr(data, "asset_key", None), getattr(data, "check_name", ""))
            == proof
        )

    kinds = [e.event_type for e in events if about_proof(e)]
    assert kinds == [dg.DagsterEventType.ASSET_CHECK_EVALUATION]
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key([proof])[proof]
    assert latest.status.value == "SUCCEEDED" and latest.run_id == run.run_id


def test_a_failing_stage_stops_the_rescue(built, instance, warehouse):
    # a duplicated customer makes stg_customers' unique test (blocking) fail in stage one
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute("insert into raw.customers select * from raw.customers limit 1")
    rescue_id = rescue_id_of(start_rescue(built, instance, select="+dim_customers+", layered=True))
    record = drive_rescue(built, instance, rescue_id)
    assert record["status"] == rescues.FAILED
    # the three stages ran as one run, which stopped after the upstream stage's dbt
    assert "stopped: step 1 (upstream, in run" in record["message"]
    runs = rescue_runs(instance, rescue_id)
    assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.FAILURE
    assert len(dbt_commands(instance, runs[0].run_id)) == 1
    # the next stage's dbt, started ahead, was called off: it ran nothing and left nothing
    assert not _waiting_dbt_processes()
    assert not _waiting_folders_left(Path(_manifest_args(built)[1]) / "target")
    keys = model_asset_keys(load_manifest(*_manifest_args(built)))
    later = {keys[m] for step in record["steps"][1:] for m in step["models"]}
    assert not rescues.materialized(instance, [runs[0].run_id]) & later
    # later ticks launch nothing
    assert not evaluate_rescue_sensor(built, instance).run_requests


def _waiting_folders_left(target: Path) -> set[Path]:
    """Folders of dbt started ahead that no live dbt waits in, and still there a moment later:
    the bundled project's target/ is shared with the tests running beside this one, whose
    folders come and go."""

    def left() -> set[Path]:
        waited_in = _folders_waited_in()
        folders = {p.resolve() for p in target.iterdir() if (p / ".rescue_wait").exists()}
        return folders - waited_in

    found = left()
    if found:
        time.sleep(3)
        found &= left()
    return found


def _folders_waited_in() -> set[Path]:
    """The target folders live rescue-dbt processes (any test's) were started in."""
    return {folder for _, _, folder in _rescue_dbt_processes() if folder is not None}


def _waiting_dbt_processes() -> list[int]:
    """rescue-dbt processes of this test process still alive (started ahead, never told)."""
    return [pid for pid, parent, _ in _rescue_dbt_processes() if parent == os.getpid()]


def _rescue_dbt_processes() -> list[tuple[int, int, Path | None]]:
    """(pid, parent pid, target folder: DBT_TARGET_PATH) of each live rescue-dbt process."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            state, parent = (proc / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            if state == "Z" or b"rescue-dbt" not in (proc / "cmdline").read_bytes():
                continue
            folder = None
            for variable in (proc / "environ").read_bytes().split(b"\0"):
                if variable.startswith(b"DBT_TARGET_PATH="):
                    folder = Path(variable.split(b"=", 1)[1].decode()).resolve()
            found.append((int(proc.name), int(parent), folder))
        except (OSError, ValueError):
            continue
    return found


def test_a_last_stage_that_fails_starts_no_from_scratch_build(built, instance, warehouse):
    # one stage with an incremental model (so the run proves), and a customer duplicated so
    # that stg_customers' unique test fails in it
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute("insert into raw.customers select * from raw.customers limit 1")
    rescue_id = rescue_id_of(
        start_rescue(built, instance, select="stg_customers fct_orders", layered=False)
    )
    record = drive_rescue(built, instance, rescue_id)
    assert record["status"] == rescues.FAILED
    assert record["proof"]["models"] and record["proof"]["status"] != "equal"
    (run,) = rescue_runs(instance, rescue_id)
    logs = [r.user_message or "" for r in instance.all_logs(run.run_id)]
    assert not [m for m in logs if "from-scratch build of" in m or "--favor-state" in m]
    schemas = query(warehouse, "select distinct schema_name from information_schema.schemata")
    assert not [s for (s,) in schemas if "rescue_proof" in s]


def test_stages_run_one_after_the_other_in_one_run_when_nothing_else_writes_them(
    built, instance, capsys
):
    rescue_id = rescue_id_of(
        start_rescue(built, instance, select="+int_orders_enriched+", layered=True)
    )
    record = drive_rescue(built, instance, rescue_id)
    assert record["status"] == rescues.SUCCEEDED
    (run,) = rescue_runs(instance, rescue_id)
    assert run.tags[rescues.TAG_STEPS] == "0:0,1:0,2:0"
    assert run.tags[rescues.TAG_STAGE] == "upstream+target+downstream"
    # one dbt build per stage, in order, each stage's models materialized before the next
    # stage's first: the playbook's upstream -> target -> downstream inside one run
    commands = dbt_commands(instance, run.run_id)
    builds = [c for c in commands if " build " in c]
    assert len(builds) == 3, commands
    # each next stage's dbt imported itself while the stage before ran, and ran when told
    ahead = [r.user_message for r in instance.all_logs(run.run_id)]
    ahead = [m for m in ahead if m and m.endswith("(dbt started ahead).")]
    assert len(ahead) == 2 and all(" build " in m for m in ahead), ahead
    # dbt's fast test edges: the same order, without dbt's quadratic edge-adding on big graphs
    assert all(" --use-fast-test-edges" in c for c in builds), builds
    # and no artifacts nobody reads (the proof's scratch build keeps its manifest: it reads it)
    assert all(" --no-write-json" in c for c in builds), builds
    assert "--no-write-json" not in commands[-1], commands
    # then, in the same run, the proof: the incremental models from scratch in a scratch
    # schema (its scratch parse, when the kept one is stale, starts with the first stage)
    assert [c for c in commands if not c.endswith(" parse")][:3] == builds, commands
    assert "--favor-state" in commands[-1], commands
    keys = model_asset_keys(load_manifest(*_manifest_args(built)))
    stage_of = {keys[m]: step["index"] for step in record["steps"] for m in step["models"]}
    # the from-scratch build starts once the last stage is built and validated, while that
    # stage's check results are being stored, not after them
    logs = instance.all_logs(run.run_id)
    scratch_build = next(
        i for i, r in enumerate(logs) if "from-scratch build of" in (r.user_message or "")
    )
    last_stage_checks = [
        i
        for i, r in enumerate(logs)
        if r.dagster_event is not None
        and r.dagster_event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        and stage_of.get(r.dagster_event.asset_check_evaluation_data.asset_key) == 2
        and r.dagster_event.asset_check_evaluation_data.check_name != PROOF_CHECK
    ]
    assert last_stage_checks and scratch_build < max(last_stage_checks)
    records = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    order = [stage_of[r.event_log_entry.asset_materialization.asset_key] for r in records]
    assert order == sorted(order) and set(order) == {0, 1, 2}
    assert rescues.materialized(instance, [run.run_id]) == set(stage_of)
    # the next estimate learns this run's cost with its three stages: their dbt starts are
    # counted per stage, not again in the run's overhead
    assert rescues.history(instance, keys).run_stages == [3]
    # each stage is validated (row count, max date) in the run
    assert cli.main(["status", rescue_id]) == 0
    status = capsys.readouterr().out
    for step in record["steps"]:
        n = len(step["models"])
        assert (
            f"step {step['index'] + 1} [{step['stage']}] SUCCESS ({run.run_id}): {n}/{n}" in status
        )
    planned = sum(len(step["models"]) for step in record["steps"])
    assert f"{planned}/{planned} rebuilt, {planned} validated" in status


def test_full_refresh_reaches_only_the_models_meant_and_is_their_own_proof(built, instance):
    rescue_id = rescue_id_of(
        start_rescue(
            built,
            instance,
            select="int_orders_enriched+",
            layered=False,
            full_refresh_models=["fct_orders"],
        )
    )
    record = drive_rescue(built, instance, rescue_id)
    assert record["status"] == rescues.SUCCEEDED, record["message"]
    (run,) = rescue_runs(instance, rescue_id)
    # the rescue's builds (the proof's from-scratch build in its scratch schema comes after)
    commands = [c for c in dbt_commands(instance, run.run_id) if " build " in c]
    refreshed = [c for c in commands if "--full-refresh" in c]
    assert len(refreshed) == 1 and refreshed[0].endswith("--select fct_orders")
    assert len(commands) >= 2
    assert all("fct_orders " not in c + " " for c in commands if c not in refreshed)
    # the history knows that build was a full refresh: the next estimate learns its cost
    keys = model_asset_keys(load_manifest(*_manifest_args(built)))
    learned = rescues.history(instance, keys)
    (fct_orders,) = [m for m, k in keys.items() if k == dg.AssetKey("fct_orders")]
    assert list(learned.full_refresh) == [fct_orders]
    assert fct_orders in learned.incremental  # the daily pipeline's normal builds
    # fct_orders, rebuilt from scratch by the rescue itself, is its own proof: not built twice
    assert record["proof"]["status"] == "equal" and "fct_orders" in record["proof"]["models"][-1]
    # the other incremental models are built again in the scratch schema; fct_orders is not
    (scratch_build,) = [c for c in dbt_commands(instance, run.run_id) if "--favor-state" in c]
    scratch_selection = scratch_build.split("--select ")[1].split(" --")[0].split()
    assert scratch_selection and "fct_orders" not in scratch_selection
    verdicts = {
        e.asset_check_evaluation_data.asset_key.to_user_string(): e.asset_check_evaluation_data
        for e in (
            r.event_log_entry.dagster_event
            for r in instance.get_records_for_run(
                run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
            ).records
        )
        if e.asset_check_evaluation_data.check_name == PROOF_CHECK
    }
    own = verdicts["fct_orders"]
    assert own.passed and own.metadata["status"].value == "built from scratch"
    assert "rebuilt it with --full-refresh" in own.description
    compared = [v for k, v in verdicts.items() if k != "fct_orders"]
    assert compared and all(v.metadata["status"].value == "equal" for v in compared)
    assert f"{len(compared)} compared row for row, 1 rebuilt from scratch" in record["message"]
    report = rescues.report_markdown(instance, rescues.load(instance, rescue_id), keys)
    assert "fct_orders: equal to a from-scratch build by construction" in report


def test_a_rescue_that_rebuilds_every_incremental_model_from_scratch_builds_nothing_more(
    built, instance, warehouse
):
    rescue_id = rescue_id_of(
        start_rescue(
            built, instance, select="fct_orders", layered=False, full_refresh_models=["fct_orders"]
        )
    )
    record = drive_rescue(built, instance, rescue_id)
    assert record["status"] == rescues.SUCCEEDED, record["message"]
    assert record["proof"]["status"] == "equal"
    (run,) = rescue_runs(instance, rescue_id)
    (command,) = dbt_commands(instance, run.run_id)
    assert " build --full-refresh " in command
    # no scratch build, no scratch schema
    logs = [r.user_message or "" for r in instance.all_logs(run.run_id)]
    assert not [m for m in logs if "from-scratch build of" in m or "--favor-state" in m]
    schemas = query(warehouse, "select distinct schema_name from information_schema.schemata")
    assert not [s for (s,) in schemas if "rescue_proof" in s]


def test_a_proof_that_runs_again_after_resume_builds_nothing_in_prod_and_proves(built, instance):
    rescue_id = rescue_id_of(start_rescue(built, instance, select="fct_orders", layered=False))
    assert drive_rescue(built, instance, rescue_id)["proof"]["status"] == "equal"
    # as when the proving run's proof failed (settle_proof): every model rebuilt, no verdict
    record = rescues.load(instance, rescue_id)
    record["proof"]["status"], record["status"] = "error", rescues.FAILED
    rescues.save(instance, record)
    keys = model_asset_keys(load_manifest(*_manifest_args(built)))
    resumed = rescues.resume(instance, rescue_id, keys)
    assert resumed["status"] == rescues.ACTIVE and "then the proof" in resumed["message"]
    record = drive_rescue(built, instance, rescue_id)
    assert record["status"] == rescues.SUCCEEDED, record["message"]
    assert record["proof"]["status"] == "equal" and record["proof"]["attempt"] == 1
    (proof_run,) = instance.get_runs(
        filters=dg.RunsFilter(tags={rescues.TAG_ID: rescue_id, rescues.TAG_KIND: "proof"})
    )
    assert proof_run.status == dg.DagsterRunStatus.SUCCESS
    # only the proof's checks: no model built again in prod, no other check
    assert not rescues.materialized(instance, [proof_run.run_id])
    evaluations = instance.get_records_for_run(
        proof_run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    names = {
        e.event_log_entry.dagster_event.asset_check_evaluation_data.check_name for e in evaluations
    }
    assert names == {PROOF_CHECK}
    # such a run, as the daemon records it, holds the models it reads while it runs: no
    # rescue writes them under its comparison
    request = proof_request(record, keys)
    queued = create_run_for_test(
        instance,
        job_name=request.job_name,
        tags=request.tags,
        asset_selection=frozenset(request.asset_selection),
        asset_check_selection=frozenset(request.asset_check_keys),
    )
    by_key = {key: uid for uid, key in keys.items()}
    (fct_orders,) = [uid for uid, key in keys.items() if key == dg.AssetKey("fct_orders")]
    assert run_models(queued, by_key, frozenset(keys)) == {fct_orders}


def test_a_model_configured_never_to_full_refresh_is_still_compared(shop_manifest):
    (fct_orders,) = shop_manifest.by_name["fct_orders"]
    nodes = dict(shop_manifest.models)
    assert rebuilt_from_scratch(nodes, [fct_orders]) == {fct_orders}
    # dbt ignores --full-refresh for it: the run built it incrementally
    config = {**nodes[fct_orders]["config"], "full_refresh": False}
    nodes[fct_orders] = {**nodes[fct_orders], "config": config}
    assert rebuilt_from_scratch(nodes, [fct_orders]) == set()


def test_killed_rescue_resumes_with_only_what_is_missing_and_equals_a_clean_run(
    built, instance, warehouse, tmp_path, monkeypatch
):
    # the oracle: the same rescue, uninterrupted, on a copy of the warehouse
    clean = tmp_path / "clean.duckdb"
    clean.write_bytes(warehouse.read_bytes())

    rescue_id = rescue_id_of(
        start_rescue(built, instance, select="+int_orders_enriched+", layered=False)
    )
    killed = {}

    def kill_dbt_midway(defs, inst, request):
        worker = threading.Thread(target=execute_request, args=(defs, inst, request))
        worker.start()
        deadline = time.monotonic() + 120
        try:
            while worker.is_alive() and time.monotonic() < deadline and not killed:
                runs = inst.get_runs(filters=dg.RunsFilter(tags={rescues.TAG_ID: rescue_id}))
                done = rescues.materialized(inst, (r.run_id for r in runs))
                if len(done) >= 4 and kill_child_dbt("build"):
                    killed["after"] = len(done)
                time.sleep(0.05)
        finally:  # never leave the run going into the next test
            worker.join()

    record = drive_rescue(built, instance, rescue_id, max_ticks=3, on_request=kill_dbt_midway)
    assert killed, "dbt was not caught mid-run"
    assert record["status"] == rescues.FAILED
    (first,) = rescue_runs(instance, rescue_id)
    built_before_kill = rescues.materialized(instance, [first.run_id])
    planned = set(record["steps"][0]["models"])
    assert 0 < len(built_before_kill) < len(planned)

    resumed = rescues.resume(
        instance, rescue_id, model_asset_keys(load_manifest(*_manifest_args(built)))
    )
    assert len(resumed["steps"][0]["remaining"]) == len(planned) - len(built_before_kill)
    assert drive_rescue(built, instance, rescue_id)["status"] == rescues.SUCCEEDED

    runs = rescue_runs(instance, rescue_id)
    assert runs[-1].tags[rescues.TAG_REASON] == "resume"
    # every planned model materialized exactly once across the rescue's runs
    counts: dict[dg.AssetKey, int] = {}
    for run in runs:
        for record_ in instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records:
            key = record_.event_log_entry.dagster_event.asset_key
            counts[key] = counts.get(key, 0) + 1
    assert set(counts.values()) == {1} and len(counts) == len(planned)

    monkeypatch.setenv("RESCUE_DUCKDB_PATH", str(clean))
    from dagster_dbt import DbtCliResource

    dbt = DbtCliResource(project_dir=_manifest_args(built)[1])
    assert dbt.cli(["build", "--select", "+int_orders_enriched+"]).is_successful()
    for table in query(
        warehouse,
        "select table_name from information_schema.tables "
        "where table_schema = 'analytics' and table_type = 'BASE TABLE'",
    ):
        assert rows_differing(warehouse, clean, f"analytics.{table[0]}") == 0, table


def test_a_rescue_waits_for_a_run_writing_its_models_and_not_for_a_disjoint_one(built, instance):
    keys = model_asset_keys(load_manifest(*_manifest_args(built)))
    manifest = load_manifest(*_manifest_args(built))
    page_views = keys[manifest.by_name["fct_page_views"][0]]
    disjoint = create_run_for_test(
        instance,
        job_name="__ASSET_JOB",
        status=dg.DagsterRunStatus.STARTED,
        asset_selection=frozenset({page_views}),
    )
    scheduled = create_run_for_test(
        instance, job_name="daily_pipeline_job", status=dg.DagsterRunStatus.STARTED
    )
    rescue_id = rescue_id_of(
        start_rescue(built, instance, select="+fct_orders", layered=False, force=True)
    )
    record = rescues.load(instance, rescue_id)
    assert record["forced"]  # the checklist blocked on the overlap; force was recorded

    waiting = evaluate_rescue_sensor(built, instance)
    assert not waiting.run_requests
    assert scheduled.run_id[:8] in waiting.skip_message
    assert disjoint.run_id[:8] not in waiting.skip_message
    assert "daily_pipeline_job" in rescues.load(instance, rescue_id)["message"]

    instance.report_run_failed(scheduled)  # the scheduled run ends
    ended = instance.get_run_record_by_id(scheduled.run_id).update_timestamp
    assert drive_rescue(built, instance, rescue_id)["status"] == rescues.SUCCEEDED
    (run,) = rescue_runs(instance, rescue_id)
    assert instance.get_run_record_by_id(run.run_id).start_time >= ended.timestamp()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"select": "no_such_model+"}, "'no_such_model+': matches no model"),
        ({"select": "  "}, "the selection is empty"),
        ({"select": "fct_orders", "exclude": "fct_orders"}, "removes every selected model"),
        ({"select": "fct_orders", "full_refresh_models": ["fct_page_views"]}, "not in the rescue"),
        ({"select": "fct_orders", "max_runtime": 0}, "max_runtime must be a positive number"),
    ],
)
def test_bad_rescue_config_fails_before_any_dbt_command(shop_defs, instance, config, message):
    result = start_rescue(shop_defs, instance, **config)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert message in failure.step_failure_data.error.message + str(
        failure.step_failure_data.user_failure_data
    )
    assert rescues.rescue_ids(instance) == []
    assert dbt_commands(instance, result.run_id) == []


def test_a_config_select_that_disagrees_with_the_asset_selection_fails_before_dbt(
    shop_defs, instance
):
    job = shop_defs.resolve_job_def(rescues.STEP_JOB)
    result = job.execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey("fct_orders")],
        run_config={"resources": {"rescue_run": {"config": {"select": "fct_orders+"}}}},
        raise_on_error=False,
    )
    assert not result.success
    assert dbt_commands(instance, result.run_id) == []
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert "resolves to 6 models but the run selects 1" in str(failure.step_failure_data)


def test_a_sandbox_rescue_rebuilds_a_copy_of_prod_and_leaves_prod_untouched(
    built, instance, warehouse
):
    from rescue_defs.project import sandbox_warehouse_path

    everything = built.resolve_asset_graph().materializable_asset_keys
    raw_keys = [k for k in everything if k.path[0] == "raw"]
    job = built.resolve_implicit_global_asset_job_def()
    loaded = job.execute_in_process(
        instance=instance, run_config=raw_config("2026-01-14"), asset_selection=raw_keys
    )
    assert loaded.success
    fct_orders = dg.AssetKey("fct_orders")
    prod_event = instance.get_latest_materialization_event(fct_orders)

    # the loads moved on two days: rebuild what reads the daily sources, in the sandbox
    select = "stg_orders+ stg_order_items+ stg_payments+ stg_web_events+"
    started = start_rescue(
        built, instance, select=select, sandbox=True, reason="try", max_runtime=900
    )
    rescue_id = rescue_id_of(started)
    record = drive_rescue(built, instance, rescue_id)
    assert record["status"] == rescues.SUCCEEDED, record["message"]

    # the copy got the rebuild; prod kept its tables, its lineage and its check history
    sandbox = sandbox_warehouse_path()
    assert sandbox != warehouse and sandbox.name == warehouse.name
    latest = "select max(order_date) from analytics.fct_orders"
    assert query(sandbox, latest) == [(date(2026, 1, 14),)]
    assert query(warehouse, latest) == [(date(2026, 1, 12),)]
    assert instance.get_latest_materialization_event(fct_orders).run_id == prod_event.run_id
    runs = rescue_runs(instance, rescue_id)
    assert runs and all(r.tags[rescues.TAG_SANDBOX] == "true" for r in runs)
    # every run carries the time limit run monitoring enforces: 900 s per stage it builds
    assert all(
        r.tags["dagster/max_runtime"] == str(900 * len(rescues.covered_steps(r))) for r in runs
    )
    for run in runs:
        assert all("--target sandbox" in c for c in dbt_commands(instance, run.run_id))
        assert not instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
    observed = instance.fetch_observations(fct_orders, limit=1).records[0]
    meta = observed.asset_observation.metadata
    assert meta["sandbox"].value is True
    assert meta["max_date_is_current"].value.startswith("passed")
    keys = model_asset_keys(load_manifest(*_manifest_args(built)))
    outcomes = rescues.model_outcomes(instance, runs, keys)
    planned = [m for step in record["steps"] for m in step["models"]]
    assert [m for m in planned if not outcomes[m].validated] == []


def test_the_run_that_starts_a_rescue_does_not_block_it(shop_defs, instance):
    # a launchpad run of rescue_job is in progress while it plans: it writes no table
    create_run_for_test(
        instance,
        job_name="rescue_job",
        status=dg.DagsterRunStatus.STARTED,
        tags={"rescue/kind": "start"},
    )
    started = start_rescue(shop_defs, instance, select="+fct_daily_revenue", dry_run=True)
    assert started.success
    record = rescues.load(instance, rescue_id_of(started))
    checklist = {item["item"]: item for item in record["plan"]["checklist"]}
    assert checklist["overlap"]["status"] == "ok", checklist["overlap"]
