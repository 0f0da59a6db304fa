"""The lines `rescue status` prints above the report: where the rescue is, one per step."""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from rescue_defs.rescues.outcomes import latest_by_step, model_outcomes, step_runs
from rescue_defs.rescues.store import DRY_RUN, load


def _planned(record: Mapping[str, Any]) -> list[str]:
    return [m for step in record["steps"] for m in step["models"]]


def _elapsed(record: Mapping[str, Any]) -> str:
    # the proof included (a record from before it was counted: the plan's alone)
    expected = record.get("expected_seconds", record["plan"].get("expected_seconds"))
    if record["status"] == DRY_RUN:
        return f"not launched (expected ~{expected or 0:.0f} s)"
    start = datetime.fromisoformat(record["created_at"])
    end = datetime.fromisoformat(record["ended_at"]) if record.get("ended_at") else None
    seconds = ((end or datetime.now(UTC)) - start).total_seconds()
    took = "took" if end else "running for"
    return f"{took} {seconds:.0f} s" + (
        f" (expected ~{expected:.0f} s)" if expected is not None else ""
    )


def status_lines(instance: dg.DagsterInstance, rescue_id: str, keys) -> list[str]:
    """What `rescue status` prints above the report: one line per run of the plan."""
    record = load(instance, rescue_id)
    runs = step_runs(instance, rescue_id)
    latest = latest_by_step(runs)
    outcomes = model_outcomes(instance, runs, keys)
    names = record["names"]
    planned = _planned(record)
    rebuilt = sum(1 for m in planned if outcomes[m].rebuilt)
    validated = sum(1 for m in planned if outcomes[m].validated)
    lines = [
        f"rescue {rescue_id}: {record['status']} ({record['reason']}) - {record['message']}",
        f"  {rebuilt}/{len(planned)} rebuilt, {validated}/{len(planned)} validated; "
        + _elapsed(record),
    ]
    for step in record["steps"]:
        run = latest.get((step["index"], step["attempt"]))
        done = [m for m in step["models"] if outcomes[m].rebuilt]
        state = run.status.value if run else ("done" if not step["remaining"] else "waiting")
        left = [names.get(m, m) for m in step["models"] if not outcomes[m].rebuilt]
        lines.append(
            f"  step {step['index'] + 1} [{step['stage']}] {state}"
            + (f" ({run.run_id})" if run else "")
            + f": {len(done)}/{len(step['models'])} rebuilt"
            + (f"; not rebuilt: {', '.join(left[:10])}" if left and run else "")
        )
    return lines
