"""Late rows outside a windowed model's window: the record each build keeps, and the advice."""

from datetime import date, datetime

import duckdb
import pytest

from rescue_defs.checks.coverage import Late, coverage_verdict, window_rules
from rescue_defs.planning.advice import FULL, INCREMENTAL
from rescue_defs.planning.plan import PlanRequest

MONTHLY = "model.shop.fct_monthly_revenue"


@pytest.fixture
def monthly(shop_manifest):
    return window_rules(shop_manifest.raw)[MONTHLY]


def test_only_incremental_models_on_a_calendar_window_are_tracked_with_their_dated_sources(
    shop_manifest, monthly
):
    assert set(window_rules(shop_manifest.raw)) == {MONTHLY}
    assert {s.name: s.date_column for s in monthly.sources} == {
        "raw.orders": "order_date",
        "raw.payments": "paid_at",
    }
    assert monthly.undated == ()  # order_items and products say they have no business date


def _orders(conn, rows):
    conn.execute("create schema if not exists raw")
    conn.execute("create table if not exists raw.orders (order_date date, loaded_at timestamp)")
    conn.executemany("insert into raw.orders values (?, ?)", rows)


@pytest.fixture
def warehouse_conn(monthly):
    conn = duckdb.connect(":memory:")
    conn.execute("create schema raw")
    conn.execute("create table raw.payments (paid_at timestamp, loaded_at timestamp)")
    yield conn
    conn.close()


def _local(rule):
    import dataclasses

    return dataclasses.replace(
        rule,
        sources=tuple(
            dataclasses.replace(s, relation=dataclasses.replace(s.relation, database=None))
            for s in rule.sources
        ),
    )


def test_rows_landed_after_the_window_moved_past_them_are_missed_and_carried_until_a_full_refresh(
    monthly, warehouse_conn
):
    rule, conn = _local(monthly), warehouse_conn
    query = lambda sql, params: conn.execute(sql, params).fetchone()  # noqa: E731
    _orders(conn, [(date(2026, 2, 20), datetime(2026, 2, 20, 6))])
    first = coverage_verdict(rule, query, None, False, date(2026, 2, 1), "?")
    assert first.passed and "first recorded build" in first.description

    # a normal day: new rows are inside the window (from January: the model's latest is Feb)
    _orders(conn, [(date(2026, 2, 21), datetime(2026, 2, 21, 6))])
    normal = coverage_verdict(rule, query, first.metadata, False, date(2026, 2, 1), "?")
    assert normal.passed, normal.description
    assert normal.metadata["window_start"] == "2026-01-01"

    # a return of an old order lands once the model has reached March: window from February
    march = coverage_verdict(rule, query, normal.metadata, False, date(2026, 3, 1), "?")
    _orders(conn, [(date(2026, 1, 14), datetime(2026, 3, 5, 6))])
    missed = coverage_verdict(rule, query, march.metadata, False, date(2026, 3, 1), "?")
    assert not missed.passed
    assert Late.from_meta(missed.metadata) == Late(date(2026, 1, 14), date(2026, 1, 14), 1)
    assert "1 row(s) dated 2026-01-14" in missed.description

    # a later normal build does not restate January: still missed
    again = coverage_verdict(rule, query, missed.metadata, False, date(2026, 3, 1), "?")
    assert not again.passed and again.metadata["late_rows"] == 1
    # a full refresh does
    refreshed = coverage_verdict(rule, query, again.metadata, True, date(2026, 3, 1), "?")
    assert refreshed.passed and "full refresh" in refreshed.description


def test_measured_late_rows_turn_the_advice_into_a_full_refresh_and_say_why(shop_planner):
    request = PlanRequest(select="fct_monthly_revenue", today=date(2026, 3, 8))
    late = Late(date(2026, 1, 14), date(2026, 1, 24), 5)
    plan = shop_planner.plan(request, late={MONTHLY: late})
    assert plan.advice[MONTHLY].kind == FULL
    assert "5 row(s) dated 2026-01-14..2026-01-24" in plan.advice[MONTHLY].reasons[0]
    assert MONTHLY in plan.full_refresh

    nothing_late = shop_planner.plan(request, late={})
    assert nothing_late.advice[MONTHLY].kind == INCREMENTAL
    assert "no row landed late" in nothing_late.advice[MONTHLY].reasons[0]

    unmeasured = shop_planner.plan(request, late=None, late_note="warehouse busy: PID 42")
    assert "not measured" in unmeasured.advice[MONTHLY].reasons[0]
    item = next(i for i in unmeasured.checklist if i.key == "incremental")
    assert "warehouse busy: PID 42" in item.reason
