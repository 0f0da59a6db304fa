"""merge_sensor, the playbook's post-merge rebuild, on a copy of the bundled project whose code
the tests edit as a merge would: a formatting-only change launches nothing and says so, a change
of logic rescues exactly `changed+`, a `unique_key` change gets a full refresh, a merge during
the scheduled pipeline waits for it, and a replayed tick registers nothing twice. Outage and
merge rescues of overlapping lineage never get overlapping runs."""

import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test
from dagster_dbt.dbt_manifest import read_manifest_path

from rescue_defs import rescues
from rescue_defs.assets.dbt import load_manifest, model_asset_keys, selector_for
from rescue_defs.automation.launch import TAG_MANIFEST, launch
from rescue_defs.definitions import build_definitions
from rescue_defs.demo.pipeline import DAILY_PIPELINE_JOB
from rescue_defs.planning.plan import PlanRequest
from rescue_defs.project import BUNDLED_PROJECT_DIR, load_dbt_project
from tests.conftest import prepare
from tests.helpers import (
    create_postgres_database,
    drop_postgres_database,
    evaluate_rescue_sensor,
)


@pytest.fixture(scope="module")
def parsed_copy(tmp_path_factory) -> Path:
    """The bundled project copied and parsed once (its partial parse makes re-parses quick)."""
    root = tmp_path_factory.mktemp("merge") / "shop"
    shutil.copytree(BUNDLED_PROJECT_DIR, root, ignore=shutil.ignore_patterns("logs"))
    prepare(root, root.parent / "parse.duckdb")
    return root


class Deployment:
    """A project folder whose code is edited, parsed and deployed as a merge would be; each
    deployment is a fresh code location (no cached manifest), as after a reload."""

    def __init__(self, folder: Path, instance: dg.DagsterInstance):
        self.folder, self.instance = folder, instance
        self.cursor: str | None = None
        self.cursors: list[str | None] = []
        # the first deployment is the code parsed_copy parsed: its manifest came with the copy
        self.defs = self._load(parse=False)

    def _load(self, parse: bool = True) -> dg.Definitions:
        read_manifest_path.cache_clear()  # dagster-dbt's, which load_manifest reads
        load_manifest.cache_clear()
        selector_for.cache_clear()
        load_dbt_project.cache_clear()
        project = load_dbt_project(str(self.folder))
        if parse:
            project.preparer.prepare(project)
        return build_definitions(project)

    def edit(self, model: str, change) -> None:
        path = next(self.folder.glob(f"models/**/{model}.sql"))
        path.write_text(change(path.read_text()))
        self.defs = self._load()

    def tick(self, cursor: str | None = "saved") -> dg.SensorResult:
        sensor = self.defs.resolve_sensor_def("merge_sensor")
        given = self.cursor if cursor == "saved" else cursor
        with dg.build_sensor_context(
            instance=self.instance, definitions=self.defs, cursor=given
        ) as context:
            result = sensor.evaluate_tick(context)
        if cursor == "saved" and result.cursor not in (None, self.cursor):
            self.cursors.append(self.cursor)
            self.cursor = result.cursor
        assert not result.run_requests  # merge_sensor registers; rescue_sensor launches
        return result

    @property
    def manifest(self):
        project = load_dbt_project(str(self.folder))
        return load_manifest(str(project.manifest_path), str(project.project_dir))

    def selected(self, selection: str) -> set[str]:
        """What dbt's own selector makes of a selection: the truth to compare with."""
        project = load_dbt_project(str(self.folder))
        selector = selector_for(str(project.manifest_path), str(project.project_dir))
        return set(selector.resolve(selection).models) - self.manifest.ephemeral


@pytest.fixture
def deployment(parsed_copy, tmp_path, instance, warehouse) -> Deployment:
    folder = tmp_path / "shop"
    shutil.copytree(parsed_copy, folder)
    return Deployment(folder, instance)


def _comment_and_reformat(sql: str) -> str:
    sql = "-- reviewed in PR #42: no change of logic\n{# a jinja note #}\n" + sql
    return sql.replace("    o.order_id,\n    o.customer_id,", "    o.order_id,  o.customer_id,")


def _change_logic(sql: str) -> str:
    assert "coalesce(t.units, 0) as units" in sql
    return sql.replace("coalesce(t.units, 0) as units", "coalesce(t.units, 0) * 1 as units")


def test_a_formatting_change_launches_nothing_and_says_so(deployment):
    assert "first deployment recorded" in deployment.tick().skip_message
    assert "unchanged" in deployment.tick().skip_message
    deployment.edit("int_orders_enriched", _comment_and_reformat)
    said = deployment.tick().skip_message
    assert "no model's logic did" in said, said
    assert "comments or formatting only: int_orders_enriched" in said, said
    assert rescues.rescue_ids(deployment.instance) == []
    assert "unchanged" in deployment.tick().skip_message  # the new code is now the deployed one


