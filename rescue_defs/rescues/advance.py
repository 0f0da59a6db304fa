"""Advance a rescue stage by stage: what `rescue_sensor` does on every tick.

Runs are only ever launched by `rescue_sensor` (one place decides what may start), as runs of
`rescue_step_job` with the step's models as the run's asset selection. Why a sensor and not one
orchestrating op: an op waiting for other runs would hold a run slot for the whole rescue, and
with the bundled DuckDB warehouse (one run at a time) the runs it waits for could never start.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg
import networkx as nx

from rescue_defs.checks.proof import PROOF_CHECK
from rescue_defs.planning.manifest import DbtManifest
from rescue_defs.rescues import liveness, markers
from rescue_defs.rescues.facts import run_models, runs_in_flight
from rescue_defs.rescues.heavy import heavy_wait
from rescue_defs.rescues.lifecycle import MAX_PROOF_ESCALATIONS, escalate
from rescue_defs.rescues.outcomes import (
    covered_steps,
    failed_checks,
    latest_by_step,
    materialized,
    step_runs,
)
from rescue_defs.rescues.proving import proves, settle_proof
from rescue_defs.rescues.report import finish
from rescue_defs.rescues.requests import STEP_JOB, step_request, steps_request
from rescue_defs.rescues.store import (
    CANCELED,
    FAILED,
    SUCCEEDED,
    TAG_ID,
    TAG_SANDBOX,
    TAG_STEP,
    save,
)

__all__ = ["STEP_JOB", "Tick", "advance", "settle", "step_request"]


@dataclass
class Tick:
    requests: list[dg.RunRequest]
    messages: list[str]


def stop(instance, record, keys, status: str, message: str) -> Tick:
    """End the rescue with `status` and report it; a proof its run did not reach is left to
    prove on resume."""
    record["status"] = status
    record["message"] = message
    proof = record.get("proof") or {}
    if status != SUCCEEDED and proof.get("status") == "running":
        # its run ended before proving: a resume proves afresh (the run's tag names this try)
        proof.update(status="pending", attempt=proof.get("attempt", 0) + 1)
    finish(instance, record, keys)
    return Tick([], [message])


MAX_AUTO_RESUMES = 1


def _died(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Failed without any step failing: the run worker died, or run monitoring ended it."""
    return not instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE, limit=1
    ).records


def _auto_resume(instance, record, keys, where: str, run: dg.DagsterRun) -> Tick:
    from rescue_defs.rescues.lifecycle import resume

    record["auto_resumes"] = record.get("auto_resumes", 0) + 1
    save(instance, record)
    resumed = resume(instance, record["id"], keys)
    why = "died without a step failing" if _died(instance, run) else "failed"
    resumed["message"] = (
        f"{where} {why} ({run.run_id[:8]}): resumed automatically "
        f"(once; the next failure stops the rescue for a human); {resumed['message']}"
    )
    save(instance, resumed)
    return Tick([], [resumed["message"]])


def settle(
    instance: dg.DagsterInstance, record: dict[str, Any], keys: Mapping[str, dg.AssetKey]
) -> Tick | None:
    """What the rescue's finished runs decide, launching nothing: stop it (failed, canceled,
    or succeeded when every step is done and nothing is left to prove) or resume it
    automatically. None: nothing to settle now. `rescue launch --wait` calls it while it
    waits, so the rescue ends when its run does, not at the sensor's next tick."""
    settled = _settle(instance, record, keys)
    if isinstance(settled, Tick):
        return settled
    done, _ = settled
    if len(done) == len(record["steps"]) and (record.get("proof") or {}).get("status") == "running":
        # the proof's run ended: its verdict ends the rescue, unless models differ and are
        # to be rebuilt (rescue_sensor escalates: it plans what they feed)
        proven = settle_proof(instance, record, keys)
        if isinstance(proven, tuple) and not _escalates(record):
            return stop(instance, record, keys, *proven)
    return None


def _escalates(record: dict[str, Any]) -> bool:
    return bool(record["proof"].get("differing")) and (
        record.get("proof_escalations", 0) < MAX_PROOF_ESCALATIONS
    )


