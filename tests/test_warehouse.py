"""The bundled warehouse: sources land by day, dbt builds on them, outages behave like outages."""

import shutil
from datetime import date, datetime, timedelta

import dagster as dg
import duckdb
from dagster_dbt import DbtCliResource

from rescue_defs.assets import generator
from rescue_defs.assets.raw import load_source, raw_asset_key, raw_sources
from tests.helpers import failed_checks, materialize_all, query, raw_config, rows_differing

INCREMENTAL_MODELS = ("fct_orders", "fct_page_views", "fct_monthly_revenue")


def test_landed_rows_do_not_depend_on_how_days_are_batched():
    loaded_at = datetime(2026, 2, 1)
    at_once, day_by_day = duckdb.connect(), duckdb.connect()
    for source in generator.SOURCES:
        load_source(at_once, source, date(2026, 1, 20), loaded_at)
        for day in range(8, 21, 4):
            load_source(day_by_day, source, date(2026, 1, day), loaded_at)
        columns = ", ".join(generator.COLUMNS[source])
        sql = f"select {columns}, batch_date from raw.{source} order by all"
        assert at_once.sql(sql).fetchall() == day_by_day.sql(sql).fetchall(), source


def test_sources_carry_late_rows_like_real_ones():
    days = [date(2026, 1, 10) + timedelta(days=i) for i in range(10)]
    late = {r[3] for d in days for r in generator.rows_arriving("orders", d) if r[2] < d}
    # orders placed just before midnight land the next day; status changes land days later
    assert late == {"placed", "shipped", "completed", "returned"}
    refunds = [r for d in days for r in generator.rows_arriving("payments", d) if r[3] < 0]
    assert refunds
    ids = [r[0] for d in days for r in generator.rows_arriving("web_events", d)]
    assert len(ids) == len(set(ids)) > 1000


def test_materializing_everything_builds_every_model_and_every_dbt_test_passes(
    shop_defs, instance, warehouse
):
    result = materialize_all(shop_defs, instance, raw_config("2026-01-20"))
    assert result.success
    assert failed_checks(result) == []
    graph = shop_defs.resolve_asset_graph()
    for key in graph.materializable_asset_keys:
        assert instance.get_latest_materialization_event(key) is not None, key
    checks = [
        e for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    assert len(checks) == len(graph.asset_check_keys) > 60
    assert query(warehouse, "select max(order_date) from analytics.fct_orders") == [
        (date(2026, 1, 20),)
    ]
    (orders,) = query(warehouse, "select count(*) from analytics.fct_orders")[0]
    assert orders > 300


def test_an_outage_lands_nothing_and_recovery_lands_the_backlog(shop_defs, instance, warehouse):
    loader = dg.Definitions(
        assets=[raw_sources], resources=shop_defs.resources
    ).resolve_implicit_global_asset_job_def()

    def load(through: str, down=()):
        return loader.execute_in_process(instance=instance, run_config=raw_config(through, down))

    assert load("2026-01-10").success
    orders = raw_asset_key("orders")
    before = query(warehouse, "select count(*), max(batch_date) from raw.orders")
    for day in ("2026-01-11", "2026-01-12", "2026-01-13"):
        result = load(day, down=("orders",))
        assert result.success
        landed = {e.asset_key for e in result.get_asset_materialization_events()}
        assert orders not in landed and raw_asset_key("payments") in landed
    assert query(warehouse, "select count(*), max(batch_date) from raw.orders") == before

    recovery = load("2026-01-14")
    backlog = sum(
        len(generator.rows_arriving("orders", date(2026, 1, 11) + timedelta(days=i)))
        for i in range(4)
    )
    assert query(warehouse, "select count(*) - ?, max(batch_date) from raw.orders", [backlog]) == [
        (before[0][0], date(2026, 1, 14))
    ]
    event = instance.get_latest_materialization_event(orders)
    assert event.run_id == recovery.run_id
    assert event.asset_materialization.metadata["rows_landed"].value == backlog


def test_incremental_models_equal_a_full_refresh_after_daily_runs_through_an_outage(
    shop_defs, shop_project, instance, warehouse, tmp_path, monkeypatch
):
    # daily runs across a month boundary; sources go down and recover in the middle
    days = [
        ("2026-01-28", ()),
        ("2026-01-30", ("payments", "web_events")),
        ("2026-01-31", ("orders",)),
        ("2026-02-02", ()),
    ]
    for through, down in days:
        result = materialize_all(shop_defs, instance, raw_config(through, down))
        assert result.success, through

    # the oracle: the same raw data, every model built from scratch, in a copy
    rebuilt = tmp_path / "rebuilt.duckdb"
    shutil.copy(warehouse, rebuilt)
    monkeypatch.setenv("RESCUE_DUCKDB_PATH", str(rebuilt))
    dbt = DbtCliResource(project_dir=shop_project)
    assert dbt.cli(["build", "--full-refresh"]).is_successful()

    for model in INCREMENTAL_MODELS:
        (incremental_rows,) = query(warehouse, f"select count(*) from analytics.{model}")[0]
        assert incremental_rows > 0
        assert rows_differing(warehouse, rebuilt, f"analytics.{model}") == 0, model
