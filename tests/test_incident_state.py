"""Incidents from freshness measurements (pure, milliseconds): sources down together share one
incident, a late source (part of the backlog) is not recovered yet, sources recovering within
the grouping window share one rescue, a source still down after it gets its own later."""

from rescue_defs.automation import incidents
from rescue_defs.automation.incidents import Observation
from rescue_defs.checks.freshness import ERROR, PASS, WARN

HOUR = 3600.0


def measure(state, at: str, ts: float, newest="2026-03-02T05:00:00", **statuses: str):
    observations = [
        Observation(source, status, at, newest, ts) for source, status in statuses.items()
    ]
    return incidents.apply(state, observations, landed=lambda source, after: None)


def test_sources_down_together_share_one_incident_and_recoveries_group_within_the_window():
    state: dict = {}
    said = measure(state, "2026-03-04T06:00:00", 1 * HOUR, orders=ERROR, web=PASS)
    assert said == [f"incident {state['open'][0]['id']} opened: orders is down"]
    measure(state, "2026-03-04T07:00:00", 2 * HOUR, orders=ERROR, web=ERROR)
    (incident,) = state["open"]
    assert set(incident["sources"]) == {"orders", "web"}
    assert incidents.ready(state, "2026-03-04T07:00:00", HOUR) == []  # both down

    # part of the orders backlog landed: late, not fresh; nothing is rescued yet
    measure(state, "2026-03-05T06:00:00", 3 * HOUR, orders=WARN, web=ERROR)
    assert incident["sources"]["orders"]["recovered_at"] is None
    measure(state, "2026-03-05T07:00:00", 4 * HOUR, orders=PASS, web=ERROR)
    # web may follow within the hour: wait for it
    assert incidents.ready(state, "2026-03-05T07:30:00", HOUR) == []
    (recovery,) = incidents.ready(state, "2026-03-05T08:00:00", HOUR)
    assert recovery.sources == ("orders",) and recovery.since_ts == 4 * HOUR
    incidents.mark_rescued(state, recovery, recovery.rescue_id)
    assert state["open"], "web is still down: the incident stays open"

    measure(state, "2026-03-06T06:00:00", 5 * HOUR, orders=PASS, web=PASS)
    (later,) = incidents.ready(state, "2026-03-06T06:00:00", HOUR)
    assert later.sources == ("web",) and later.incident_id == recovery.incident_id
    assert later.rescue_id != recovery.rescue_id
    incidents.mark_rescued(state, later, later.rescue_id)
    assert state["open"] == []


def test_sources_recovering_together_make_one_rescue_and_a_relapse_reopens_the_wait():
    state: dict = {}
    measure(state, "2026-03-04T06:00:00", HOUR, orders=ERROR, web=ERROR)
    measure(state, "2026-03-05T06:00:00", 2 * HOUR, orders=PASS, web=ERROR)
    said = measure(state, "2026-03-05T07:00:00", 3 * HOUR, orders=ERROR, web=ERROR)
    assert any("orders is down again" in s for s in said)
    measure(state, "2026-03-05T08:00:00", 4 * HOUR, orders=PASS, web=PASS)
    (recovery,) = incidents.ready(state, "2026-03-05T08:00:00", HOUR)
    assert recovery.sources == ("orders", "web")
    assert recovery.rescue_id == f"outage-{recovery.incident_id}-r20260305080000"


def test_a_source_never_loaded_is_not_an_outage_but_one_emptied_after_loads_is():
    state: dict = {}
    # a fresh warehouse: nothing to measure yet
    assert measure(state, "2026-03-01T06:00:00", HOUR, newest="", orders=ERROR) == []
    assert state["open"] == []
    measure(state, "2026-03-01T07:00:00", 2 * HOUR, orders=PASS)
    # the table disappears (dropped by a bad load): that is down
    said = measure(state, "2026-03-02T07:00:00", 3 * HOUR, newest="", orders=ERROR)
    assert said and "opened: orders is down" in said[0]