def _settle(instance, record, keys) -> Tick | tuple[set[int], dict]:
    """A Tick when the rescue ended or was resumed; else the steps done and the latest run of
    each (step, attempt)."""
    rescue_id = record["id"]
    # a run whose worker died with everything around it stays STARTED: failed here, it is
    # settled as any dead run (liveness.py)
    latest = latest_by_step(liveness.fail_silent(instance, step_runs(instance, rescue_id)))
    done: set[int] = set()
    failed: dict[str, list[dg.AssetCheckKey]] = {}  # per run: its steps share one (a stage each)
    for step in record["steps"]:
        run = latest.get((step["index"], step["attempt"]))
        if not step["remaining"]:
            done.add(step["index"])
            continue
        if run is None or run.status not in (
            dg.DagsterRunStatus.SUCCESS,
            dg.DagsterRunStatus.CANCELED,
            dg.DagsterRunStatus.FAILURE,
        ):
            continue
        # a proof in the same run is settled after the steps (settle_proof), not as a step's
        if run.run_id not in failed:
            failed[run.run_id] = failed_checks(instance, run.run_id)
        bad = [c for c in failed[run.run_id] if c.name != PROOF_CHECK]
        if run.status == dg.DagsterRunStatus.SUCCESS and not bad:
            done.add(step["index"])
            continue
        where = _where(instance, record, step, run, keys, bad)
        shown = [c.to_user_string() for c in bad]
        if run.status == dg.DagsterRunStatus.SUCCESS:
            return stop(
                instance,
                record,
                keys,
                FAILED,
                f"stopped: {where} succeeded but blocking checks failed: {', '.join(shown)}",
            )
        if run.status == dg.DagsterRunStatus.CANCELED:
            return stop(
                instance,
                record,
                keys,
                CANCELED,
                f"canceled: {where} was terminated ({run.run_id[:8]}); "
                f"`rescue resume {rescue_id}` rebuilds what is missing",
            )
        if (record.get("auto") or _died(instance, run)) and record.get(
            "auto_resumes", 0
        ) < MAX_AUTO_RESUMES:
            # the worker died or outlived its max_runtime (run monitoring failed the run), or
            # a rescue nobody typed failed (no one is watching it): resume once without a human
            return _auto_resume(instance, record, keys, where, run)
        why = f"; blocking checks failed: {', '.join(shown)}" if bad else ""
        return stop(
            instance,
            record,
            keys,
            FAILED,
            f"stopped: {where} failed ({run.run_id[:8]}){why}; `rescue resume {rescue_id}` "
            "rebuilds what is missing or failed validation",
        )
    if len(done) == len(record["steps"]) and (record.get("proof") or {}).get("status") not in (
        "pending",
        "running",
    ):
        return stop(instance, record, keys, SUCCEEDED, "every planned model was rebuilt")
    return done, latest


def advance(
    instance: dg.DagsterInstance,
    record: dict[str, Any],
    keys: Mapping[str, dg.AssetKey],
    manifest: DbtManifest,
    checks_of=None,
    claimed: set[str] | None = None,
    heavy_busy: set[str] | None = None,
    launcher: str | None = None,
) -> Tick:
    """One look at a rescue: settle finished steps, launch what may start, say what waits.

    `claimed`: models that runs requested earlier in the same tick will write (other rescues);
    they count as in flight, so one tick never requests two runs writing the same model.
    `launcher`: who decides (rescue_sensor, the CLI, see markers.py); the record says so until
    the requested runs exist, and the other launcher starts nothing of them meanwhile."""
    rescue_id = record["id"]
    claimed = set() if claimed is None else claimed
    settled = _settle(instance, record, keys)
    if isinstance(settled, Tick):
        return settled
    done, latest = settled
    names = record["names"]
    submitting = markers.pending(instance, record, latest, ignore=launcher)
    if submitting is not None:  # the other launcher starts these: not twice, none over them
        claimed |= set(submitting)
        by = record[markers.MARKER]["by"]
        return Tick([], [f"rescue {rescue_id}: {by} is starting its run"])
    if len(done) == len(record["steps"]):  # every model rebuilt; the proof is left
        settled_proof = settle_proof(instance, record, keys)
        if isinstance(settled_proof, dg.RunRequest):
            record["proof"]["status"] = "running"
            record["message"] = "every planned model was rebuilt; proving the incremental ones"
            if launcher:
                markers.mark(record, [settled_proof], launcher)
            save(instance, record)
            return Tick([settled_proof], [])
        if settled_proof is None:
            return Tick([], [f"rescue {rescue_id}: proof run in progress"])
        status, message = settled_proof
        if _escalates(record):
            # never a "succeeded" on rows a from-scratch build would not have: rebuild them
            graph = manifest.model_graph
            down = {m: nx.descendants(graph, m) for m in record["proof"]["differing"]}
            escalated = escalate(instance, record, down)
            return Tick([], [f"rescue {rescue_id}: {escalated['message']}"])
        return stop(instance, record, keys, status, message)

    if not latest and record.get("heavy") and not record.get("start_now"):
        wait = heavy_wait(record, heavy_busy or set())
        if wait:
            if record.get("message") != wait:
                record["message"] = wait
                record["deferred"] = wait
                save(instance, record)
            return Tick([], [f"rescue {rescue_id}: {wait}"])
    if record.get("heavy") and heavy_busy is not None:
        heavy_busy.add(rescue_id)
    everything = frozenset(keys)
    by_key = {k: uid for uid, k in keys.items()}
    # sandbox runs write the sandbox copy, prod runs prod: only runs of the same kind collide
    sandbox = bool(record.get("sandbox"))
    others = [
        r
        for r in runs_in_flight(instance)
        if r.tags.get(TAG_ID) != rescue_id and (r.tags.get(TAG_SANDBOX) == "true") == sandbox
    ]
    chain = _chain(record, done, latest)
    if chain and not _waits(chain, others, claimed, by_key, everything, names):
        claimed |= {m for step in chain for m in step["remaining"]}
        prove = proves(record, done, chain)
        request = steps_request(record, chain, keys, checks_of, prove)
        if prove:
            record["proof"]["status"] = "running"
        record["message"] = (
            f"launched one run for steps {chain[0]['index'] + 1}-{chain[-1]['index'] + 1}, "
            "stage after stage (nothing else writes their models)"
        )
        if launcher:
            markers.mark(record, [request], launcher)
        save(instance, record)  # before the request leaves: a concurrent change drops it
        return Tick([request], [])
    requests, messages = [], []
    for step in record["steps"]:
        index = step["index"]
        if index in done or (index, step["attempt"]) in latest:
            continue
        if not all(a in done for a in step["after"]):
            continue
        models = set(step["remaining"])
        waits = _waits([step], others, claimed, by_key, everything, names)
        if waits:
            messages.append(
                f"step {index + 1} ({step['stage']}) of rescue {rescue_id} waits: "
                + "; ".join(waits)
            )
            continue
        claimed |= models
        prove = proves(record, done, [step])
        requests.append(step_request(record, step, keys, checks_of, prove))
        if prove:
            record["proof"]["status"] = "running"
    if messages:
        record["message"] = messages[0]
    elif requests:
        numbers = ", ".join(str(int(r.tags[TAG_STEP]) + 1) for r in requests)
        record["message"] = f"launched step(s) {numbers} of {len(record['steps'])}"
    if launcher and requests:
        markers.mark(record, requests, launcher)
    save(instance, record)  # before the requests leave: a concurrent change drops them
    return Tick(requests, messages)