def test_a_logic_change_rescues_exactly_the_changed_model_and_its_downstream(deployment):
    deployment.tick()
    deployment.edit("int_orders_enriched", _change_logic)
    said = deployment.tick().skip_message
    (rescue_id,) = rescues.rescue_ids(deployment.instance)
    assert rescue_id.startswith("merge-") and f"rescue {rescue_id} registered" in said, said
    record = rescues.load(deployment.instance, rescue_id)
    assert record["reason"] == "merge" and record["auto"]
    assert record["trigger"]["changed"] == ["int_orders_enriched"]
    assert set(record["plan"]["models"]) == deployment.selected("int_orders_enriched+")
    assert record["tags"][TAG_MANIFEST] == record["trigger"]["checksum"][:12]
    # nothing typed by anyone: the plan is not blocked and rescue_sensor launches its first run
    requests = evaluate_rescue_sensor(deployment.defs, deployment.instance).run_requests
    assert requests and all(r.tags[rescues.TAG_REASON] == "merge" for r in requests)
    assert all(r.tags[TAG_MANIFEST] == record["tags"][TAG_MANIFEST] for r in requests)
    report = rescues.report_markdown(
        deployment.instance, record, model_asset_keys(deployment.manifest)
    )
    assert "launched by merge_sensor" in report and "int_orders_enriched" in report

    # idempotent: more ticks, and a tick replayed from the cursor it had before the merge (a
    # daemon that crashed before saving it), register nothing new
    for _ in range(5):
        assert "unchanged" in deployment.tick().skip_message
    replay = deployment.tick(cursor=deployment.cursors[-1])
    assert f"rescue {rescue_id} was already registered" in replay.skip_message
    assert rescues.rescue_ids(deployment.instance) == [rescue_id]


@contextmanager
def home_on_postgres(database: str) -> Iterator[dg.DagsterInstance]:
    """A Dagster home of its own (a new container's empty disk) on shared Postgres storage."""
    db = {"username": "postgres", "password": "", "hostname": "127.0.0.1", "db_name": database}
    db["scheme"] = "postgresql+psycopg2"  # SQLAlchemy 2.1 would pick psycopg 3
    with dg.instance_for_test(overrides={"storage": {"postgres": {"postgres_db": db}}}) as inst:
        yield inst


def test_a_merge_is_found_by_a_daemon_whose_disk_is_new(deployment):
    """The deployed manifest is in the instance's storage: the daemon's container restarting
    with an empty disk between two deployments still compares the merge with the last one."""
    database = create_postgres_database("merge")
    try:
        with home_on_postgres(database) as first:
            deployment.instance = first
            assert "first deployment recorded" in deployment.tick().skip_message
            written = {p.name for p in Path(first.root_directory).iterdir()}
        deployment.edit("int_orders_enriched", _change_logic)
        with home_on_postgres(database) as restarted:
            assert restarted.root_directory != first.root_directory
            deployment.instance = restarted
            said = deployment.tick().skip_message
            (rescue_id,) = rescues.rescue_ids(restarted)
            assert f"rescue {rescue_id} registered" in said, said
            assert rescues.load(restarted, rescue_id)["trigger"]["changed"] == [
                "int_orders_enriched"
            ]
        assert "rescue" not in written, written  # nothing of ours on the first home's disk
    finally:
        drop_postgres_database(database)


def test_a_unique_key_change_gets_a_full_refresh(deployment):
    deployment.tick()
    deployment.edit(
        "fct_orders",
        lambda sql: sql.replace("unique_key='order_id'", "unique_key=['order_id', 'customer_id']"),
    )
    deployment.tick()
    (rescue_id,) = rescues.rescue_ids(deployment.instance)
    record = rescues.load(deployment.instance, rescue_id)
    assert set(record["plan"]["models"]) == deployment.selected("fct_orders+")
    fct_orders = next(m for m in record["plan"]["models"] if m.endswith(".fct_orders"))
    assert record["plan"]["full_refresh"] == [fct_orders]
    advice = json.dumps(record["plan"]["advice"])
    assert "unique_key" in advice, advice
    assert "configs" in record["trigger"]["aspects"]["fct_orders"]


