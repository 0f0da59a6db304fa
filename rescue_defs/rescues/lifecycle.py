"""A rescue's life outside the sensor: register its plan, resume it, cancel it."""

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from rescue_defs.checks.coverage import COVERAGE_CHECK
from rescue_defs.checks.proof import PROOF_CHECK, expected_seconds, proof_record
from rescue_defs.planning.plan import Plan
from rescue_defs.planning.render import render_markdown
from rescue_defs.rescues import liveness, markers
from rescue_defs.rescues.facts import IN_FLIGHT
from rescue_defs.rescues.outcomes import model_outcomes, step_runs
from rescue_defs.rescues.report import announce_end, finish, publish
from rescue_defs.rescues.store import (
    ACTIVE,
    CANCELED,
    DRY_RUN,
    ENDED,
    SUCCEEDED,
    TAG_STEP,
    RescueError,
    load,
    retried,
    save,
    update,
)


def new_rescue_id(select: str = "") -> str:
    """`<UTC time>-<what it rescues>-<random>`: sorts by creation, and reads as a label where
    Dagster shows only the id (the rescue_report partitions, run tags)."""
    first = select.split()[0] if select.split() else ""
    label = re.sub(r"[^A-Za-z0-9_]+", "_", first.split(".")[-1]).strip("_")[:32]
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-")
    return stamp + (f"{label}-" if label else "") + uuid.uuid4().hex[:6]


def register(
    instance: dg.DagsterInstance,
    plan: Plan,
    keys: Mapping[str, dg.AssetKey],
    *,
    force: bool = False,
    dry_run: bool = False,
    rescue_id: str | None = None,
    sandbox: bool = False,
    max_runtime: int | None = None,
    proof: Mapping[str, Any] | None = None,
    start_now: bool = False,
    extra: Mapping[str, Any] | None = None,
    reserve: str | None = None,
) -> dict[str, Any]:
    """Record a planned rescue and publish its plan; the sensor launches its runs. Blocked
    plans need `force`. A sandbox rescue refreshes the sandbox copy of prod first. `reserve`:
    who will try to start it at once (markers.py); no tick starts it until then."""
    blocks = [f"{i.key}: {i.reason}" for i in plan.blocks]
    if blocks and not force and not dry_run:
        raise RescueError(
            "the plan is blocked: " + "; ".join(blocks) + " (launch with force to override)"
        )
    if max_runtime is not None and max_runtime <= 0:
        raise RescueError(f"max_runtime must be a positive number of seconds, not {max_runtime}")
    if sandbox and not dry_run:
        from rescue_defs.sandbox import SandboxError, refresh_sandbox

        try:
            refresh_sandbox()
        except SandboxError as e:
            raise RescueError(str(e)) from None
    proven = proof_record(plan, proof, sandbox) if proof is not None else None
    record = {
        "id": rescue_id or new_rescue_id(plan.request.select),
        "version": 0,
        "project": plan.project,
        "sandbox": sandbox,
        "max_runtime": max_runtime,
        "created_at": datetime.now(UTC).isoformat(),
        "status": DRY_RUN if dry_run else ACTIVE,
        "reason": plan.request.reason,
        "forced": bool(blocks and force),
        "blocks": blocks,
        "plan": plan.to_dict(),
        "plan_markdown": render_markdown(plan),
        "proof": proven,
        # launch to end, the proof included (the plan's own `expected_seconds` is without it)
        "expected_seconds": expected_seconds(plan, proven),
        "names": dict(plan.names),
        "inlined": list(plan.inlined),
        "steps": [
            {
                "index": s.index,
                "stage": s.stage,
                "models": list(s.models),
                "full_refresh": list(s.full_refresh),
                "after": list(s.after),
                "attempt": 0,
                "remaining": list(s.models),
            }
            for s in plan.steps
        ],
        "message": "dry run: plan recorded, nothing launched"
        if dry_run
        else "waiting for rescue_sensor to launch the first run",
        "start_now": start_now,
        "separate_runs": plan.request.separate_runs,
        "heavy": sorted(plan.heavy),
        **(extra or {}),
    }
    if reserve and not dry_run:
        record[markers.MARKER] = markers.reservation(record, reserve)
    save(instance, record)
    publish(instance, record, keys)
    return record


