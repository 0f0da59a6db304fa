"""The bundled warehouse: sources land by day, dbt builds on them, outages behave like outages."""

import shutil
from datetime import date, datetime, timedelta

import dagster as dg
import duckdb
import pytest
from dagster_dbt import DbtCliResource

from rescue_defs.demo import generator
from rescue_defs.demo.raw import load_source, raw_asset_key, raw_sources
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
    # every check but the proof, which runs only in a rescue's runs, and source
    # freshness, measured by its own queued runs (source_freshness_job) once loads committed
    from rescue_defs.checks.freshness import FRESHNESS_CHECK
    from rescue_defs.checks.proof import PROOF_CHECK

    proofs = {k for k in graph.asset_check_keys if k.name == PROOF_CHECK}
    assert len(proofs) == 3  # the three incremental models
    fresh = {k for k in graph.asset_check_keys if k.name == FRESHNESS_CHECK}
    assert len(fresh) == 5  # every source but the product catalogue (freshness: null)
    # and the product's records (rescue_succeeded, incident_is_resolved): evaluated per rescue
    # and per incident, never by a materialization
    records = {k for k in graph.asset_check_keys if graph.get(k.asset_key).group_name == "rescue"}
    assert len(records) == 2
    assert len(checks) == len(graph.asset_check_keys) - len(proofs) - len(fresh) - 2 > 60
    assert query(warehouse, "select max(order_date) from analytics.fct_orders") == [
        (date(2026, 1, 20),)
    ]
    (orders,) = query(warehouse, "select count(*) from analytics.fct_orders")[0]
    assert orders > 300
    # the source tests and the two-model singular test are checks too, and nothing is noise
    names = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert ("raw/orders", "source_not_null_raw_orders_order_id") in names
    assert ("fct_daily_revenue", "assert_daily_revenue_reconciles_with_orders") in names
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    unyielded = [m for m in messages if "did not yield or return expected outputs" in m]
    # the proof's checks belong to the dbt assets' own step (no step of their own); a plain
    # run leaves them unevaluated, and says which
    dbt_step = [m for m in unyielded if "op 'dbt_models'" in m]
    assert len(dbt_step) == 1 and all(
        f"'{k.asset_key.to_user_string()}_{PROOF_CHECK}'" in dbt_step[0] for k in proofs
    ), dbt_step
    assert all(m in dbt_step or "op 'source_freshness'" in m for m in unyielded), unyielded
    # nothing of the proof runs in it: the plan has the same steps as without rescue
    steps = {e.step_key for e in result.all_events if e.step_key}
    assert "rescue_proof" not in steps and "dbt_models" in steps
    assert any("source freshness is measured by source_freshness_job runs" in m for m in messages)
    assert not [m for m in messages if "instead of an `AssetCheckResult`" in m]


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
        reported = {
            e.asset_key: e.materialization.metadata
            for e in result.get_asset_materialization_events()
        }
        # the down source is reported as a load attempt that landed nothing
        assert reported[orders]["source_down"].value is True
        assert reported[orders]["rows_landed"].value == 0
        assert reported[raw_asset_key("payments")]["source_down"].value is False
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
        result = materialize_all(shop_defs, instance, raw_config(through, down), False)
        # with a source down the healthy lineages still build (the checks of lineages stale
        # beyond their allowed lag fail the run); on healthy days everything passes
        assert result.success or down, through
        assert result.get_asset_materialization_events(), through

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


def test_with_a_source_down_the_daily_pipeline_builds_every_other_lineage_and_checks_say_why(
    shop_defs, instance, warehouse
):
    pipeline = shop_defs.resolve_job_def("daily_pipeline_job")
    assert pipeline.execute_in_process(instance=instance, run_config=raw_config("2026-01-10"))
    result = pipeline.execute_in_process(
        instance=instance,
        run_config=raw_config("2026-01-12", down=("orders",)),
        raise_on_error=False,
    )
    skipped = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_SKIPPED]
    assert skipped == [], "the dbt step must not be skipped because one source is down"
    built = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    # lineages that never touch orders are rebuilt with the new days
    assert {"stg_web_events", "fct_page_views", "fct_sessions", "dim_products"} <= built
    assert query(warehouse, "select max(event_date) from analytics.fct_page_views") == [
        (date(2026, 1, 12),)
    ]
    assert query(warehouse, "select max(batch_date) from raw.orders") == [(date(2026, 1, 10),)]
    # the marts fed by orders fail their max-date check, naming the source behind
    evaluations = {
        (
            e.asset_check_evaluation_data.asset_key.to_user_string(),
            e.asset_check_evaluation_data.check_name,
        ): e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    }
    fct_orders = evaluations[("fct_orders", "max_date_is_current")]
    assert not fct_orders.passed and "behind: raw.orders last loaded 2026-01-10" in (
        fct_orders.description
    )
    # a healthy source is never named as behind (the static product catalogue included)
    for data in evaluations.values():
        assert "raw.products last loaded" not in (data.description or "")
        assert "raw.payments last loaded" not in (data.description or "")
    assert evaluations[("fct_page_views", "max_date_is_current")].passed
    # and the run says it did not all go well
    assert not result.success


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (raw_config("2026-01-05"), "before what is already loaded"),
        (raw_config("2099-12-31"), "in the future"),
        (raw_config("2026-01-12", late_returns=-5), "late_returns must be 0 to 1000"),
        (raw_config("2026-01-12", late_returns=10_000_000), "late_returns must be 0 to 1000"),
        (raw_config("12/01/2026"), "must be YYYY-MM-DD"),
    ],
)
def test_loader_inputs_that_cannot_be_right_are_refused_and_land_nothing(
    shop_defs, instance, warehouse, monkeypatch, config, message
):
    monkeypatch.setenv("RESCUE_TODAY", "2026-01-20")
    loader = dg.Definitions(
        assets=[raw_sources], resources=shop_defs.resources
    ).resolve_implicit_global_asset_job_def()
    assert loader.execute_in_process(instance=instance, run_config=raw_config("2026-01-10"))
    before = query(warehouse, "select count(*) from raw.orders")
    result = loader.execute_in_process(instance=instance, run_config=config, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert message in str(failure.step_failure_data.error.message)
    assert query(warehouse, "select count(*) from raw.orders") == before
