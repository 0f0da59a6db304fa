"""Outage detection on a project we did not write, whose source is loaded outside Dagster: the
jaffle-shop fixture plus a `landing.web_visits` source that this test loads with plain SQL (as a
Fivetran or COPY job would; no loader asset, no materialization of the source). Freshness is
measured in the warehouse by `dbt source freshness` in queued runs; source_outage_sensor sees
the outage, then the recovery, and its rescue rebuilds what reads the source."""

import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.test_utils import create_run_for_test

from rescue_defs import rescues
from rescue_defs.assets.incidents import (
    INCIDENT_ASSET,
    INCIDENT_IS_RESOLVED,
    incident_url,
)
from rescue_defs.automation.launch import TAG_INCIDENT
from rescue_defs.checks.freshness import FRESHNESS_CHECK
from rescue_defs.definitions import build_definitions
from rescue_defs.project import load_dbt_project
from tests.conftest import FIXTURES, prepare
from tests.demo_server import served
from tests.helpers import (
    drive_rescue,
    evaluate_sensor,
    execute_request,
    materialize_all,
    outage_ticker,
    query,
)
from tests.test_soak import make_home

SOURCES_YML = """\
version: 2
sources:
  - name: landing
    schema: landing
    description: Web visits, landed hourly by an outside loader.
    loaded_at_field: _loaded_at
    config:
      freshness:
        warn_after: {count: 12, period: hour}
        error_after: {count: 1, period: day}
    tables:
      - name: web_visits
"""
STG_VISITS = (
    "select visit_id, customer_id, visited_at, _loaded_at "
    "from {{ source('landing', 'web_visits') }}\n"
)
CUSTOMER_VISITS = (
    "select customer_id, count(*) as visits, max(visited_at) as last_visit "
    "from {{ ref('stg_web_visits') }} group by customer_id\n"
)


@pytest.fixture(scope="module")
def visits_project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("visits") / "jaffle_shop"
    shutil.copytree(FIXTURES / "jaffle_shop", root)
    (root / "models" / "staging" / "_landing.yml").write_text(SOURCES_YML)
    (root / "models" / "staging" / "stg_web_visits.sql").write_text(STG_VISITS)
    (root / "models" / "customer_visits.sql").write_text(CUSTOMER_VISITS)
    prepare(root, root.parent / "parse.duckdb")
    return root


def incident_shown(instance: dg.DagsterInstance, incident_id: str) -> tuple[str, str]:
    """(status of its source_incidents partition, its incident_is_resolved check's)."""
    latest = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=INCIDENT_ASSET, asset_partitions=[incident_id]), limit=1
    ).records[0]
    check = dg.AssetCheckKey(INCIDENT_ASSET, INCIDENT_IS_RESOLVED)
    (info,) = [
        i
        for i in instance.event_log_storage.get_asset_check_partition_info([check])
        if i.partition_key == incident_id
    ]
    current = info.latest_target_materialization_storage_id == latest.storage_id
    return (
        latest.asset_materialization.metadata["status"].value,
        info.latest_execution_status.value if current else "not current",
    )


