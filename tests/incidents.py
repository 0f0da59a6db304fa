"""Randomized incidents on one Dagster home: seeded schedules of days of the daily pipeline with
outages (1-3 sources, 1-5 days), late returns (corrections to 40-60 day old orders) and the
on-call engineer's rescues with the default advice, two at once sometimes. After every rescue:
every model equals a from-scratch build of the same raw data, and every claim of the rescue's
record, status lines and report is backed by the event log.

Used by tests/test_incidents.py (a few seeds) and bench/incident_soak.py (many).
"""

import os
import random
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
from dagster_dbt import DbtCliResource

from rescue_defs import rescues
from rescue_defs.assets.dbt import load_manifest, model_asset_keys
from tests.helpers import (
    evaluate_rescue_sensor,
    execute_request,
    kill_child_dbt,
    raw_config,
    rescue_id_of,
    rows_differing,
    start_rescue,
)

STAGING = {
    "customers": "stg_customers",
    "products": "stg_products",
    "orders": "stg_orders stg_order_status_changes",
    "order_items": "stg_order_items",
    "payments": "stg_payments",
    "web_events": "stg_web_events",
}
OUTAGE_SOURCES = ("customers", "orders", "order_items", "payments", "web_events")


@dataclass
class Day:
    through: date
    down: tuple[str, ...] = ()
    late_returns: int = 0
    rescues: list[str] = field(default_factory=list)
    """Selections the on-call engineer launches after the day's pipeline, all in one tick."""
    kill: bool = False
    """dbt is killed in the middle of the first rescue run; the engineer resumes."""


def schedule(seed: int, days: int = 8) -> list[Day]:
    """A seeded incident schedule: loads by day, outages of 1-3 sources (1-5 days each), late
    corrections; the engineer rescues once nothing is down any more (a rescue while a source
    is still down fails its checks, rightly), sometimes two rescues at once."""
    rng = random.Random(seed)
    day = date(2026, 2, 10) + timedelta(days=rng.randrange(0, 30))
    out = [Day(day)]
    down: dict[str, int] = {}
    recovered: list[str] = []
    corrected = False
    while len(out) < days:
        day += timedelta(days=rng.choice((1, 1, 2, 3)))
        if not down and rng.random() < 0.5:
            for source in rng.sample(OUTAGE_SOURCES, rng.randint(1, 3)):
                down[source] = rng.randint(1, 5)
        else:
            for source in [s for s, left in down.items() if left <= 0]:
                del down[source]
                recovered.append(source)
        late = rng.choice((0, 0, 0, 3, 8))
        corrected = corrected or (late > 0 and "orders" not in down)
        selections = []
        if not down:
            if recovered:
                selections.append(" ".join(f"{m}+" for s in recovered for m in STAGING[s].split()))
            if corrected:
                selections.append("stg_order_status_changes+ stg_payments+")
            if len(selections) == 2 and rng.random() < 0.5:
                selections = [" ".join(selections)]  # one rescue for both, or two at once
            recovered, corrected = [], False
        kill = bool(selections) and rng.random() < 0.5
        out.append(Day(day, tuple(sorted(down)), late, selections, kill))
        down = {s: left - 1 for s, left in down.items()}
    return out