def _waits(steps, others, claimed, by_key, everything, names) -> list[str]:
    """Why these steps may not start now: another run writes, or was requested in this tick
    to write, some of their models."""
    models = {m for step in steps for m in step["remaining"]}
    waits = []
    for r in others:
        overlap = run_models(r, by_key, everything) & models
        if overlap:
            waits.append(
                f"run {r.run_id[:8]} ({r.job_name}, {r.status.value.lower()}) writes "
                + ", ".join(sorted(names.get(m, m) for m in overlap)[:3])
            )
    if models & claimed:
        waits.append(
            "a run requested in this tick writes "
            + ", ".join(sorted(names.get(m, m) for m in models & claimed)[:3])
        )
    return waits


def _chain(record, done: set[int], latest) -> list[dict]:
    """Every step left, when they can run as one run stage after stage: none has a run at its
    attempt yet, each comes after steps done or before it in the chain, and the rescue did not
    ask for separate runs. Empty otherwise (one step left is a plain step run)."""
    if record.get("separate_runs"):
        return []
    left = [s for s in record["steps"] if s["index"] not in done]
    if len(left) < 2 or any((s["index"], s["attempt"]) in latest for s in left):
        return []
    seen = set(done)
    for step in left:  # steps are numbered in dependency order
        if not all(a in seen for a in step["after"]):
            return []
        seen.add(step["index"])
    return left


def _where(instance, record, step, run: dg.DagsterRun, keys, bad: list[dg.AssetCheckKey]) -> str:
    """The step a run stopped in. For a several-step run: the first step with a model the run
    did not build or that failed a blocking check (later ones never started)."""
    if len(covered_steps(run)) < 2:
        return f"step {step['index'] + 1} ({step['stage']})"
    built = materialized(instance, [run.run_id])
    covered = {index for index, _ in covered_steps(run)}
    failing = {check.asset_key for check in bad}
    for part in record["steps"]:
        if part["index"] in covered and any(
            keys[m] not in built or keys[m] in failing for m in part["remaining"]
        ):
            return (
                f"step {part['index'] + 1} ({part['stage']}, in run {run.run_id[:8]} with "
                f"steps {min(covered) + 1}-{max(covered) + 1})"
            )
    return f"the run of steps {min(covered) + 1}-{max(covered) + 1} ({run.run_id[:8]})"