def _busy(instance, rescue_id: str) -> list[dg.DagsterRun]:
    """The rescue's step runs in flight; one whose worker is silent is failed first."""
    runs = liveness.fail_silent(instance, step_runs(instance, rescue_id))
    return [r for r in runs if r.status in IN_FLIGHT and TAG_STEP in r.tags]


def resume(
    instance: dg.DagsterInstance,
    rescue_id: str,
    keys: Mapping[str, dg.AssetKey],
    force: bool = False,
    reserve: str | None = None,
):
    """Plan minus materialized: every unfinished step keeps only the models not yet rebuilt by
    this rescue, or rebuilt but unchecked or failing a check, with the same refresh flags."""
    return retried(lambda: _resume(instance, rescue_id, keys, force, reserve))


def _resume(instance, rescue_id: str, keys, force: bool, reserve: str | None) -> dict[str, Any]:
    record = load(instance, rescue_id)
    if record["status"] == SUCCEEDED:
        raise RescueError(f"rescue {rescue_id} already succeeded: nothing to resume")
    if record["status"] == DRY_RUN and record.get("blocks") and not force:
        raise RescueError(
            f"rescue {rescue_id} is a dry run whose plan was blocked: "
            + "; ".join(record["blocks"])
            + " (resume with force to override)"
        )
    busy = _busy(instance, rescue_id)
    if busy:
        raise RescueError(
            f"rescue {rescue_id} still has run {busy[0].run_id[:8]} {busy[0].status.value}: "
            "wait for it or cancel the rescue first"
        )
    outcomes = model_outcomes(instance, step_runs(instance, rescue_id), keys)
    left = 0
    for step in record["steps"]:
        # a model counts as done when rebuilt, checked and no check failed (a warning too:
        # after an outage it says the model is stale); one rebuilt by a run killed before its
        # checks ran is built again, so that it gets them
        step["remaining"] = [
            m
            for m in step["remaining"]
            if not (outcomes[m].rebuilt and not outcomes[m].unchecked and not outcomes[m].failed)
        ]
        # rows landed late before a windowed model's window: a normal run never restates
        # them, so the resume rebuilds it in full (recorded, the report says why)
        # likewise a model that differed from a from-scratch build
        for m in step["remaining"]:
            for name in (COVERAGE_CHECK, PROOF_CHECK):
                check = outcomes[m].checks.get(name)
                if check is not None and not check.passed and m not in step["full_refresh"]:
                    step["full_refresh"].append(m)
                    record.setdefault("escalated", {})[m] = check.description
        if step["remaining"]:
            step["attempt"] += 1  # a new run key: the sensor launches it afresh
        left += len(step["remaining"])
    if record["status"] == DRY_RUN and record.get("blocks"):
        record["forced"] = True
    proof = record.get("proof") or {}
    prove = proof.get("status") in ("pending", "running", "error", "differs", "incomplete")
    if prove and proof["status"] != "pending":
        proof.update(status="pending", attempt=proof.get("attempt", 0) + 1)
    record["status"] = ACTIVE if left or prove else SUCCEEDED
    if record["status"] == ACTIVE:
        record.pop("ended_at", None)  # running again: its status says so, not the last end
    record["message"] = f"resumed: {left} model(s) left to rebuild" + (
        ", then the proof" if prove else ""
    )
    if left or prove:
        if reserve:
            record[markers.MARKER] = markers.reservation(record, reserve)
        save(instance, record)
    else:
        finish(instance, record, keys)
    return record


MAX_PROOF_ESCALATIONS = 1