class Incidents:
    def __init__(self, defs: dg.Definitions, project, warehouse: Path, workdir: Path):
        self.defs, self.project, self.warehouse, self.workdir = defs, project, warehouse, workdir
        manifest = load_manifest(str(project.manifest_path), str(project.project_dir))
        self.keys = model_asset_keys(manifest)
        self.checked = 0
        self.resumed_after_kill = 0

    def live(self, days: list[Day]) -> list[dict]:
        ended = []
        for day in days:
            with dg.DagsterInstance.get() as instance:
                pipeline = self.defs.resolve_job_def("daily_pipeline_job")
                pipeline.execute_in_process(
                    instance=instance,
                    run_config=raw_config(str(day.through), day.down, day.late_returns),
                    raise_on_error=False,
                )
                if day.rescues:
                    ids = [
                        rescue_id_of(start_rescue(self.defs, instance, select=s, reason="incident"))
                        for s in day.rescues
                    ]
                    ended += [self._drive(instance, ids, day.kill)]
        return ended

    def _drive(self, instance, ids: list[str], kill: bool) -> dict:
        killed: str | None = None  # the rescue whose first run had dbt killed
        for _ in range(40):
            result = evaluate_rescue_sensor(self.defs, instance)
            for request in result.run_requests or []:
                if kill and killed is None:
                    killed = self._run_and_kill_dbt(instance, request)
                else:
                    execute_request(self.defs, instance, request)
            if killed and rescues.load(instance, killed)["status"] == rescues.FAILED:
                rescues.resume(instance, killed, self.keys)  # the engineer resumes, once
                self.resumed_after_kill += 1
                kill, killed = False, ""
            records = [rescues.load(instance, i) for i in ids]
            if all(r["status"] != rescues.ACTIVE for r in records):
                break
        for record in records:
            self.assert_claims_hold(instance, record)
        self.assert_every_model_equals_a_clean_build()
        return {r["id"]: r["status"] for r in records}

    def _run_and_kill_dbt(self, instance, request) -> str:
        """Run a stage and kill its dbt process once it has built a few models."""
        rescue_id = request.tags[rescues.TAG_ID]
        worker = threading.Thread(target=execute_request, args=(self.defs, instance, request))
        worker.start()
        deadline = time.monotonic() + 120
        try:
            while worker.is_alive() and time.monotonic() < deadline:
                runs = instance.get_runs(filters=dg.RunsFilter(tags={rescues.TAG_ID: rescue_id}))
                if len(rescues.materialized(instance, (r.run_id for r in runs))) >= 2:
                    kill_child_dbt()
                    break
                time.sleep(0.05)
        finally:  # never leave the run going into the next test
            worker.join()
        return rescue_id

    def assert_claims_hold(self, instance, record: dict) -> None:
        assert record["status"] == rescues.SUCCEEDED, (record["id"], record["message"])
        outcomes = rescues.model_outcomes(
            instance, rescues.step_runs(instance, record["id"]), self.keys
        )
        planned = [m for step in record["steps"] for m in step["models"]]
        # "succeeded" means: every planned model rebuilt by one of its runs and validated there
        assert all(outcomes[m].rebuilt and outcomes[m].validated for m in planned), record["id"]
        lines = rescues.status_lines(instance, record["id"], self.keys)
        assert f"{len(planned)}/{len(planned)} rebuilt" in lines[1], lines
        report = rescues.report_markdown(instance, record, self.keys)
        assert f"{len(planned)}/{len(planned)} rebuilt, {len(planned)} validated" in report
        proof = record.get("proof")
        if proof:
            assert proof["status"] == "equal", proof
            assert "equal to a from-scratch build" in report

    def assert_every_model_equals_a_clean_build(self) -> None:
        self.checked += 1
        clean = self.workdir / f"clean-{self.checked}" / "warehouse.duckdb"
        clean.parent.mkdir(parents=True)
        shutil.copy(self.warehouse, clean)
        dbt = DbtCliResource(project_dir=self.project)
        before = os.environ["RESCUE_DUCKDB_PATH"]
        os.environ["RESCUE_DUCKDB_PATH"] = str(clean)
        try:
            invocation = dbt.cli(["run", "--full-refresh", "--quiet"], raise_on_error=False)
            assert invocation.wait().is_successful()
        finally:
            os.environ["RESCUE_DUCKDB_PATH"] = before
        with duckdb.connect(str(self.warehouse), read_only=True) as conn:
            tables = [
                f"{s}.{t}"
                for s, t in conn.execute(
                    "select table_schema, table_name from information_schema.tables "
                    "where table_schema not in ('raw', 'information_schema')"
                ).fetchall()
            ]
        differing = {t: rows_differing(self.warehouse, clean, t) for t in tables}
        assert not any(differing.values()), differing
        shutil.rmtree(clean.parent)
