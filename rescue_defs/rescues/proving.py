"""The last step of a rescue: its proof (in the run of its last steps, or a run of its own), and
what its verdicts make of the rescue."""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from rescue_defs.checks.proof import BY_CONSTRUCTION, PROOF_CHECK
from rescue_defs.rescues.outcomes import step_runs
from rescue_defs.rescues.store import RESCUE_RUN, STEP_JOB, TAG_ID, TAG_KIND, TAG_REASON

TAG_PROOF = "rescue/proof"


def proof_run(instance: dg.DagsterInstance, record: Mapping[str, Any]) -> dg.DagsterRun | None:
    """The newest proof run of the rescue's current proof attempt."""
    attempt = str(record["proof"].get("attempt", 0))
    runs = [r for r in step_runs(instance, record["id"]) if r.tags.get(TAG_PROOF) == attempt]
    return runs[-1] if runs else None


def proves(record: Mapping[str, Any], done: set[int], steps: list) -> bool:
    """A run of `steps` that leaves no step unbuilt proves too (its pending proof), right
    after its last stage, in the same step: no proof run of its own to queue and start."""
    proof = record.get("proof") or {}
    if proof.get("status") != "pending" or not proof.get("models"):
        return False
    left = {s["index"] for s in record["steps"] if s["index"] not in done}
    return left == {s["index"] for s in steps}


def proof_request(record: Mapping[str, Any], keys: Mapping[str, dg.AssetKey]) -> dg.RunRequest:
    proof = record["proof"]
    return dg.RunRequest(
        run_key=f"{record['id']}:proof:{proof.get('attempt', 0)}",
        # the rescue's step job with the proof's checks alone: no model built, no other check
        # (a job of its own cost every code-location load ~0.8 s at 3,000 models)
        job_name=STEP_JOB,
        asset_selection=[],
        asset_check_keys=[dg.AssetCheckKey(keys[m], PROOF_CHECK) for m in proof["models"]],
        # the dbt assets' own step proves (their check specs include the proof's), configured
        # like a rescue's step runs through the rescue_run resource
        run_config={"resources": {RESCUE_RUN: {"config": {"proof_of": record["id"]}}}},
        tags={
            TAG_ID: record["id"],
            TAG_KIND: "proof",
            TAG_PROOF: str(proof.get("attempt", 0)),
            TAG_REASON: record["reason"],
            **record.get("tags", {}),
        },
    )


def verdicts(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[bool, str, str]]:
    """asset key string -> (equal, description, how: its metadata status) from a proof run's
    check evaluations."""
    found = {}
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    for record in records:
        data = record.event_log_entry.dagster_event.asset_check_evaluation_data
        if data.check_name == PROOF_CHECK:
            status = data.metadata.get("status")
            how = str(status.value) if status is not None else ""
            found[data.asset_key.to_user_string()] = (data.passed, data.description or "", how)
    return found


def settle_proof(
    instance: dg.DagsterInstance, record: dict[str, Any], keys: Mapping[str, dg.AssetKey]
) -> tuple[str, str] | dg.RunRequest | None:
    """After every stage succeeded: (final status, message) once the proof is in, a request for
    the proof run when it has not started, None while it runs."""
    proof = record["proof"]
    run = proof_run(instance, record)
    if run is None:
        return proof_request(record, keys)
    if run.status == dg.DagsterRunStatus.SUCCESS:
        found = verdicts(instance, run.run_id)
        names = record["names"]
        missing = [m for m in proof["models"] if keys[m].to_user_string() not in found]
        differing = [
            m for m in proof["models"] if not found.get(keys[m].to_user_string(), (True,))[0]
        ]
        proof["status"] = "differs" if differing else ("incomplete" if missing else "equal")
        proof["run_id"] = run.run_id
        proof["differing"] = differing
        proof["verdicts"] = {
            names.get(m, m): found.get(keys[m].to_user_string(), (False, "no verdict"))[1]
            for m in proof["models"]
        }
        if differing:
            return "failed", (
                "every planned model was rebuilt, but "
                + ", ".join(names.get(m, m) for m in differing)
                + " differ(s) from a from-scratch build: `rescue resume "
                + f"{record['id']}` rebuilds them with --full-refresh"
            )
        if missing:
            return "failed", "the proof run ended without a verdict for " + ", ".join(
                names.get(m, m) for m in missing
            )
        own = [m for m in proof["models"] if found[keys[m].to_user_string()][2] == BY_CONSTRUCTION]
        proof["from_scratch"] = [names.get(m, m) for m in own]
        how = (
            f" ({len(proof['models']) - len(own)} compared row for row, {len(own)} rebuilt from "
            "scratch by the rescue itself)"
            if own
            else ", row for row"
        )
        return "succeeded", (
            f"every planned model was rebuilt; its {len(proof['models'])} incremental model(s) "
            f"equal a from-scratch build{how}"
        )
    if run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
        proof["status"] = "error"
        proof["run_id"] = run.run_id
        return "failed", (
            f"every planned model was rebuilt, but the proof run {run.run_id[:8]} "
            f"{run.status.value.lower()}: nothing proves the incremental models right "
            f"(`rescue resume {record['id']}` runs it again)"
        )
    return None
