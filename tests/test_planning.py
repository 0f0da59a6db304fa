"""Plans: stages, lineage groups, cost and the checklist, on the bundled and real manifests."""

from datetime import UTC, datetime, timedelta

import networkx as nx
import pytest

from rescue_defs.checks.proof import proof_record
from rescue_defs.planning.checklist import ActiveRun, Environment, UpcomingRun
from rescue_defs.planning.cost import TICK_SECONDS, CostModel, History, learn_full_refresh_factor
from rescue_defs.planning.plan import Planner, PlanRequest, PlanSettings
from rescue_defs.planning.selection import Selector
from rescue_defs.planning.stages import StageRule, lineage_groups


def names(manifest, ids) -> set[str]:
    return {manifest.name(m) for m in ids}


def status(plan, key: str) -> str:
    return next(i.status for i in plan.checklist if i.key == key)


def test_deep_selection_runs_upstream_then_target_then_downstream(shop_planner, shop_manifest):
    plan = shop_planner.plan(PlanRequest("+int_orders_enriched+"))
    assert [s.stage for s in plan.steps] == ["upstream", "target", "downstream"]
    upstream, target, downstream = (set(s.models) for s in plan.steps)
    assert names(shop_manifest, target) == {"int_orders_enriched"}
    assert "stg_orders" in names(shop_manifest, upstream)
    assert "mart_executive_daily" in names(shop_manifest, downstream)
    assert plan.steps[1].after == (0,) and plan.steps[2].after == (1,)
    # no stage reads from a later one
    graph = shop_manifest.model_graph
    stage_of = {m: s.index for s in plan.steps for m in s.models}
    for parent, child in graph.subgraph(plan.models).edges:
        assert stage_of[parent] <= stage_of[child]
    assert "layered" in plan.stage_reason


def test_shallow_selection_is_one_stage_and_the_rule_is_configurable(shop_manifest):
    planner = Planner(shop_manifest)
    plan = planner.plan(PlanRequest("fct_orders+1"))
    assert [s.stage for s in plan.steps] == ["all"]
    assert "shallow" in plan.stage_reason
    eager = Planner(shop_manifest, PlanSettings(stages=StageRule(min_depth=2)))
    assert [s.stage for s in eager.plan(PlanRequest("fct_orders+1")).steps] == [
        "target",
        "downstream",
    ]
    assert [s.stage for s in planner.plan(PlanRequest("+fct_orders+", layered=False)).steps] == [
        "all"
    ]


def test_each_stage_selection_resolves_to_exactly_its_models(shop_planner, shop_manifest):
    plan = shop_planner.plan(PlanRequest("int_orders_enriched+ +mart_marketing_attribution+"))
    selector = Selector(shop_manifest)
    for step in plan.steps:
        assert selector.resolve(step.selection).models == set(step.models), step.selection
    assert set().union(*(s.models for s in plan.steps)) == set(plan.models)


