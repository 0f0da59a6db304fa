"""Launch markers: how the launchers of a rescue's runs (rescue_sensor, the `rescue` CLI,
the launchpad's rescue_job; kickoff.py submits for the last two) never launch a run twice or
over another run's models:
- every launcher marks what it requested in the record, saved before the request leaves (the
  record's version makes a launcher that loaded it earlier drop its own decision); while a
  marker holds and its runs do not exist yet, no other launcher starts anything of the rescue
  and the marked models count as claimed, so no other rescue's run writes them meanwhile;
- `rescue launch` and rescue_job register the rescue *reserved* (every step marked) and then
  decide, so a tick between the two starts nothing; a launcher releases its own marker whenever
  it leaves the launch to the sensor, and one that dies leaves a marker that expires after
  `LAUNCH_GRACE_SECONDS`;
- they only launch when their rescue is the only active one (checked before and after the
  marker is saved): with others active, which run goes first is the sensor's call.
Anything unexpected (no webserver, another Dagster instance behind it, another project, an
error) leaves the launch to the sensor, as before.
"""

import time
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from rescue_defs.rescues.outcomes import covered_steps
from rescue_defs.rescues.store import load, retried, save

# longer than a submission may take (kickoff.SUBMIT_TIMEOUT_SECONDS): a marker outliving it
# means the CLI died, and the sensor takes over
LAUNCH_GRACE_SECONDS = 90
MARKER = "launching"
BY_CLI = "the rescue CLI"
BY_JOB = "rescue_job"  # the UI's launchpad form: its op starts the first run
BY_SENSOR = "rescue_sensor"


def _marker(by: str, steps, proof: int | None) -> dict[str, Any]:
    return {
        "by": by,
        "until": time.time() + LAUNCH_GRACE_SECONDS,
        "steps": sorted(set(steps)),
        "proof": proof,
    }


def reservation(record: Mapping[str, Any], by: str) -> dict[str, Any]:
    """The marker a rescue is registered (or resumed) with when `by` will try to start it:
    every step left and a pending proof, so no tick starts anything of it meanwhile."""
    proof = record.get("proof") or {}
    return _marker(
        by,
        [(s["index"], s["attempt"]) for s in record["steps"] if s["remaining"]],
        proof.get("attempt", 0) if proof.get("status") == "pending" else None,
    )


def mark(record: dict[str, Any], requests: Sequence[dg.RunRequest], by: str) -> None:
    """Say in the record that `by` requested these runs (saved with the record)."""
    from rescue_defs.rescues.proving import TAG_PROOF

    proofs = [int(r.tags[TAG_PROOF]) for r in requests if TAG_PROOF in r.tags]
    # a request carries the same step tags as the run it becomes
    steps = [pair for r in requests for pair in covered_steps(r)]
    record[MARKER] = _marker(by, steps, proofs[0] if proofs else None)


def pending(
    instance: dg.DagsterInstance,
    record: Mapping[str, Any],
    latest: Mapping[tuple[int, int], Any],
    ignore: str | None = None,
) -> list[str] | None:
    """While a marker holds (not `ignore`'s own): the models of its steps whose runs do not
    exist yet (empty when only its proof run is missing); None when nothing is pending."""
    from rescue_defs.rescues.proving import proof_run

    marker = record.get(MARKER)
    if not marker or time.time() > marker["until"] or marker["by"] == ignore:
        return None
    waiting = {tuple(pair) for pair in marker["steps"]} - set(latest)
    if waiting:
        return [
            m
            for step in record["steps"]
            if (step["index"], step["attempt"]) in waiting
            for m in step["remaining"]
        ]
    if marker.get("proof") is not None and proof_run(instance, record) is None:
        return []
    return None


def release(instance: dg.DagsterInstance, rescue_id: str, by: str = BY_CLI) -> None:
    """Drop `by`'s marker (it submits nothing): the sensor launches at its next tick."""

    def attempt() -> None:
        record = load(instance, rescue_id)
        if (record.get(MARKER) or {}).get("by") == by:
            del record[MARKER]
            save(instance, record)

    retried(attempt)
