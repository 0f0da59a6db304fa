"""The playbook's pre-run checklist, evaluated: each item ok / warn / block, with the reason.

Inputs describe the world outside the plan (runs queued or in progress, schedules about to
fire, the clock); the Dagster side supplies them, tests build them by hand.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rescue_defs.planning.warehouse_items import (  # the statuses are defined there
    BLOCK,
    OK,
    WARN,
    WarehouseLoad,
    inputs_checked,
    inputs_gaps,
    warehouse_load_item,
)
from rescue_defs.planning.windows import at_peak, window_opens


@dataclass(frozen=True)
class ActiveRun:
    run_id: str
    status: str
    """QUEUED, STARTING, STARTED, ..."""
    models: frozenset[str]
    """Model unique_ids the run will write."""
    name: str = ""


@dataclass(frozen=True)
class UpcomingRun:
    name: str
    at: datetime
    models: frozenset[str]


@dataclass(frozen=True)
class Environment:
    now: datetime | None = None
    """Aware datetime; None: the checklist items that need the clock say so."""
    timezone: str = "UTC"
    peak_hours: tuple[int, int] | None = (8, 18)
    """Local hours [start, end) of heavy warehouse traffic on weekdays; None: no peak."""
    active_runs: tuple[ActiveRun, ...] = ()
    upcoming_runs: tuple[UpcomingRun, ...] = ()
    max_concurrent_runs: int | None = None
    known: bool = False
    """True when the Dagster side filled this in; False for a plan made offline."""
    warehouse_holder: str = ""
    """A process outside the pipeline holding the warehouse (DuckDB: one writer), described."""
    warehouse_load: WarehouseLoad | None = None
    """None: not asked (an offline plan)."""


@dataclass(frozen=True)
class Item:
    key: str
    question: str
    status: str
    reason: str


@dataclass(frozen=True)
class PlanFacts:
    """What the checklist needs from the plan."""

    models: frozenset[str]
    names: Mapping[str, str]
    seconds: float
    heavy: frozenset[str]
    full_refresh: frozenset[str]
    advised_full: frozenset[str]
    advised_not_full: frozenset[str]
    monthly_noop: frozenset[str]
    stale_consumers: frozenset[str]
    untested: frozenset[str]
    counts: Mapping[str, int] = field(default_factory=dict)
    late_note: str = ""
    """Why rows landed late for old periods could not be measured ("" when they were)."""
    unseen: frozenset[str] = frozenset()
    """Incremental models run incrementally on no evidence (advice.Advice.unseen)."""


def _names(facts: PlanFacts, ids, limit: int = 5) -> str:
    names = sorted(facts.names.get(i, i) for i in ids)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def evaluate(facts: PlanFacts, env: Environment) -> list[Item]:
    items: list[Item] = []
    add = lambda key, q, status, reason: items.append(Item(key, q, status, reason))  # noqa: E731
    duration = timedelta(seconds=facts.seconds)

    # 1. queues
    q = "Are SQL queues saturated, or is a heavy scheduled run about to start?"
    if not env.known:
        add("queues", q, WARN, "not checked: no Dagster instance was consulted (offline plan)")
    else:
        queued = [r for r in env.active_runs if r.status in ("QUEUED", "NOT_STARTED")]
        soon = [u for u in env.upcoming_runs if env.now and u.at <= env.now + duration]
        if env.max_concurrent_runs is not None and len(queued) >= env.max_concurrent_runs:
            add(
                "queues",
                q,
                WARN,
                f"{len(queued)} runs already queued "
                f"(limit {env.max_concurrent_runs} at once): the rescue will wait",
            )
        elif soon:
            add(
                "queues",
                q,
                WARN,
                "scheduled within the expected duration: "
                + ", ".join(f"{u.name} at {u.at:%H:%M}" for u in soon),
            )
        else:
            add(
                "queues",
                q,
                OK,
                f"{len(queued)} queued, no schedule fires within ~{facts.seconds / 60:.0f} min",
            )

    # 1b. the warehouse itself
    if env.warehouse_holder:
        add(
            "warehouse",
            "Can dbt write to the warehouse now?",
            BLOCK,
            f"the warehouse is held by {env.warehouse_holder}: every dbt run would fail at its "
            "first connection; close that connection (or launch with force: each run then "
            "waits for it, and fails naming it)",
        )

    # 1c. the warehouse's own load
    warehouse_load_item(env.warehouse_load, env.known, add)

    # 2. heavy
    q = "Is the target model heavy (large volume, complex joins, deep lineage)?"
    peak = _at_peak(env)
    if facts.heavy:
        heavy_full = facts.heavy & facts.full_refresh
        what = (
            f"heavy full refresh ({_names(facts, heavy_full)})"
            if heavy_full
            else f"heavy ({_names(facts, facts.heavy)})"
        )
        if peak and env.now is not None:
            # the playbook's "Scheduling Heavy Reloads": rescue_sensor holds it until then
            opens = window_opens(env.now, env.timezone, env.peak_hours)
            add(
                "heavy",
                q,
                WARN,
                f"{what} at peak hours: waits for the low-traffic window at {opens:%H:%M} "
                f"{env.timezone} (launch with --now to start at once)",
            )
        else:
            add("heavy", q, WARN, f"{what}: outside peak hours, starts at once")
    else:
        add("heavy", q, OK, f"nothing heavy; ~{facts.seconds / 60:.1f} min expected in all")

    # 3. scope
    q = "Have I mapped the upstream and downstream scope (+model, model+, +model+)?"
    counts = ", ".join(f"{n} {k}" for k, n in facts.counts.items() if n)
    gaps = []
    if facts.stale_consumers:
        gaps.append(
            f"{len(facts.stale_consumers)} model(s) read from the selection but are not in it "
            f"and stay stale: {_names(facts, facts.stale_consumers)} (add `+` after the target?)"
        )
    gaps += inputs_gaps(env.warehouse_load)
    if gaps:
        add("scope", q, WARN, f"{counts}; " + "; ".join(gaps))
    else:
        inputs = inputs_checked(env.warehouse_load)
        add("scope", q, OK, f"{counts}; every consumer of the selection is in it{inputs}")

    # 4. incremental no-op
    q = "Is the model incremental? Will a normal run load any data today?"
    if facts.monthly_noop and facts.late_note:
        add(
            "incremental",
            q,
            WARN,
            f"{_names(facts, facts.monthly_noop)} restate only their calendar window, and rows "
            f"landed late for older periods were not measured ({facts.late_note}): if any "
            "did, the advised refresh is not enough",
        )
    elif facts.monthly_noop:
        add(
            "incremental",
            q,
            WARN,
            f"{_names(facts, facts.monthly_noop)} restate only their "
            "calendar window: changes older than it need the advised refresh",
        )
    elif facts.unseen:
        add(
            "incremental",
            q,
            WARN,
            f"{_names(facts, facts.unseen)}: what their incremental filter reads is not visible "
            "to the planner (no meta.rescue cadence): a normal run may miss rows landed for "
            "periods it does not restate; only the proof after the rescue can tell (a model "
            "that differs is rebuilt with --full-refresh)",
        )
    elif facts.advised_full | facts.advised_not_full:
        add(
            "incremental",
            q,
            OK,
            "every incremental model in scope is fully refreshed or restates what changed",
        )
    else:
        add("incremental", q, OK, "no incremental model in scope")

    # 5. full refresh
    q = "Does the change require --full-refresh, or is a backfill / normal run enough?"
    missing = facts.advised_full - facts.full_refresh
    extra = facts.full_refresh & facts.advised_not_full
    if missing:
        add(
            "full_refresh",
            q,
            BLOCK,
            f"full refresh advised but not planned for "
            f"{_names(facts, missing)}: an incremental run would lock in wrong history",
        )
    elif extra:
        add(
            "full_refresh",
            q,
            WARN,
            f"full refresh planned but not needed for "
            f"{_names(facts, extra)}" + (" (heavy)" if extra & facts.heavy else ""),
        )
    else:
        add(
            "full_refresh",
            q,
            OK,
            f"full refresh for {len(facts.full_refresh)} model(s), as advised"
            if facts.full_refresh
            else "no full refresh needed",
        )

    # 6. overlap
    q = "Am I about to overlap with a run that touches the same lineage?"
    writing = [r for r in env.active_runs if r.models & facts.models]
    upcoming = [
        u
        for u in env.upcoming_runs
        if u.models & facts.models and env.now and u.at <= env.now + duration
    ]
    if writing:
        add(
            "overlap",
            q,
            BLOCK,
            "; ".join(
                f"run {r.run_id[:8]} ({r.name or 'run'}, {r.status.lower()}) writes "
                f"{_names(facts, r.models & facts.models, 3)}"
                for r in writing
            )
            + ": launching is refused; forced (`--force`, `force: true`), the rescue waits for it",
        )
    elif upcoming:
        add(
            "overlap",
            q,
            WARN,
            "; ".join(
                f"{u.name} at {u.at:%H:%M} rewrites {_names(facts, u.models & facts.models, 3)}"
                for u in upcoming
            ),
        )
    elif not env.known:
        add("overlap", q, WARN, "not checked: no Dagster instance was consulted (offline plan)")
    else:
        add("overlap", q, OK, "no queued, running or imminent run writes these models")

    # 7. resume
    q = "If the run times out, do I have a plan for resuming with --exclude?"
    heavy_full = facts.heavy & facts.full_refresh
    if heavy_full:
        add(
            "resume",
            q,
            WARN,
            "resume rebuilds planned minus materialized, but a model cut off "
            f"mid full refresh starts over: {_names(facts, heavy_full)}",
        )
    else:
        add(
            "resume",
            q,
            OK,
            "a resume rebuilds exactly planned minus materialized, with the same refresh flags",
        )

    # 8. validation
    q = "After the run: did tests pass, and have I sanity-checked the output tables?"
    if facts.untested:
        add(
            "validation",
            q,
            WARN,
            f"{len(facts.untested)} model(s) have no dbt test: "
            f"{_names(facts, facts.untested)}; row-count and max-date checks still run",
        )
    else:
        add("validation", q, OK, "every model has dbt tests; row-count and max-date checks run")
    return items


def _at_peak(env: Environment) -> bool:
    return env.now is not None and at_peak(env.now, env.timezone, env.peak_hours)