def the_incident_is_one_click_from_its_source_and_its_rescue(
    base: str, incident_id: str, rescue_id: str
) -> None:
    from playwright.sync_api import sync_playwright

    from tests.test_demo import _chromium, _dismiss_welcome, _screenshot

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        try:
            # the source's events: the observation that links to its incident
            page.goto(f"{base}/assets/landing/web_visits?view=events")
            _dismiss_welcome(page)
            link = page.locator(f"a[href*='partition={incident_id}']").first
            link.wait_for(timeout=60_000)
            _screenshot(page, "source-events-incident-link")
            href = link.get_attribute("href") or ""
            assert f"/assets/source_incidents?view=partitions&partition={incident_id}" in href
            page.goto(href if href.startswith("http") else base + href)  # it opens a new tab
            # its latest materialization's metadata: the status, and the rescue it caused
            page.locator("tr", has_text="status").filter(has_text="resolved").first.wait_for(
                timeout=60_000
            )
            page.locator(f"a[href*='rescue_report'][href*='{rescue_id}']").first.wait_for(
                timeout=60_000
            )
            _screenshot(page, "incident-partition")
            # the rescue's report links back to it
            page.goto(f"{base}/assets/rescue_report?view=partitions&partition={rescue_id}")
            back = page.locator(f"a[href*='source_incidents'][href*='{incident_id}']").first
            back.wait_for(timeout=60_000)
            _screenshot(page, "report-incident-link")
            # the incidents, told apart by their check
            page.goto(
                f"{base}/assets/source_incidents?view=checks&checkDetail=incident_is_resolved"
            )
            # the check's own tabs, once its detail has loaded (the asset has a Partitions tab too)
            page.get_by_role("tab", name="Execution history").wait_for(timeout=60_000)
            page.get_by_role("tab", name="Partitions").last.click()
            page.get_by_text("Passed (1)").first.wait_for(timeout=60_000)
            _screenshot(page, "incident-check-partitions")
        except Exception:
            _screenshot(page, "incident-test-failed")
            raise
        finally:
            browser.close()


def latest_report(instance: dg.DagsterInstance, rescue_id: str) -> str:
    latest = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=rescues.REPORT_ASSET, asset_partitions=[rescue_id]), limit=1
    ).records[0]
    return latest.asset_materialization.metadata["report"].value


def land(warehouse: Path, day: str, visits: int, loaded_at: str) -> None:
    """The outside loader: one day's visits, in one transaction, with bound parameters."""
    first = datetime.fromisoformat(day)
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute("create schema if not exists landing")
        conn.execute(
            "create table if not exists landing.web_visits (visit_id varchar, customer_id "
            "integer, visited_at timestamp, _loaded_at timestamp)"
        )
        conn.executemany(
            "insert into landing.web_visits values (?, ?, ?, ?)",
            [
                (f"{day}-{i}", 1 + i % 4, first + timedelta(minutes=7 * i), loaded_at)
                for i in range(visits)
            ],
        )


