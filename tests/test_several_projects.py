"""A team whose Dagster location holds two dbt projects: jaffle_shop (seeds, its own prefix)
and the Fivetran-style ticket_analytics (a source package installed by `dbt deps`, freshness
rules, incremental models), each `@dbt_assets` with a DbtCliResource under its own key. One
`with_rescue` gives each project its own rescue_job and sensors, named after it; each sensor
advances only its project's rescues; what is shared (the step and proof jobs, the report)
serves both."""

import os
import shutil
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets

from rescue_defs import rescues
from rescue_defs.api import with_rescue
from rescue_defs.project import load_dbt_project
from tests.conftest import FIXTURES
from tests.helpers import (
    PrefixTranslator,
    drive_rescue,
    evaluate_rescue_sensor,
    evaluate_sensor,
    execute_request,
    materialize_all,
    outage_ticker,
    rescue_id_of,
    start_rescue,
)
from tests.tickets import DDL, RAW, Landing, install_packages, synced_after

SHOP, TICKETS = "jaffle_shop", "ticket_analytics"


@pytest.fixture
def two_projects(tmp_path: Path, warehouse: Path, monkeypatch) -> tuple[DbtProject, DbtProject]:
    """Both projects on this test's DuckDB file (their schemas apart), the tickets' connector
    with five days landed."""
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    shop = tmp_path / SHOP
    shutil.copytree(FIXTURES / SHOP, shop)
    subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), "parse", "--quiet"],
        cwd=shop,
        env={**os.environ, "DBT_PROFILES_DIR": str(shop)},
        check=True,
    )
    root, profiles = install_packages(tmp_path, "duckdb", str(warehouse))
    landing = Landing("duckdb", str(warehouse))
    landing.run([(sql, []) for sql in DDL])
    landing.run(
        [
            (f'insert into {RAW}."user" values (%s, %s, %s)', [i, f"u{i}", datetime(2026, 1, 1)])
            for i in range(1, 5)
        ]
    )
    for n in range(5):
        day = date(2026, 2, 1) + timedelta(days=n)
        landing.land_day(day, synced_after(day))
    monkeypatch.setenv("RESCUE_NOW", "2026-02-06T06:00:00")
    monkeypatch.setenv("RESCUE_FRESHNESS_INTERVAL_SECONDS", "0")
    tickets = load_dbt_project(str(root / TICKETS), str(profiles))
    return DbtProject(project_dir=shop, profiles_dir=shop), tickets


def team_definitions(shop: DbtProject, tickets: DbtProject) -> dg.Definitions:
    @dbt_assets(
        manifest=shop.manifest_path, project=shop, dagster_dbt_translator=PrefixTranslator("shop")
    )
    def shop_models(context: dg.AssetExecutionContext, dbt_shop: DbtCliResource):
        yield from dbt_shop.cli(["build"], context=context).stream()

    @dbt_assets(manifest=tickets.manifest_path, project=tickets)
    def ticket_models(context: dg.AssetExecutionContext, dbt_tickets: DbtCliResource):
        yield from dbt_tickets.cli(["build"], context=context).stream()

    return dg.Definitions(
        assets=[shop_models, ticket_models],
        resources={
            "dbt_shop": DbtCliResource(project_dir=shop),
            "dbt_tickets": DbtCliResource(project_dir=tickets),
        },
    )


def test_two_dbt_projects_in_one_location_each_get_their_own_rescue_and_share_the_rest(
    two_projects, instance
):
    defs = with_rescue(team_definitions(*two_projects))
    dg.Definitions.validate_loadable(defs)
    sensors = {s.name for s in defs.sensors}
    jobs = {j.name for j in defs.jobs}
    for project in (SHOP, TICKETS):
        assert {f"{project}_rescue_sensor", f"{project}_merge_sensor"} <= sensors
        assert f"{project}_rescue_job" in jobs
    # only the tickets' sources have freshness rules
    assert f"{TICKETS}_source_outage_sensor" in sensors
    assert f"{SHOP}_source_outage_sensor" not in sensors
    assert {"rescue_report_sensor"} <= sensors
    assert {"rescue_step_job", "cancel_rescue_job"} <= jobs
    assert materialize_all(defs, instance).success

    # each project's freshness is measured with its own dbt resource, by its own sensor
    assert outage_ticker(defs, instance, TICKETS)() == []
    # each merge_sensor keeps its own project's deployed manifest (the instance's storage)
    for project in (SHOP, TICKETS):
        first = evaluate_sensor(defs, instance, f"{project}_merge_sensor")
        assert "first deployment recorded" in first.skip_message
    for project, dbt_project in zip((SHOP, TICKETS), two_projects, strict=True):
        index = f"rescue/deployed_manifests/{project}/{Path(dbt_project.target_path).name}"
        assert instance.run_storage.get_cursor_values({index}).get(index), index

    shop_id = rescue_id_of(start_rescue(defs, instance, SHOP, select="stg_orders+"))
    tickets_id = rescue_id_of(
        start_rescue(defs, instance, TICKETS, select="tickets__ticket_enhanced+")
    )
    assert rescues.load(instance, shop_id)["project"] == SHOP
    # the tickets' sensor launches the tickets' rescue and leaves the shop's to its own
    asked = evaluate_rescue_sensor(defs, instance, f"{TICKETS}_rescue_sensor").run_requests
    assert {r.tags[rescues.TAG_ID] for r in asked} == {tickets_id}
    for request in asked:
        assert execute_request(defs, instance, request).success

    for rescue_id, project in ((shop_id, SHOP), (tickets_id, TICKETS)):
        record = drive_rescue(
            defs, instance, rescue_id, max_ticks=16, sensor=f"{project}_rescue_sensor"
        )
        assert record["status"] == rescues.SUCCEEDED, record["message"]
        built = rescues.materialized(
            instance, (r.run_id for r in rescues.step_runs(instance, rescue_id))
        )
        assert len(built) == len(record["plan"]["models"]), built
    shop_built = rescues.materialized(
        instance, (r.run_id for r in rescues.step_runs(instance, shop_id))
    )
    assert dg.AssetKey(["shop", "orders"]) in shop_built
    assert rescues.load(instance, tickets_id)["proof"]["status"] == "equal"

    # the shared report sensor evaluates both rescues' verdicts
    report = evaluate_sensor(defs, instance, "rescue_report_sensor")
    assert {r.tags["rescue/report_of"] for r in report.run_requests} == {shop_id, tickets_id}
    for request in report.run_requests:
        assert execute_request(defs, instance, request).success
