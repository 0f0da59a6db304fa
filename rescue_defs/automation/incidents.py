"""Incidents: a source past its dbt `error_after`, from the measurement that saw it down until
one that sees it fresh again; sources down together share one incident. Pure: the state is a
JSON-able dict the outage sensor keeps in its cursor (saved only after a good tick).

state = {"open": [incident, ...], "seen": [sources measured with data at least once]}
incident = {"id", "opened_at", "sources": {label: {"down_since", "opened_at", "last_down_ts",
            "recovered_at", "recovered_ts", "rescue_id"}}}

Times: `*_at` are the business clock's (what freshness was judged against, ISO); `*_ts` are
Dagster event timestamps (seconds), comparable with materializations.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rescue_defs.checks.freshness import ERROR, PASS


@dataclass(frozen=True)
class Observation:
    """One source's freshness as one measurement run judged it."""

    source: str
    status: str
    measured_at: str
    max_loaded_at: str
    ts: float
    """When Dagster recorded the evaluation."""


def _incident_id(measured_at: str, source: str) -> str:
    stamp = re.sub(r"\D", "", measured_at)[:14]
    return f"{stamp[:8]}-{stamp[8:14]}-{re.sub(r'[^A-Za-z0-9_]+', '_', source)}"


def apply(state: dict[str, Any], observations: list[Observation], landed) -> list[str]:
    """Fold one measurement run into the state (in place); returns what changed, as lines.

    `landed(source, after_ts) -> ts | None`: when data of the source was first known to have
    landed after `after_ts` (a materialization of its asset, for sources loaded by Dagster);
    None: only this measurement knows."""
    events = []
    open_ = state.setdefault("open", [])
    # sources measured with data at least once: one that never had any (a fresh warehouse, a
    # new source) is not down, it was never up; its check says so, no incident opens
    seen = set(state.get("seen", []))
    for obs in observations:
        if obs.max_loaded_at:
            seen.add(obs.source)
        incident = next((i for i in open_ if _pending(i, obs.source)), None)
        if obs.status == ERROR and incident is None and obs.source not in seen:
            continue
        if obs.status == ERROR:
            if incident is None:
                # a source that goes down while another one is down joins its incident
                incident = next((i for i in open_ if _down(i)), None)
                if incident is None:
                    incident = {
                        "id": _incident_id(obs.measured_at, obs.source),
                        "opened_at": obs.measured_at,
                        "sources": {},
                    }
                    open_.append(incident)
                    events.append(f"incident {incident['id']} opened: {obs.source} is down")
                else:
                    events.append(f"incident {incident['id']}: {obs.source} is down too")
                incident["sources"][obs.source] = {
                    "down_since": obs.max_loaded_at or "never loaded",
                    "opened_at": obs.measured_at,
                    "last_down_ts": obs.ts,
                    "recovered_at": None,
                    "recovered_ts": None,
                    "rescue_id": None,
                }
            else:
                entry = incident["sources"][obs.source]
                if entry["recovered_at"] is not None:
                    events.append(f"incident {incident['id']}: {obs.source} is down again")
                entry.update(last_down_ts=obs.ts, recovered_at=None, recovered_ts=None)
        elif (
            obs.status == PASS
            and incident is not None
            and incident["sources"][obs.source]["recovered_at"] is None
        ):
            # fresh again; a late one (warn: part of the backlog landed) is not recovered yet
            entry = incident["sources"][obs.source]
            first_landed = landed(obs.source, entry["last_down_ts"])
            entry["recovered_at"] = obs.measured_at
            entry["recovered_ts"] = min(obs.ts, first_landed) if first_landed else obs.ts
            events.append(
                f"incident {incident['id']}: {obs.source} recovered "
                f"(fresh at {obs.measured_at[:19]})"
            )
    state["seen"] = sorted(seen)
    return events


def _pending(incident: Mapping[str, Any], source: str) -> bool:
    entry = incident["sources"].get(source)
    return entry is not None and entry["rescue_id"] is None


def _down(incident: Mapping[str, Any]) -> bool:
    return any(
        e["recovered_at"] is None and e["rescue_id"] is None for e in incident["sources"].values()
    )


@dataclass(frozen=True)
class Recovery:
    """Sources of one incident ready for their rescue."""

    incident_id: str
    sources: tuple[str, ...]
    down_since: str
    """The earliest newest-row time among them: the outage's start."""
    opened_at: str
    recovered_at: str
    since_ts: float
    """Models rebuilt after this (Dagster time) already saw every recovered source's data."""

    @property
    def rescue_id(self) -> str:
        return f"outage-{self.incident_id}-r{re.sub(r'[^0-9]', '', self.recovered_at)[:14]}"


def ready(state: Mapping[str, Any], now: str, group_seconds: float) -> list[Recovery]:
    """Incidents whose recovered sources should be rescued now: every source of the incident
    is fresh again, or the first recovery is `group_seconds` old (sources recovering within
    that window share one rescue; a source still down then gets its own later)."""
    found = []
    for incident in state.get("open", []):
        pending = {s: e for s, e in incident["sources"].items() if e["rescue_id"] is None}
        recovered = {s: e for s, e in pending.items() if e["recovered_at"] is not None}
        if not recovered:
            continue
        first = min(datetime.fromisoformat(e["recovered_at"]) for e in recovered.values())
        waited = (datetime.fromisoformat(now) - first).total_seconds()
        if len(recovered) < len(pending) and waited < group_seconds:
            continue
        found.append(
            Recovery(
                incident["id"],
                tuple(sorted(recovered)),
                min(e["down_since"] for e in recovered.values()),
                incident["opened_at"],
                max(e["recovered_at"] for e in recovered.values()),
                max(e["recovered_ts"] for e in recovered.values()),
            )
        )
    return found


def mark_rescued(state: dict[str, Any], recovery: Recovery, rescue_id: str) -> None:
    """Record the rescue; an incident whose every source has one leaves the open list."""
    for incident in state.get("open", []):
        if incident["id"] == recovery.incident_id:
            for source in recovery.sources:
                incident["sources"][source]["rescue_id"] = rescue_id
    state["open"] = [
        i
        for i in state.get("open", [])
        if any(e["rescue_id"] is None for e in i["sources"].values())
    ]
