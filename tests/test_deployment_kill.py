"""The worst night (issue 25): the whole `dagster dev` (webserver, daemon, code server, run
worker and its dbt) is killed with SIGKILL while a rescue's dbt runs, and started again. Nobody
types anything: the run left STARTED is failed once its worker has been silent long enough,
the rescue resumes by itself and ends succeeded, its incremental models proven equal to a
from-scratch build."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import dagster as dg

from rescue_defs import rescues
from rescue_defs.rescues.liveness import TAG_ALIVE, silent_seconds
from tests.demo_server import REPO, start, stop, wait_for


def _group(pgid: int) -> list[str]:
    """Command lines of the live processes of process group `pgid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, IndexError, ValueError):
            continue
    return found


def _pipeline(demo, through: str) -> str:
    client = demo.client()
    run_id = client.submit_job_execution(
        "daily_pipeline_job",
        run_config={"ops": {"raw_sources": {"config": {"through_date": through}}}},
    )
    return wait_for(
        lambda: (s := client.get_run_status(run_id).value) in ("SUCCESS", "FAILURE") and s,
        300,
        "the daily pipeline",
        demo.log,
    )


def test_a_rescue_killed_with_its_whole_dagster_dev_ends_succeeded_after_a_restart(
    tmp_path, warehouse, monkeypatch
):
    home = tmp_path / "dagster_home"
    # a run silent for 30 s is dead here (the default 90 s only makes the test wait longer)
    silent = {"RESCUE_RUN_SILENT_SECONDS": "30"}
    env = {**os.environ, "DAGSTER_HOME": str(home), "RESCUE_DUCKDB_PATH": str(warehouse), **silent}
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("RESCUE_RUN_SILENT_SECONDS", "30")
    log = tmp_path / "dagster-dev.log"
    demo = start(env, log)
    try:
        assert _pipeline(demo, "2026-01-12") == "SUCCESS"
        launched = subprocess.run(
            [str(REPO / ".venv" / "bin" / "rescue"), "launch", "--select", "+fct_orders+", "--now"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert launched.returncode == 0, launched.stdout + launched.stderr
        rescue_id = re.search(r"^rescue (\S+): active$", launched.stdout, re.M).group(1)

        # kill -9 of everything the moment the rescue's dbt builds (its worker has stamped
        # its first sign of life by then)
        def building():
            return [c for c in _group(demo.process.pid) if "dbt" in c and " build " in c]

        wait_for(building, 300, "the rescue's dbt build", log)
        os.killpg(demo.process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _group(demo.process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _group(demo.process.pid), "a process of the killed dagster dev lives on"
        demo.process.wait()
    finally:
        stop(demo)

    with dg.DagsterInstance.get() as instance:
        (stuck,) = [r for r in rescues.step_runs(instance, rescue_id) if rescues.TAG_STEP in r.tags]
        assert stuck.status == dg.DagsterRunStatus.STARTED  # nobody is left to say otherwise
        assert TAG_ALIVE in stuck.tags

    demo = start(env, log)  # the same home, warehouse and project: nothing typed
    try:
        with dg.DagsterInstance.get() as instance:
            record = wait_for(
                lambda: (r := rescues.load(instance, rescue_id))["status"] != rescues.ACTIVE and r,
                silent_seconds() + 420,
                f"rescue {rescue_id} to end by itself",
                log,
            )
            assert record["status"] == rescues.SUCCEEDED, record["message"]
            assert record["auto_resumes"] == 1
            assert record["proof"]["status"] == "equal", record["proof"]
            failed = instance.get_run_by_id(stuck.run_id)
            assert failed.status == dg.DagsterRunStatus.FAILURE
            said = instance.all_logs(stuck.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            assert "run worker silent since" in said[-1].message
    finally:
        stop(demo)