def escalate(
    instance: dg.DagsterInstance,
    record: dict[str, Any],
    descendants: Mapping[str, set[str]],
) -> dict[str, Any]:
    """The proof found models that differ from a from-scratch build: the rescue rebuilds them
    with --full-refresh itself, with every planned model downstream of them (they read the
    wrong rows), then proves again. Once; the report keeps what the first proof said.
    `descendants`: model -> the models downstream of it."""
    proof = record["proof"]
    differing = list(proof.get("differing") or [])
    planned = {m for step in record["steps"] for m in step["models"]}
    redo = set(differing)
    for m in differing:
        redo |= descendants.get(m, set()) & planned
    for step in record["steps"]:
        step["remaining"] = [m for m in step["models"] if m in redo]
        for m in step["remaining"]:
            if m in differing and m not in step["full_refresh"]:
                step["full_refresh"].append(m)
        if step["remaining"]:
            step["attempt"] += 1
    for m in differing:
        name = record["names"].get(m, m)
        record.setdefault("escalated", {})[m] = proof["verdicts"].get(name, "differed")
    record.setdefault("proof_history", []).append(
        {
            "attempt": proof.get("attempt", 0),
            "status": proof["status"],
            "verdicts": proof["verdicts"],
        }
    )
    record["proof_escalations"] = record.get("proof_escalations", 0) + 1
    # the next proof starts with no verdicts: the first one's are kept in proof_history
    proof.update(status="pending", attempt=proof.get("attempt", 0) + 1, differing=[], verdicts={})
    record["status"] = ACTIVE
    record.pop("ended_at", None)
    shown = ", ".join(record["names"].get(m, m) for m in differing)
    record["message"] = (
        f"the proof found {shown} different from a from-scratch build: rebuilding "
        f"{'it' if len(differing) == 1 else 'them'} with --full-refresh and "
        f"{len(redo) - len(differing)} model(s) downstream, then proving again"
    )
    save(instance, record)
    return record


def cancel(
    instance: dg.DagsterInstance,
    rescue_id: str,
    keys: Mapping[str, dg.AssetKey],
    who: str = "cli",
) -> dict[str, Any]:
    """Stop a rescue: no further run starts, its runs in flight are terminated, the report
    says what is left. `rescue resume` can pick it up again later."""

    def canceled(record: dict[str, Any]) -> None:
        if record["status"] in ENDED:
            raise RescueError(f"rescue {rescue_id} already {record['status']}: nothing to cancel")
        record["status"] = CANCELED
        record["message"] = f"canceled ({who})"

    # first: the sensor launches nothing more from here on. A tick saving the record meanwhile
    # does not undo a user's cancel: it is redone on the record as the tick left it
    update(instance, rescue_id, canceled)
    stopped, unreachable = [], []
    for run in _busy(instance, rescue_id):
        try:
            cancelled = instance.run_coordinator.cancel_run(run.run_id)
        except Exception:  # its code server or worker is gone (a killed `dagster dev`)
            cancelled = False
        if cancelled:
            stopped.append(run.run_id[:8])
        elif run.status in (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED):
            instance.report_run_canceled(run, message=f"rescue {rescue_id} canceled")
            stopped.append(run.run_id[:8])
        else:  # never claim a termination that did not happen
            unreachable.append(run.run_id[:8])
    message = f"canceled ({who})"
    if stopped:
        message += f"; terminated run(s) {', '.join(stopped)}"
    if unreachable:
        message += (
            f"; could not reach run(s) {', '.join(unreachable)} to terminate them: a run whose "
            "worker is gone is marked failed once silent for "
            f"{liveness.silent_seconds():.0f} s (a resume then starts); a live one: Runs -> "
            "Terminate"
        )
    if not stopped and not unreachable:
        message += "; no run was in flight"

    def ended(record: dict[str, Any]) -> None:
        if record["status"] != CANCELED:  # resumed meanwhile: that resume stands
            raise RescueError(
                f"rescue {rescue_id} was resumed while this cancel ran (now {record['status']}); "
                f"the cancel did: {message}"
            )
        record["message"] = message
        record["ended_at"] = datetime.now(UTC).isoformat()

    record = update(instance, rescue_id, ended)
    announce_end(instance, record, keys)
    return record
