"""W: the README's walk-through in the UI, timed. A fresh `./dev demo` (its own Dagster home and
warehouse), then the four days launched as the launchpad launches them (`daily_pipeline_job`
through the webserver), each followed by what the daemon does on its own (source_outage_sensor's
freshness run, the incident, the rescue). Prints, per day, how long it took and what the UI
shows: the pipeline run's status, its failed checks, the freshness checks, the incidents, and at
the end the rescue's status line. The README's walk-through quotes these figures.

Run: .venv/bin/python bench/walkthrough.py
"""

import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests import demo_server  # noqa: E402  (./dev demo started and stopped as the tests do)
from tests.demo_server import LAUNCH, wait_for  # noqa: E402

DAYS = [
    {"through_date": "2026-03-02"},
    {"through_date": "2026-03-03", "sources_down": ["orders", "web_events"]},
    {"through_date": "2026-03-04", "sources_down": ["orders", "web_events"]},
    {"through_date": "2026-03-05", "late_returns": 5},
]
ENDED = ("SUCCESS", "FAILURE", "CANCELED")
LOCATION = (
    "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"
)


def failed_checks(instance, run_id: str) -> list[str]:
    import dagster as dg

    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    failed = []
    for record in records:
        data = record.dagster_event.asset_check_evaluation_data
        if not data.passed:
            failed.append(f"{data.asset_key.to_user_string()}:{data.check_name}")
    return sorted(failed)


def freshness_after(instance, since: float, timeout: float, log) -> tuple[str, list[str]]:
    """The first source_freshness_job run created after `since`, once ended: status, failures."""
    import dagster as dg

    def ended():
        runs = instance.get_run_records(
            dg.RunsFilter(
                job_name="source_freshness_job",
                statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE],
            )
        )
        later = [r for r in runs if r.create_timestamp.timestamp() > since]
        return later and min(later, key=lambda r: r.create_timestamp)

    record = wait_for(ended, timeout, "the freshness run", log)
    return record.dagster_run.status.value, failed_checks(instance, record.dagster_run.run_id)


def incidents(instance) -> list[str]:
    import dagster as dg

    shown = []
    for incident_id in instance.get_dynamic_partitions("incidents"):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey("source_incidents"), asset_partitions=[incident_id]
            ),
            limit=1,
        ).records
        event = records[0].event_log_entry.asset_materialization if records else None
        status = event.metadata["status"].value if event else "?"
        shown.append(f"{incident_id}: {status}")
    return shown


def main() -> None:
    import dagster as dg

    from rescue_defs import rescues

    root = Path(tempfile.mkdtemp(prefix="walkthrough-"))
    home = root / "dagster_home"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "RESCUE_DUCKDB_PATH": str(root / "warehouse.duckdb"),
    }
    os.environ["DAGSTER_HOME"] = str(home)
    log = root / "dagster-dev.log"
    start = time.monotonic()
    demo = demo_server.start(env, log)
    try:
        client = demo.client()
        repo = wait_for(
            lambda: client._execute(LOCATION)["repositoriesOrError"]["nodes"][0], 180, "the UI", log
        )
        print(f"UI up after {time.monotonic() - start:.0f} s (log: {log})")
        instance = dg.DagsterInstance.get()
        walk = time.monotonic()
        for day, config in enumerate(DAYS, start=1):
            began = time.monotonic()
            params = {
                "selector": {
                    "repositoryLocationName": repo["location"]["name"],
                    "repositoryName": repo["name"],
                    "jobName": "daily_pipeline_job",
                },
                "runConfigData": {"ops": {"raw_sources": {"config": config}}},
            }
            launched = client._execute(LAUNCH, {"params": params})["launchRun"]
            assert launched["__typename"] == "LaunchRunSuccess", launched
            run_id = launched["run"]["runId"]
            status = wait_for(
                lambda run_id=run_id: (s := client.get_run_status(run_id).value) in ENDED and s,
                900,
                "the run",
                log,
            )
            # the sensor measures after the load, which lands at the run's start: the first
            # freshness run created after the raw tables landed (maybe while dbt still builds)
            landed = max(
                r.timestamp
                for r in instance.all_logs(
                    run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
                )
                if r.dagster_event.asset_key.path[0] == "raw"
            )
            print(f"\nday {day} {config}")
            print(f"  pipeline run {status} after {time.monotonic() - began:.0f} s")
            print(f"  failed checks: {failed_checks(instance, run_id) or 'none'}")
            fresh, failures = freshness_after(instance, landed, 300, log)
            print(f"  freshness run {fresh}; failed: {failures or 'none'}")
            if day == len(DAYS):
                rescue_id = wait_for(lambda: rescues.rescue_ids(instance), 300, "the rescue", log)[
                    0
                ]
                record = wait_for(
                    lambda rescue_id=rescue_id: (
                        (r := rescues.load(instance, rescue_id))["status"] != rescues.ACTIVE and r
                    ),
                    1800,
                    "the rescue's end",
                    log,
                )
                print(f"  rescue {rescue_id}: {record['status']}: {record['message']}")
                ended = time.monotonic()
                wait_for(
                    lambda: all(i.endswith("resolved") for i in incidents(instance)),
                    300,
                    "the incident to read resolved",
                    log,
                )
                print(f"  incident resolved {time.monotonic() - ended:.0f} s after the rescue")
            print(f"  incidents: {incidents(instance) or 'none'}")
            print(f"  day {day} took {time.monotonic() - began:.0f} s")
        print(f"\nfour days and the rescue: {(time.monotonic() - walk) / 60:.1f} min")
    finally:
        demo_server.stop(demo)


if __name__ == "__main__":
    main()