def test_a_merge_during_the_scheduled_pipeline_waits_for_it_to_end(deployment, monkeypatch):
    deployment.tick()
    pipeline = create_run_for_test(
        deployment.instance, job_name=DAILY_PIPELINE_JOB, status=dg.DagsterRunStatus.STARTED
    )
    deployment.edit("int_orders_enriched", _change_logic)
    said = deployment.tick().skip_message
    assert f"waiting for {DAILY_PIPELINE_JOB} run {pipeline.run_id[:8]} to end" in said, said
    assert rescues.rescue_ids(deployment.instance) == []
    deployment.instance.report_run_failed(pipeline)
    # ended at 01:58 UTC: the rescue (several minutes expected) cannot finish before the next
    # cycle at 02:00, and the record says so
    monkeypatch.setenv("RESCUE_NOW", "2026-03-04T01:58:00")
    said = deployment.tick().skip_message
    (rescue_id,) = rescues.rescue_ids(deployment.instance)
    warnings = rescues.load(deployment.instance, rescue_id)["warnings"]
    assert len(warnings) == 1 and "does not fit before daily_pipeline_schedule" in warnings[0]
    assert "does not fit" in said


def test_outage_and_merge_rescues_of_one_lineage_never_write_a_table_at_once(deployment):
    """Both register through the same path; rescue_sensor alone launches, and it never
    requests a run over models another run (requested or in flight) writes."""
    deployment.tick()
    deployment.edit("int_orders_enriched", _change_logic)
    deployment.tick()
    project = load_dbt_project(str(deployment.folder))
    outage, _ = launch(
        deployment.instance,
        project,
        PlanRequest(select="source:raw.orders+", reason="outage"),
        "outage-test-incident",
        {
            "kind": "outage",
            "incident": "test",
            "sources": ["raw.orders"],
            "down_since": "2026-03-02T06:00:00",
            "opened_at": "2026-03-04T02:00:00",
            "recovered_at": "2026-03-05T02:00:00",
        },
        {},
    )
    records = [
        rescues.load(deployment.instance, i) for i in rescues.rescue_ids(deployment.instance)
    ]
    assert len(records) == 2
    models = [{m for s in r["steps"] for m in s["models"]} for r in records]
    assert models[0] & models[1], "the two rescues share part of their lineage"

    # the daemon's part, without dbt: each requested run is put in flight; after a tick that
    # requested nothing, the oldest one ends (as the one-at-a-time queue would)
    in_flight: dict[str, set[dg.AssetKey]] = {}
    launched: set[tuple[str, str]] = set()
    waited = []
    for _ in range(40):
        result = evaluate_rescue_sensor(deployment.defs, deployment.instance)
        for request in result.run_requests or []:
            mine = set(request.asset_selection)
            for other in in_flight.values():
                assert not mine & other, f"two runs writing {mine & other} at once"
            run = create_run_for_test(
                deployment.instance,
                job_name=request.job_name,
                asset_selection=frozenset(mine),
                tags=request.tags,
                status=dg.DagsterRunStatus.STARTED,
            )
            in_flight[run.run_id] = mine
            # one run may build several steps of a rescue, stage after stage
            launched |= {
                (request.tags[rescues.TAG_ID], str(index))
                for index, _ in rescues.covered_steps(run)
            }
        waited += [
            m
            for r in records
            if " waits: " in (m := rescues.load(deployment.instance, r["id"])["message"])
        ]
        if not in_flight and not result.run_requests:
            break
        if in_flight and not result.run_requests:
            oldest = next(iter(in_flight))
            deployment.instance.report_dagster_event(
                dg.DagsterEvent(
                    event_type_value=dg.DagsterEventType.RUN_SUCCESS.value,
                    job_name=rescues.STEP_JOB,
                ),
                run_id=oldest,
            )
            del in_flight[oldest]
    every_step = {(r["id"], str(s["index"])) for r in records for s in r["steps"]}
    assert launched == every_step, "each step of both rescues ran, one writer at a time"
    assert any("a run requested in this tick writes" in m for m in waited), waited
    assert any(re.search(r"waits: run [0-9a-f]{8} \(rescue_step_job, started\)", m) for m in waited)
    assert outage["id"] in {r["id"] for r in records}


def test_code_reverted_and_merged_again_is_rescued_each_time(deployment):
    deployment.tick()
    original = next(deployment.folder.glob("models/**/int_orders_enriched.sql")).read_text()
    deployment.edit("int_orders_enriched", _change_logic)
    deployment.tick()
    deployment.edit("int_orders_enriched", lambda _: original)  # the revert
    deployment.tick()
    deployment.edit("int_orders_enriched", _change_logic)  # merged again
    deployment.tick()
    ids = rescues.rescue_ids(deployment.instance)
    assert len(ids) == 3, ids
    checksums = [rescues.load(deployment.instance, i)["trigger"]["checksum"] for i in ids]
    assert checksums[0] == checksums[2] != checksums[1]
