"""Day two, as users live it: ONE Dagster home (a real DAGSTER_HOME directory, SQLite as the
demo's; Postgres storage lives through a real deployment in test_team_deployment.py) through
days of the daily pipeline with an outage, and a
dozen rescues through the CLI and rescue_job: a dry run, a failing one resumed, a canceled one,
two at once on disjoint lineages, two at once on the same lineage. Every rescue is found by
`rescue status` with the counts the event log backs, has its report, and rescue_sensor never
errors."""

import re
import shutil
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test

from rescue_defs import cli, rescues
from tests.helpers import (
    evaluate_rescue_sensor,
    execute_request,
    postgres_storage_yaml,
    raw_config,
    rescue_id_of,
    start_rescue,
)

REPO = Path(__file__).resolve().parent.parent


# runs execute in the test's process, some with dbt killed on purpose: Dagster's stdout capture
# (a `tail -F` per step) outlives such a run, and the test process; nothing reads them
NO_COMPUTE_LOGS = (
    "\ncompute_logs:\n  module: dagster._core.storage.noop_compute_log_manager"
    "\n  class: NoOpComputeLogManager\n"
)


def make_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database: str | None) -> Path:
    """The demo's dagster.yaml in a real home directory; with a database, storage on Postgres."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    with (home / "dagster.yaml").open("a") as f:
        f.write(NO_COMPUTE_LOGS)
    if database:
        with (home / "dagster.yaml").open("a") as f:
            f.write(postgres_storage_yaml(database))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


class Home:
    """What the users and the daemon do to the one home; each opens its own instance."""

    def __init__(self, defs, project_dir: str, capsys):
        self.defs, self.project, self.capsys = defs, ["--project-dir", project_dir], capsys
        self.ticks = 0

    def day(self, through: str, down: tuple[str, ...] = ()) -> bool:
        pipeline = self.defs.resolve_job_def("daily_pipeline_job")
        with dg.DagsterInstance.get() as instance:
            result = pipeline.execute_in_process(
                instance=instance, run_config=raw_config(through, down), raise_on_error=False
            )
        return result.success

    def cli(self, *args: str) -> tuple[int, str]:
        self.capsys.readouterr()
        code = cli.main([*args, *self.project])
        captured = self.capsys.readouterr()
        return code, captured.out + captured.err

    def launch(self, select: str, *extra: str) -> str:
        code, out = self.cli("launch", "--select", select, "--reason", "soak", *extra)
        assert code == 0, out
        return re.search(r"^rescue (\S+): (active|dry_run)$", out, re.M).group(1)

    def from_launchpad(self, **config) -> str:
        with dg.DagsterInstance.get() as instance:
            started = start_rescue(self.defs, instance, **config)
        assert started.success
        return rescue_id_of(started)

    def tick(self, run=True) -> list[dg.RunRequest]:
        """One daemon tick of rescue_sensor (it must never error), then the runs it asked for."""
        with dg.DagsterInstance.get() as instance:
            result = evaluate_rescue_sensor(self.defs, instance)
            self.ticks += 1
            requests = list(result.run_requests or [])
            for request in requests if run else ():
                execute_request(self.defs, instance, request)
        return requests

    def settle(self, *ids: str, ticks: int = 12) -> None:
        for _ in range(ticks):
            if all(self.record(i)["status"] != rescues.ACTIVE for i in ids):
                return
            self.tick()
        raise AssertionError(f"still active after {ticks} ticks: {ids}")

    def record(self, rescue_id: str) -> dict:
        with dg.DagsterInstance.get() as instance:
            return rescues.load(instance, rescue_id)

    def status(self, rescue_id: str) -> str:
        code, out = self.cli("status", rescue_id)
        assert code == 0, out
        return out


def _planned(record) -> int:
    return sum(len(step["models"]) for step in record["steps"])


def test_one_sqlite_dagster_home_lives_through_days_of_pipelines_and_a_dozen_rescues(
    tmp_path, monkeypatch, shop_defs, shop_project, capsys
):
    make_home(tmp_path, monkeypatch, database=None)
    # what the soak lives through is the rescues' life on one home; the from-scratch proof
    # after rescues on one home runs in test_incidents.py (after every rescue of a seeded schedule)
    monkeypatch.setenv("RESCUE_PROOF", "off")
    live_through_days_and_rescues(Home(shop_defs, str(shop_project.project_dir), capsys))


def live_through_days_and_rescues(home: "Home") -> None:
    """The soak itself, on whatever storage the home has."""
    expected: dict[str, str] = {}

    assert home.day("2026-01-05")
    dry = home.launch("fct_orders", "--dry-run")
    expected[dry] = rescues.DRY_RUN
    first = home.launch("+fct_daily_revenue", "--single-stage")
    home.settle(first)
    expected[first] = rescues.SUCCEEDED

    # orders go down for two days: the pipeline still builds the rest; one day behind is within
    # the allowed lag, two days fail the marts' blocking max-date checks
    assert home.day("2026-01-06", down=("orders",))
    assert not home.day("2026-01-07", down=("orders",))
    web = home.from_launchpad(select="fct_page_views", reason="soak")
    home.settle(web)
    expected[web] = rescues.SUCCEEDED
    # a rescue of the orders lineage during the outage fails its blocking max-date check
    failing = home.launch("+fct_orders", "--single-stage")
    home.settle(failing)
    assert home.record(failing)["status"] == rescues.FAILED
    assert "blocking checks failed" in home.record(failing)["message"]

    # orders recover; the failed rescue is resumed and now passes
    assert home.day("2026-01-08")
    code, out = home.cli("resume", failing)
    assert code == 0, out
    home.settle(failing)
    expected[failing] = rescues.SUCCEEDED
    with dg.DagsterInstance.get() as instance:
        reasons = {
            r.tags[rescues.TAG_REASON]
            for r in rescues.step_runs(instance, failing)
            if rescues.TAG_STEP in r.tags
        }
    assert reasons == {"soak", "resume"}

    # a rescue canceled while it waits for the scheduled pipeline writing its models
    with dg.DagsterInstance.get() as instance:
        pipeline = create_run_for_test(
            instance, job_name="daily_pipeline_job", status=dg.DagsterRunStatus.STARTED
        )
    canceled = home.launch("+dim_customers", "--single-stage", "--force")
    assert home.tick() == []
    assert "waits: run " in home.record(canceled)["message"]
    code, out = home.cli("cancel", canceled)
    assert code == 0, out
    assert "canceled (cli); no run was in flight" in out
    with dg.DagsterInstance.get() as instance:
        instance.report_run_failed(instance.get_run_by_id(pipeline.run_id))
    assert home.tick() == []  # the pipeline is gone, but a canceled rescue launches nothing
    expected[canceled] = rescues.CANCELED
    code, out = home.cli("cancel", canceled)
    assert code == 2 and "already canceled" in out

    # two at once on disjoint lineages: one tick starts both
    a = home.launch("fct_page_views")
    b = home.from_launchpad(select="fct_daily_revenue", reason="soak")
    requests = home.tick()
    assert {r.tags[rescues.TAG_ID] for r in requests} == {a, b}
    home.settle(a, b)
    expected[a] = expected[b] = rescues.SUCCEEDED

    # two at once on the same model: never two runs writing it in one tick
    c = home.launch("fct_orders")
    d = home.launch("fct_orders+", "--single-stage")
    first_tick = home.tick()
    assert len(first_tick) == 1, [r.tags for r in first_tick]
    home.settle(c, d)
    expected[c] = expected[d] = rescues.SUCCEEDED

    # a dry run from the launchpad (the three-stage path is in test_rescue_runs.py)
    planned_only = home.from_launchpad(select="+int_orders_enriched+", dry_run=True)
    expected[planned_only] = rescues.DRY_RUN
    assert len(expected) >= 10

    # every rescue is found, with the counts its runs' events back
    code, listing = home.cli("status")
    assert code == 0
    for rescue_id, status in expected.items():
        record = home.record(rescue_id)
        assert record["status"] == status, (rescue_id, record["message"])
        assert re.search(rf"^{rescue_id}\s+{status}\b", listing, re.M), listing
        out = home.status(rescue_id)
        n = _planned(record)
        rebuilt = n if status == rescues.SUCCEEDED else 0
        assert f"{rebuilt}/{n} rebuilt" in out, out
        if status == rescues.SUCCEEDED:
            assert f"{n}/{n} validated" in out, out
    with dg.DagsterInstance.get() as instance:
        assert rescues.active_ids(instance) == []
        assert set(rescues.rescue_ids(instance)) == set(expected)
        for rescue_id, status in expected.items():
            event = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=rescues.REPORT_ASSET, asset_partitions=[rescue_id]),
                limit=1,
            ).records[0]
            assert event.asset_materialization.metadata["status"].value == status
    # a quiet sensor: nothing left to launch, ever
    for _ in range(5):
        assert home.tick() == []
