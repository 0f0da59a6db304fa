"""Rows that land late for periods an incremental model's window has moved past.

The scenario of issue 11, item 1: orders down 2026-02-24..03-01 under the daily pipeline, then
recovery, then returns of 40-60 day old orders landing on 03-05 and 03-08. The monthly revenue
model restates only the latest months: January stays wrong unless someone knows to refresh it.
"""

import shutil

import duckdb
from dagster_dbt import DbtCliResource

from rescue_defs import rescues
from rescue_defs.checks.coverage import COVERAGE_CHECK
from tests.helpers import (
    checks_of,
    drive_rescue,
    execute_request,
    materialize_all,
    query,
    raw_config,
    rescue_id_of,
    rows_differing,
    start_rescue,
)

MONTHLY = "fct_monthly_revenue"


def _tables(path) -> list[str]:
    rows = query(
        path,
        "select table_schema || '.' || table_name from information_schema.tables "
        "where table_schema not in ('raw', 'information_schema') order by 1",
    )
    return [r[0] for r in rows]


def test_late_returns_fail_the_window_check_and_a_default_rescue_ends_equal_to_a_clean_build(
    shop_defs, shop_project, instance, warehouse, tmp_path, monkeypatch
):
    days = [
        ("2026-02-23", (), 0),
        ("2026-03-01", ("orders",), 0),
        ("2026-03-02", (), 0),
        ("2026-03-05", (), 5),
        ("2026-03-08", (), 5),
    ]
    verdicts = {}
    for through, down, late in days:
        result = materialize_all(shop_defs, instance, raw_config(through, down, late), False)
        verdicts[through] = checks_of(result)[(MONTHLY, COVERAGE_CHECK)]

    # the builds before the late returns restated everything that changed
    for day in ("2026-02-23", "2026-03-01", "2026-03-02"):
        assert verdicts[day].passed, (day, verdicts[day].description)
    # the 03-05 build restated February and March only: January's returns were left out
    missed = verdicts["2026-03-05"]
    assert not missed.passed
    assert "2026-01" in missed.description and "raw.orders" in missed.description
    assert missed.metadata["late_first"].value.startswith("2026-01")
    # and the model stays flagged by later normal builds, which never restate January
    assert not verdicts["2026-03-08"].passed
    assert verdicts["2026-03-08"].metadata["late_rows"].value > missed.metadata["late_rows"].value

    # a rescue with the default advice: no --changed-from typed by hand
    started = start_rescue(shop_defs, instance, select="stg_order_status_changes+ stg_payments+")
    rescue_id = rescue_id_of(started)
    record = rescues.load(instance, rescue_id)
    monthly = next(m for m in record["plan"]["models"] if m.endswith("fct_monthly_revenue"))
    advice = record["plan"]["advice"][monthly]
    assert advice["advice"] == "full refresh", advice
    assert "landed after its monthly window" in advice["reasons"][0]
    assert monthly in record["plan"]["full_refresh"]

    record = drive_rescue(shop_defs, instance, rescue_id)
    assert record["status"] == rescues.SUCCEEDED, record.get("message")
    # the proof: every incremental model of the rescue rebuilt from scratch and compared, in
    # the run that built the rescue's last stage (no proof run of its own)
    assert record["proof"]["status"] == "equal", record["proof"]
    runs = [r for r in rescues.step_runs(instance, rescue_id) if r.job_name != "rescue_job"]
    assert [r.job_name for r in runs] == ["rescue_step_job"], runs
    assert record["proof"]["run_id"] == runs[0].run_id
    assert "equal a from-scratch build" in record["message"]
    report = rescues.report_markdown(instance, record, _keys(shop_project))
    assert "equal to a from-scratch build" in report
    assert "fct_monthly_revenue: equal to a from-scratch build" in report
    latest = instance.event_log_storage.get_asset_check_execution_history(
        _check_key(shop_defs, MONTHLY), limit=1
    )[0]
    assert latest.event.dagster_event.event_specific_data.passed  # full refresh cleared it

    # the oracle: the same raw data, every model built from scratch
    clean = tmp_path / "clean" / "warehouse.duckdb"
    clean.parent.mkdir()
    shutil.copy(warehouse, clean)
    monkeypatch.setenv("RESCUE_DUCKDB_PATH", str(clean))
    assert DbtCliResource(project_dir=shop_project).cli(["build", "--full-refresh"]).is_successful()
    tables = _tables(warehouse)
    assert "analytics.fct_monthly_revenue" in tables
    differing = {t: rows_differing(warehouse, clean, t) for t in tables}
    assert not any(differing.values()), differing


def _keys(project):
    from rescue_defs.assets.dbt import load_manifest, model_asset_keys

    return model_asset_keys(load_manifest(str(project.manifest_path), str(project.project_dir)))


def _check_key(defs, asset: str):
    import dagster as dg

    return dg.AssetCheckKey(dg.AssetKey(asset.split("/")), COVERAGE_CHECK)


def test_a_rescued_table_that_differs_from_a_clean_build_is_rebuilt_by_the_rescue_itself(
    shop_defs, shop_project, instance, warehouse
):
    assert materialize_all(shop_defs, instance, raw_config("2026-01-20")).success
    # a bad manual delete of old rows: an incremental (merge) run never brings them back
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute(
            "delete from analytics.fct_orders where order_id in (select order_id from "
            "analytics.fct_orders where order_date = date '2026-01-03' order by 1 limit 3)"
        )
    rescue_id = rescue_id_of(start_rescue(shop_defs, instance, select="fct_orders"))
    while_escalated: list[str] = []

    def run(defs, instance, request):
        # what an engineer opening the report sees while the rescue rebuilds and proves again
        now = rescues.load(instance, rescue_id)
        if now.get("proof_history") and now["status"] == rescues.ACTIVE:
            while_escalated.append(rescues.report_markdown(instance, now, _keys(shop_project)))
        execute_request(defs, instance, request)

    record = drive_rescue(shop_defs, instance, rescue_id, on_request=run)
    # the first proof saw the difference; the rescue rebuilt it with --full-refresh and proved
    # it again, without anyone typing `rescue resume`
    assert record["status"] == rescues.SUCCEEDED, record["message"]
    (first,) = record["proof_history"]
    assert first["status"] == "differs"
    verdict = first["verdicts"]["fct_orders"]
    assert "3 only in the rebuild" in verdict and "2026-01: 0 rescued-only / 3" in verdict
    assert record["proof"]["status"] == "equal" and record["proof"]["attempt"] == 1
    assert record["steps"][0]["full_refresh"] == [record["steps"][0]["models"][0]]
    assert list(record["escalated"]) == record["steps"][0]["models"]
    report = rescues.report_markdown(instance, record, _keys(shop_project))
    assert "proof 1: differs" in report and "proof 2: equal" in report
    assert "rebuilt with --full-refresh by the rescue itself" in report
    # meanwhile the first proof's verdicts were shown as that proof's, never as the current one
    assert while_escalated
    for shown in while_escalated:
        assert "- proof 2: pending" in shown or "- proof 2: running" in shown, shown
        assert "\n- fct_orders: differs" not in shown, shown
    # nothing of the proof's scratch schema is left behind
    schemas = query(warehouse, "select distinct schema_name from information_schema.schemata")
    assert not [s for (s,) in schemas if "rescue_proof" in s]
