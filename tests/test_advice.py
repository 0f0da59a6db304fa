"""Refresh advice from pairs of manifests: the bundled project before and after an edit."""

import shutil
from datetime import date
from pathlib import Path

import pytest
from dbt.cli.main import dbtRunner

from rescue_defs.planning.advice import FULL, INCREMENTAL, WINDOW
from rescue_defs.planning.cost import History
from rescue_defs.planning.manifest import DbtManifest
from rescue_defs.planning.plan import Planner, PlanRequest
from rescue_defs.project import BUNDLED_PROJECT_DIR

MARTS = Path("models") / "marts"


def _edited_manifest(tmp: Path, edits: dict[str, list[tuple[str, str]]]) -> DbtManifest:
    """Copy the bundled project, apply (old, new) text edits per file, parse with dbt."""
    project = tmp / "project"
    shutil.copytree(BUNDLED_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    for rel, replacements in edits.items():
        path = project / rel
        text = path.read_text()
        for old, new in replacements:
            assert old in text, f"{old!r} not in {rel}"
            text = text.replace(old, new)
        path.write_text(text)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RESCUE_DUCKDB_PATH", str(tmp / "parse.duckdb"))
        result = dbtRunner().invoke(
            ["parse", "--quiet", "--project-dir", str(project), "--profiles-dir", str(project)]
        )
    assert result.success, result.exception
    return DbtManifest.load(project / "target" / "manifest.json", project)


@pytest.fixture(scope="module")
def change_a(tmp_path_factory) -> DbtManifest:
    """unique_key changed; a column added that exists upstream; logic changed."""
    return _edited_manifest(
        tmp_path_factory.mktemp("change_a"),
        {
            str(MARTS / "fct_orders.sql"): [
                ("unique_key='order_id'", "unique_key=['order_id', 'customer_id']")
            ],
            str(MARTS / "fct_page_views.sql"): [
                ("    page,\n", "    page,\n    session_id as sid,\n    event_type,\n")
            ],
            str(MARTS / "fct_monthly_revenue.sql"): [
                (
                    "sum(net_amount) as net_amount",
                    "sum(net_amount) - sum(refunded_amount) as net_amount",
                )
            ],
        },
    )


@pytest.fixture(scope="module")
def change_b(tmp_path_factory) -> DbtManifest:
    """strategy changed; a column added that has no history upstream."""
    return _edited_manifest(
        tmp_path_factory.mktemp("change_b"),
        {
            str(MARTS / "fct_orders.sql"): [
                ("incremental_strategy='merge'", "incremental_strategy='delete+insert'")
            ],
            str(MARTS / "fct_page_views.sql"): [
                ("    event_date\n", "    event_date,\n    current_date as first_seen_on\n")
            ],
        },
    )


def advice_for(planner: Planner, name: str, previous=None, history=None, **request):
    plan = planner.plan(PlanRequest(name, **request), previous=previous, history=history)
    (advice,) = plan.advice.values()
    return advice, plan


def test_unique_key_change_needs_a_full_refresh(shop_manifest, change_a):
    advice, plan = advice_for(Planner(change_a), "fct_orders", previous=shop_manifest)
    assert advice.kind == FULL and "unique_key changed" in advice.reasons[0]
    assert {plan.name(m) for m in plan.full_refresh} == {"fct_orders"}


def test_strategy_change_needs_a_full_refresh(shop_manifest, change_b):
    advice, _ = advice_for(Planner(change_b), "fct_orders", previous=shop_manifest)
    assert advice.kind == FULL and "incremental_strategy changed" in advice.reasons[0]


def test_sql_logic_change_needs_a_full_refresh(shop_manifest, change_a):
    advice, _ = advice_for(Planner(change_a), "fct_monthly_revenue", previous=shop_manifest)
    assert advice.kind == FULL and "SQL logic changed" in advice.reasons[0]


def test_new_column_that_exists_upstream_needs_a_backfill(shop_manifest, change_a):
    advice, _ = advice_for(Planner(change_a), "fct_page_views", previous=shop_manifest)
    assert advice.kind == FULL
    assert "event_type" in advice.reasons[0] and "stg_web_events" in advice.reasons[0]


def test_new_column_without_history_only_changes_future_rows(shop_manifest, change_b):
    advice, plan = advice_for(Planner(change_b), "fct_page_views", previous=shop_manifest)
    assert advice.kind == INCREMENTAL and "first_seen_on" in advice.reasons[0]
    assert not plan.full_refresh


def test_monthly_window_picks_up_recent_changes_but_not_older_ones(shop_planner):
    today = date(2026, 3, 10)
    recent, _ = advice_for(
        shop_planner,
        "fct_monthly_revenue",
        today=today,
        changed_window=(date(2026, 3, 2), date(2026, 3, 5)),
    )
    assert recent.kind == INCREMENTAL and "window" in recent.reasons[0]
    old, plan = advice_for(
        shop_planner,
        "fct_monthly_revenue",
        today=today,
        changed_window=(date(2026, 1, 20), date(2026, 1, 25)),
    )
    assert old.kind == FULL and "before the monthly refresh window" in old.reasons[0]
    assert next(i for i in plan.checklist if i.key == "incremental").status == "ok"


def test_large_model_with_a_dated_change_gets_a_window_backfill(shop_planner, shop_manifest):
    fct_orders = shop_manifest.by_name["fct_orders"][0]
    window = (date(2026, 3, 1), date(2026, 3, 3))
    advice, plan = advice_for(
        shop_planner,
        "fct_orders",
        changed_window=window,
        history=History(incremental={fct_orders: [900]}),
    )
    assert advice.kind == WINDOW and advice.window == window
    assert "order_date" in advice.reasons[0]
    assert not plan.full_refresh


def test_no_change_means_a_plain_incremental_run(shop_planner, shop_manifest):
    advice, _ = advice_for(shop_planner, "fct_orders", previous=shop_manifest)
    assert advice.kind == INCREMENTAL and "no definition change" in advice.reasons[0]


def test_a_full_refresh_advised_but_switched_off_blocks(shop_manifest, change_a):
    plan = Planner(change_a).plan(
        PlanRequest("fct_orders", full_refresh=False), previous=shop_manifest
    )
    item = next(i for i in plan.checklist if i.key == "full_refresh")
    assert item.status == "block" and "lock in wrong history" in item.reason


def test_an_incremental_filter_the_planner_cannot_see_is_never_called_safe(shop_planner):
    # fct_orders has no meta.rescue cadence: nothing here can rule out rows its filter misses
    advice, plan = advice_for(shop_planner, "fct_orders")
    assert advice.kind == INCREMENTAL and advice.unseen
    assert "unverified until the proof" in advice.reasons[0]
    item = next(i for i in plan.checklist if i.key == "incremental")
    assert item.status == "warn" and "fct_orders" in item.reason
    assert "only the proof after the rescue can tell" in item.reason
    # once it is fully refreshed, neither the advice nor the checklist has anything to doubt
    forced = shop_planner.plan(PlanRequest("fct_orders", full_refresh=True))
    assert next(i for i in forced.checklist if i.key == "incremental").status == "ok"


def test_the_bundled_shop_is_advised_on_its_own_clock_not_the_wall_clock(
    shop_defs, shop_project, instance, monkeypatch
):
    """The demo replays past days: its monthly window is the last load's month (as its
    freshness checks judge), not the machine's."""
    from rescue_defs import rescues
    from rescue_defs.assets.dbt import load_manifest, model_asset_keys
    from tests.helpers import raw_config

    monkeypatch.delenv("RESCUE_TODAY", raising=False)
    job = shop_defs.resolve_implicit_global_asset_job_def()
    keys = shop_defs.resolve_asset_graph().materializable_asset_keys
    raw = [k for k in keys if k.path[0] == "raw"]
    assert job.execute_in_process(
        instance=instance, run_config=raw_config("2026-03-04"), asset_selection=raw
    ).success
    manifest = load_manifest(str(shop_project.manifest_path), str(shop_project.project_dir))
    plan = rescues.plan_for(
        Planner(manifest), instance, PlanRequest("fct_monthly_revenue"), model_asset_keys(manifest)
    )
    assert plan.request.today == date(2026, 3, 4)
    (advice,) = [a for uid, a in plan.advice.items() if uid.endswith(".fct_monthly_revenue")]
    # its window (this month and the one before) counted from the data's March, not today's
    assert "monthly window (from 2026-02-01)" in " ".join(advice.reasons), advice