def freshness(instance, key: dg.AssetKey) -> dg.AssetCheckEvaluation:
    record = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(key, FRESHNESS_CHECK), limit=1
    )[0]
    return record.event.dagster_event.asset_check_evaluation_data


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A real Dagster home (the demo's dagster.yaml), so that `dagster dev` can serve it after."""
    make_home(tmp_path, monkeypatch, None)
    with dg.DagsterInstance.get() as instance:
        yield instance


def test_outage_of_a_source_loaded_outside_dagster_is_seen_and_rescued(
    visits_project, instance, warehouse, monkeypatch
):
    monkeypatch.setenv("RESCUE_DBT_PROJECT_DIR", str(visits_project))
    monkeypatch.setenv("RESCUE_FRESHNESS_INTERVAL_SECONDS", "0")  # measure on every tick
    defs = build_definitions(load_dbt_project(str(visits_project)))
    source = dg.AssetKey(["landing", "web_visits"])
    assert source in defs.resolve_asset_graph().get_all_asset_keys()
    tick = outage_ticker(defs, instance)

    monkeypatch.setenv("RESCUE_NOW", "2026-03-01T06:00:00")
    land(warehouse, "2026-03-01", 20, "2026-03-01T05:00:00")
    assert materialize_all(defs, instance).success
    assert query(warehouse, "select sum(visits) from main.customer_visits") == [(20,)]
    assert tick() == []
    assert freshness(instance, source).passed

    # the loader stops: a day later the source is past error_after, an incident opens
    monkeypatch.setenv("RESCUE_NOW", "2026-03-02T06:00:00")
    incidents = tick()
    check = freshness(instance, source)
    assert not check.passed and check.metadata["status"].value == "error"
    assert check.metadata["down_since"].value == "2026-03-01T05:00:00"
    assert "landing.web_visits is down" in (check.description or "")
    (incident,) = incidents
    assert list(incident["sources"]) == ["landing.web_visits"]
    assert incident["sources"]["landing.web_visits"]["down_since"] == "2026-03-01T05:00:00"
    assert rescues.rescue_ids(instance) == [], "nothing is launched while the source is down"
    # on call, it is in the UI: a partition of source_incidents, its check failing, and a link
    # to it on the source's page
    assert incident_shown(instance, incident["id"]) == ("down", "FAILED")
    observed = instance.fetch_observations(source, limit=1).records[0].asset_observation
    assert observed.metadata["incident"].value == incident_url(incident["id"])

    # it recovers with the backlog: fresh again, one rescue of what reads it
    land(warehouse, "2026-03-02", 15, "2026-03-03T04:30:00")
    land(warehouse, "2026-03-03", 5, "2026-03-03T04:30:00")
    monkeypatch.setenv("RESCUE_NOW", "2026-03-03T05:00:00")
    assert tick() == [], "the incident is closed by its rescue"
    assert freshness(instance, source).passed
    (rescue_id,) = rescues.rescue_ids(instance)
    assert rescue_id == f"outage-{incident['id']}-r20260303050000"
    record = rescues.load(instance, rescue_id)
    assert record["reason"] == "outage" and record["trigger"]["sources"] == ["landing.web_visits"]
    assert {record["names"][m] for m in record["plan"]["models"]} == {
        "stg_web_visits",
        "customer_visits",
    }
    assert record["tags"][TAG_INCIDENT] == record["trigger"]["incident"]
    assert incident_shown(instance, incident["id"]) == ("rescuing", "FAILED")
    ended = drive_rescue(defs, instance, rescue_id)
    assert ended["status"] == rescues.SUCCEEDED, ended["message"]
    # the rescue's end resolves the incident (rescue_report_sensor's run)
    for request in evaluate_sensor(defs, instance, "rescue_report_sensor").run_requests:
        assert execute_request(defs, instance, request).success
    assert incident_shown(instance, incident["id"]) == ("resolved", "SUCCEEDED")
    observed = instance.fetch_observations(source, limit=1).records[0].asset_observation
    assert observed.metadata["incident_status"].value == "resolved"  # not the stale "rescuing"
    assert "## Next run\n\n- not yet" in latest_report(instance, rescue_id)

    # a busy instance: other teams' jobs finish many runs before the next pipeline run
    for _ in range(60):
        create_run_for_test(
            instance, job_name="other_teams_job", status=dg.DagsterRunStatus.SUCCESS
        )
    # the next pipeline run builds the rescued models again: the report says it confirmed them
    assert materialize_all(defs, instance).success
    again = evaluate_sensor(defs, instance, "rescue_report_sensor").run_requests
    record = rescues.load(instance, rescue_id)
    assert record["confirmation"]["verdict"] == "confirmed", record["confirmation"]
    assert record["confirmation"]["rebuilt"] == 2
    assert "- confirmed by run " in latest_report(instance, rescue_id)
    # its check is evaluated again against the new report, still passing
    assert [r.tags["rescue/report_of"] for r in again] == [rescue_id]
    for request in again:
        assert execute_request(defs, instance, request).success
    assert not evaluate_sensor(defs, instance, "rescue_report_sensor").run_requests
    assert query(warehouse, "select sum(visits) from main.customer_visits") == [(40,)]
    # the incident is closed: more ticks register nothing more
    tick()
    assert rescues.rescue_ids(instance) == [rescue_id]

    # where on-call people look: the same home in the UI, in a real headless Chromium
    monkeypatch.delenv("RESCUE_FRESHNESS_INTERVAL_SECONDS")
    log = Path(os.environ["DAGSTER_HOME"]) / "dagster-dev.log"
    with served(dict(os.environ), log) as demo:
        base = demo.url
        the_incident_is_one_click_from_its_source_and_its_rescue(base, incident["id"], rescue_id)