def test_outage_of_fifty_staging_models_splits_into_bounded_lineage_groups(big_manifest):
    manifest = big_manifest
    graph = manifest.model_graph
    # the staging layer: models that read only from sources and feed other models
    roots = sorted(m for m in graph if graph.in_degree(m) == 0 and graph.out_degree(m) > 0)
    staging = roots[:: max(1, len(roots) // 60)][:60]
    assert len(staging) >= 50
    affected = frozenset(staging).union(*(nx.descendants(graph, m) for m in staging))
    groups = lineage_groups(manifest, affected, max_models=40)

    owner = {}
    for i, group in enumerate(groups):
        assert 0 < len(group.models) <= 40
        for m in group.models:
            assert m not in owner, f"{m} is in two groups"
            owner[m] = i
    assert set(owner) == affected
    # a group runs after every group that builds one of its parents
    for parent, child in graph.subgraph(affected).edges:
        if owner[parent] != owner[child]:
            assert owner[parent] < owner[child]
            assert owner[parent] in nx.ancestors(_group_dag(groups), owner[child])
    # and each group's selection string is one dbt resolves to exactly that group
    selector = Selector(manifest)
    from rescue_defs.planning.stages import group_selection

    for group in groups:
        selection = group_selection(manifest, group.models)
        assert selector.models(selection) == set(group.models), selection


def _group_dag(groups) -> nx.DiGraph:
    dag = nx.DiGraph()
    dag.add_nodes_from(range(len(groups)))
    dag.add_edges_from((a, i) for i, g in enumerate(groups) for a in g.after)
    return dag


def test_big_stage_becomes_bounded_runs_in_a_plan(big_manifest):
    graph = big_manifest.model_graph
    # a model deep in the middle: many models upstream and downstream of it
    middle = max(
        sorted(graph), key=lambda m: min(len(nx.ancestors(graph, m)), len(nx.descendants(graph, m)))
    )
    planner = Planner(big_manifest)
    plan = planner.plan(PlanRequest(f"+{big_manifest.name(middle)}+"))
    assert {s.stage for s in plan.steps} == {"upstream", "target", "downstream"}
    assert len(plan.steps) >= 3 and all(len(s.models) <= 40 for s in plan.steps)
    assert sorted(m for s in plan.steps for m in s.models) == sorted(plan.models)
    assert not set(plan.models) & big_manifest.ephemeral
    for step in plan.steps:
        assert planner.selector.models(step.selection) == set(step.models)


def test_a_selection_splits_around_its_targets_as_each_targets_own_lineage_splits_it(
    big_manifest,
):
    """The layers and stale consumers come from one walk over the lineage (planning 2,000
    models took ~25 s walking it again for each model): the same parts as per-model walks."""
    import random

    from rescue_defs.planning.lineage import reached
    from rescue_defs.planning.stages import split_layers

    graph = big_manifest.model_graph
    rng = random.Random(27)
    everything = sorted(graph)
    for share in (1.0, 0.4, 0.05):
        models = frozenset(rng.sample(everything, int(len(everything) * share)))
        targets = frozenset(rng.sample(sorted(models), max(1, len(models) // 7)))
        sub = graph.subgraph(models).copy()
        above = set().union(*(nx.ancestors(sub, t) for t in targets))
        below = set().union(*(nx.descendants(sub, t) for t in targets))
        upstream, middle, downstream = split_layers(big_manifest, models, targets)
        assert upstream == above - below - targets
        assert downstream == below - above - targets
        assert middle == models - upstream - downstream
        starts = models - upstream
        assert reached(graph, starts) == set().union(*(nx.descendants(graph, m) for m in starts))
        assert reached(graph, starts, upward=True) == set().union(
            *(nx.ancestors(graph, m) for m in starts)
        )


def test_cost_comes_from_history_and_full_refresh_is_weighted(shop_manifest):
    fct_orders = shop_manifest.by_name["fct_orders"][0]
    fct_page_views = shop_manifest.by_name["fct_page_views"][0]
    history = History(
        incremental={fct_orders: [10, 12, 11], fct_page_views: [4, 4, 4]},
        full_refresh={fct_page_views: [24, 24]},
    )
    assert learn_full_refresh_factor(history) == 6.0
    costs = CostModel(shop_manifest, history)
    assert costs.model(fct_orders).seconds == 11
    assert costs.model(fct_orders, full_refresh=True).seconds == 66
    assert costs.model(fct_page_views, full_refresh=True).seconds == 24
    assert CostModel(shop_manifest).full_refresh_factor == 10.0
    heavy = CostModel(shop_manifest, History(incremental={fct_orders: [400]}))
    assert heavy.model(fct_orders).heavy and not heavy.model(fct_page_views).heavy


def test_a_first_build_with_full_refresh_teaches_every_estimate(shop_manifest):
    # a project's first build through the product is a full refresh: every model it built is
    # marked so, tables and views too, for which --full-refresh changes nothing
    dim_customers = shop_manifest.by_name["dim_customers"][0]
    fct_orders = shop_manifest.by_name["fct_orders"][0]
    costs = CostModel(
        shop_manifest, History(full_refresh={dim_customers: [3.0], fct_orders: [20.0]})
    )
    assert costs.model(dim_customers).seconds == 3.0
    assert costs.model(dim_customers, full_refresh=True).source == "history"
    assert costs.model(fct_orders, full_refresh=True).seconds == 20.0
    normal = costs.model(fct_orders)
    assert normal.seconds == 2.0 and normal.source == "history (full refresh) / 10"


PROOF_ON = {"on": True, "max_seconds": 600, "why_off": ""}


def _incremental_history(shop_manifest) -> History:
    """fct_orders and fct_page_views, each with an incremental run and a full refresh."""
    fct_orders = shop_manifest.by_name["fct_orders"][0]
    fct_page_views = shop_manifest.by_name["fct_page_views"][0]
    return History(
        incremental={fct_orders: [1.0], fct_page_views: [4.0]},
        full_refresh={fct_orders: [2.0], fct_page_views: [24.0]},
    )


def test_the_proof_is_estimated_from_each_models_own_full_refresh(shop_manifest):
    history = _incremental_history(shop_manifest)
    plan = Planner(shop_manifest).plan(
        PlanRequest("fct_orders fct_page_views", full_refresh=False), history=history
    )
    assert plan.full_refresh_factor == 4.0  # the median of 2x and 6x
    assert proof_record(plan, PROOF_ON, sandbox=False)["expected_seconds"] == 26.0


def test_a_full_refresh_too_long_to_build_twice_is_still_proven_by_being_that_build(
    shop_manifest,
):
    fct_page_views = shop_manifest.by_name["fct_page_views"][0]
    history = History(incremental={fct_page_views: [60.0]}, full_refresh={fct_page_views: [900.0]})
    settings = PROOF_ON
    incremental = Planner(shop_manifest).plan(
        PlanRequest("fct_page_views", full_refresh=False), history=history
    )
    assert proof_record(incremental, settings, sandbox=False)["status"] == "skipped"
    refreshed = Planner(shop_manifest).plan(
        PlanRequest("fct_page_views", full_refresh=True), history=history
    )
    record = proof_record(refreshed, settings, sandbox=False)
    # the rescue's own build is the from-scratch one: nothing more to build (the limit of the
    # run that proves still counts what a comparison would cost, if a later run must compare)
    assert record["status"] == "pending" and record["expected_seconds"] == 900.0


def test_checklist_blocks_a_rescue_that_overlaps_a_running_pipeline(shop_planner, shop_manifest):
    now = datetime(2026, 3, 4, 3, 0, tzinfo=UTC)
    fct_orders = shop_manifest.by_name["fct_orders"][0]
    env = Environment(
        now=now,
        known=True,
        active_runs=(ActiveRun("a1b2c3d4e5", "STARTED", frozenset({fct_orders}), "daily"),),
    )
    plan = shop_planner.plan(PlanRequest("+fct_orders+"), env=env)
    assert status(plan, "overlap") == "block"
    reason = next(i.reason for i in plan.checklist if i.key == "overlap")
    assert "a1b2c3d4" in reason
    # what happens, in the words of what is seen: refused, or waiting only when forced
    assert reason.endswith(
        ": launching is refused; forced (`--force`, `force: true`), the rescue waits for it"
    ), reason
    assert plan.blocks

    quiet = shop_planner.plan(PlanRequest("+fct_orders+"), env=Environment(now=now, known=True))
    assert status(quiet, "overlap") == "ok" and status(quiet, "queues") == "ok"

    soon = Environment(
        now=now,
        known=True,
        upcoming_runs=(
            UpcomingRun(
                "daily_pipeline_schedule", now + timedelta(minutes=2), frozenset({fct_orders})
            ),
        ),
    )
    plan = shop_planner.plan(PlanRequest("+fct_orders+"), env=soon)
    assert status(plan, "overlap") == "warn" and status(plan, "queues") == "warn"


def test_a_heavy_full_refresh_at_peak_hours_waits_for_the_low_traffic_window(shop_manifest):
    fct_orders = shop_manifest.by_name["fct_orders"][0]
    planner = Planner(shop_manifest)
    history = History(incremental={fct_orders: [60]})  # x10 full refresh: heavy
    peak = Environment(now=datetime(2026, 3, 4, 10, 0, tzinfo=UTC), known=True)
    night = Environment(now=datetime(2026, 3, 4, 2, 0, tzinfo=UTC), known=True)
    request = PlanRequest("fct_orders", full_refresh=True)
    at_peak = planner.plan(request, history=history, env=peak)
    # never a block: rescue_sensor holds it until the window opens (or --now)
    assert status(at_peak, "heavy") == "warn"
    reason = next(i.reason for i in at_peak.checklist if i.key == "heavy")
    assert "waits for the low-traffic window at 18:00 UTC" in reason, reason
    at_night = planner.plan(request, history=history, env=night)
    assert "starts at once" in next(i.reason for i in at_night.checklist if i.key == "heavy")
    assert (
        status(planner.plan(PlanRequest("fct_orders"), history=history, env=peak), "heavy") == "ok"
    )


def test_peak_hours_are_local_weekday_hours_and_the_window_opens_at_their_end():
    from rescue_defs.planning.windows import at_peak, window_opens

    wednesday_10 = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    assert at_peak(wednesday_10, "UTC", (8, 18))
    assert window_opens(wednesday_10, "UTC", (8, 18)) == datetime(2026, 3, 4, 18, 0, tzinfo=UTC)
    # 10:00 UTC is 05:00 in New York: no peak there yet
    assert not at_peak(wednesday_10, "America/New_York", (8, 18))
    assert window_opens(wednesday_10, "America/New_York", (8, 18)) == wednesday_10
    saturday_10 = datetime(2026, 3, 7, 10, 0, tzinfo=UTC)
    assert not at_peak(saturday_10, "UTC", (8, 18))
    assert not at_peak(wednesday_10, "UTC", None)


def test_checklist_warns_about_consumers_left_stale(shop_planner):
    narrow = shop_planner.plan(PlanRequest("+fct_orders"))
    assert status(narrow, "scope") == "warn"
    assert "mart_customer_ltv" in next(i.reason for i in narrow.checklist if i.key == "scope")
    assert status(shop_planner.plan(PlanRequest("+fct_orders+")), "scope") == "ok"


def test_runs_all_of_one_size_never_cost_more_per_model_than_they_cost_in_all(shop_manifest):
    # three 200-model rescue runs, each 16.6 s besides its models' own time: the per-model
    # part cannot be told from the per-run part by fitting, but it cannot be more than all of
    # it, and a run's usual fixed part is not per model
    from rescue_defs.planning.cost import DEFAULT_RUN_OVERHEAD_SECONDS

    costs = CostModel(shop_manifest, History(run_overhead=[16.6] * 3, run_models=[200] * 3))
    assert costs.model_overhead == pytest.approx(
        (16.6 - DEFAULT_RUN_OVERHEAD_SECONDS) / 200, abs=1e-3
    )
    assert 200 * costs.model_overhead + costs.run_overhead == pytest.approx(
        16.6 + TICK_SECONDS, abs=0.1
    )


def test_full_refresh_reaches_only_incremental_models_named_or_advised(shop_planner):
    plan = shop_planner.plan(PlanRequest("fct_orders+ fct_page_views", full_refresh=True))
    assert {plan.name(m) for m in plan.full_refresh} == {"fct_orders", "fct_page_views"}
    only = shop_planner.plan(PlanRequest("fct_orders+", full_refresh=("fct_orders",)))
    assert {plan.name(m) for m in only.full_refresh} == {"fct_orders"}
    with pytest.raises(ValueError, match="not in the rescue"):
        shop_planner.plan(PlanRequest("fct_orders", full_refresh=("fct_page_views",)))


def test_expected_time_counts_each_runs_start_up_learned_from_history(shop_manifest):
    from rescue_defs.planning.cost import (
        DEFAULT_MODEL_OVERHEAD_SECONDS,
        DEFAULT_RUN_OVERHEAD_SECONDS,
        STAGE_SECONDS,
        TICK_SECONDS,
    )
    from rescue_defs.planning.render import render_text

    layered = PlanRequest("+int_orders_enriched+", layered=True)
    fresh = Planner(shop_manifest).plan(layered)
    n = len(fresh.models)
    models = sum(fresh.seconds[m] for m in fresh.models) + n * DEFAULT_MODEL_OVERHEAD_SECONDS
    # no history: the start-up measured on this machine kind, for the one run that builds the
    # three stages one after the other, and a dbt start for each further stage
    assert fresh.run_overhead_seconds == DEFAULT_RUN_OVERHEAD_SECONDS
    assert fresh.runs == 1
    assert fresh.total_seconds == pytest.approx(
        models + DEFAULT_RUN_OVERHEAD_SECONDS + 2 * STAGE_SECONDS
    )
    assert "3 steps in 1 run, stage after stage" in render_text(fresh)
    # with history: the median of what recent rescue runs cost besides their models, and the
    # ticks before and after a run, which its own record does not show
    learned = Planner(shop_manifest).plan(layered, history=History(run_overhead=[12, 20, 90]))
    assert learned.total_seconds == pytest.approx(models + 20.0 + TICK_SECONDS + 2 * STAGE_SECONDS)
    assert all(s.seconds >= 20.0 for s in learned.steps)
    # runs of different sizes tell the per-run part from the per-model part
    sized = History(run_overhead=[12.0, 32.0, 112.0], run_models=[10, 50, 210])
    fitted = Planner(shop_manifest).plan(layered, history=sized)
    assert fitted.model_overhead_seconds == pytest.approx(0.5)
    assert fitted.run_overhead_seconds == pytest.approx(7.0 + TICK_SECONDS)
    # runs asked apart: each pays its own start-up and waits
    apart = PlanRequest("+int_orders_enriched+", layered=True, separate_runs=True)
    separate = Planner(shop_manifest).plan(apart, history=History(run_overhead=[20]))
    assert separate.runs == 3
    assert separate.total_seconds == pytest.approx(models + 3 * (20.0 + TICK_SECONDS))


def test_a_learned_runs_further_stages_are_not_counted_again_in_the_next_estimate(shop_manifest):
    from rescue_defs.planning.cost import STAGE_SECONDS, TICK_SECONDS

    # one rescue run of the same three stages cost 20 s besides its models: 2 of them were its
    # further stages' dbt starts, which the estimate adds for each further stage of the next
    layered = PlanRequest("+int_orders_enriched+", layered=True)
    fresh = Planner(shop_manifest).plan(layered)
    n = len(fresh.models)
    history = History(run_overhead=[20.0], run_models=[n], run_stages=[3])
    learned = Planner(shop_manifest).plan(layered, history=history)
    own = sum(learned.seconds[m] for m in learned.models)
    # the next run like it costs what that one did, and the ticks around it
    assert learned.total_seconds == pytest.approx(own + 20.0 + TICK_SECONDS)
    assert learned.run_overhead_seconds == pytest.approx(
        20.0 - n * learned.model_overhead_seconds - 2 * STAGE_SECONDS + TICK_SECONDS
    )


def test_what_a_run_cost_besides_its_models_counts_models_built_side_by_side_once():
    from rescue_defs.planning.cost import besides_models

    # requested at 0, ended at 30: two dbt threads built 4 models of 5 s each between 10 and
    # 20 (their durations add up to 20 s, the build took 10 s), validation until 21, the proof
    # until 29
    built = [(15.0, 5.0), (15.0, 5.0), (20.0, 5.0), (20.0, 5.0)]
    assert besides_models(0.0, 30.0, built, proved=False) == pytest.approx(20.0)
    # the proof's own time is estimated apart (checks/proof.py): not part of the run's cost
    assert besides_models(0.0, 30.0, built, proved=True) == pytest.approx(10.0)
    # one model at a time: their own durations are the build
    assert besides_models(0.0, 30.0, [(12.0, 2.0), (20.0, 2.0)], proved=False) == 26.0
    assert besides_models(0.0, 5.0, [], proved=False) == 5.0


def test_one_run_size_leaves_a_run_its_fixed_part_before_counting_per_model(shop_manifest):
    from rescue_defs.planning.cost import DEFAULT_RUN_OVERHEAD_SECONDS

    # the first build (200 models) cost 7 s besides its models: less than a run's usual
    # fixed part, so none of it per model; a 10-model rescue next still pays those 7 s
    cheap = CostModel(shop_manifest, History(run_overhead=[7.0], run_models=[200]))
    assert cheap.model_overhead == 0.0
    assert cheap.run_overhead == pytest.approx(7.0 + TICK_SECONDS)
    # more than the fixed part: the rest is per model
    one = History(run_overhead=[DEFAULT_RUN_OVERHEAD_SECONDS + 20.0], run_models=[200])
    dear = CostModel(shop_manifest, one)
    assert dear.model_overhead == pytest.approx(0.1)
    assert dear.run_overhead == pytest.approx(DEFAULT_RUN_OVERHEAD_SECONDS + TICK_SECONDS)


def test_a_full_refresh_of_every_incremental_model_is_one_dbt_invocation(shop_manifest):
    """As the engineer types it: `dbt build --full-refresh --select ...` once (B1: a 200-model
    full refresh went through ten alternating invocations); a partial one keeps the others
    out of --full-refresh, parents first."""
    from rescue_defs.assets.dbt_build import refresh_layers
    from rescue_defs.planning.advice import is_incremental
    from rescue_defs.planning.selection import Selector

    models = Selector(shop_manifest).resolve("int_orders_enriched+").models
    incremental = {m for m in models if is_incremental(shop_manifest.models[m])}
    assert len(incremental) >= 2
    layers = refresh_layers(shop_manifest, models, frozenset(incremental))
    assert layers == [(True, shop_manifest.topological(models))]

    (fct_orders,) = shop_manifest.by_name["fct_orders"]
    partial = refresh_layers(shop_manifest, models, frozenset({fct_orders}))
    assert len(partial) >= 2
    assert [m for refresh, layer in partial if refresh for m in layer] == [fct_orders]
    built = [m for _, layer in partial for m in layer]
    assert sorted(built) == sorted(models)
    assert all(
        built.index(p) < built.index(m)
        for m in models
        for p in shop_manifest.model_graph.predecessors(m)
        if p in models
    )


def test_the_warehouse_s_own_load_is_an_item_of_the_checklist(shop_planner):
    from rescue_defs.planning.warehouse_items import WarehouseLoad

    now = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)

    def item(load):
        env = Environment(now=now, known=True, warehouse_load=load)
        plan = shop_planner.plan(PlanRequest("fct_orders"), env=env)
        return next(i for i in plan.checklist if i.key == "warehouse_load")

    quiet = item(WarehouseLoad(sessions=((7, "psql", 2.0, "select 1"),)))
    assert quiet.status == "ok" and "1 other active session(s)" in quiet.reason
    busy = item(WarehouseLoad(sessions=((7, "Metabase", 640.0, "select * from big"),)))
    assert busy.status == "warn" and "PID 7 (Metabase) running for 640 s" in busy.reason
    reader = item(WarehouseLoad(locks=((8, "", "analytics.fct_orders", "AccessShareLock"),)))
    assert reader.status == "warn" and "AccessShareLock on analytics.fct_orders" in reader.reason
    writer = item(WarehouseLoad(locks=((9, "etl", "analytics.fct_orders", "RowExclusiveLock"),)))
    assert writer.status == "block" and "another session writes" in writer.reason
    assert item(WarehouseLoad(unavailable="connection refused")).status == "block"
    other = item(WarehouseLoad(note="not measured on the snowflake adapter"))
    assert other.status == "warn" and "not measured on the snowflake adapter" in other.reason
    offline = shop_planner.plan(PlanRequest("fct_orders"))  # no instance, no warehouse
    assert not [i for i in offline.checklist if i.key == "warehouse_load"]


def test_a_rescue_expects_its_proof_in_its_launch_to_end(shop_manifest):
    # the proof runs in the rescue's last run: the from-scratch build of what the rescue does
    # not rebuild from scratch itself, then one comparison (and stored verdict) per model
    from rescue_defs.checks.proof import COMPARE_SECONDS, expected_seconds, proof_line

    history = _incremental_history(shop_manifest)
    plan = Planner(shop_manifest).plan(
        PlanRequest("fct_orders fct_page_views", full_refresh=False), history=history
    )
    proof = proof_record(plan, PROOF_ON, sandbox=False)
    added = 26.0 + 2 * COMPARE_SECONDS
    assert expected_seconds(plan, proof) == pytest.approx(plan.total_seconds + added, abs=0.1)
    assert f"~{plan.total_seconds + added:.0f} s launch to end" in proof_line(plan, proof)
    # nothing added by a proof that will not run, and the line says why
    off = proof_record(plan, {"on": False, "max_seconds": 600, "why_off": "turned off"}, False)
    assert expected_seconds(plan, off) == expected_seconds(plan, None) == plan.total_seconds
    assert proof_line(plan, off) == "proof: skipped (turned off)"
    # a model the rescue rebuilds from scratch is its own proof: not built again nor compared
    refreshed = Planner(shop_manifest).plan(
        PlanRequest("fct_page_views", full_refresh=True), history=history
    )
    own = proof_record(refreshed, PROOF_ON, sandbox=False)
    assert expected_seconds(refreshed, own) == refreshed.total_seconds
    assert "nothing more to build" in proof_line(refreshed, own)
