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

from rescue_defs.planning.manifest import DbtManifest
from rescue_defs.rescues.facts import run_models, runs_in_flight
from rescue_defs.rescues.outcomes import failed_checks, latest_by_step, step_runs
from rescue_defs.rescues.proving import settle_proof
from rescue_defs.rescues.report import finish
from rescue_defs.rescues.store import (
    CANCELED,
    FAILED,
    SUCCEEDED,
    TAG_ATTEMPT,
    TAG_GROUP,
    TAG_ID,
    TAG_REASON,
    TAG_SANDBOX,
    TAG_STAGE,
    TAG_STEP,
    save,
)

STEP_JOB = "rescue_step_job"


@dataclass
class Tick:
    requests: list[dg.RunRequest]
    messages: list[str]


def _stop(instance, record, keys, status: str, message: str) -> Tick:
    record["status"] = status
    record["message"] = message
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


def advance(
    instance: dg.DagsterInstance,
    record: dict[str, Any],
    keys: Mapping[str, dg.AssetKey],
    manifest: DbtManifest,
    checks_of=None,
    claimed: set[str] | None = None,
    heavy_busy: set[str] | None = None,
) -> Tick:
    """One look at a rescue: settle finished steps, launch what may start, say what waits.

    `claimed`: models that runs requested earlier in the same tick will write (other rescues);
    they count as in flight, so one tick never requests two runs writing the same model."""
    rescue_id = record["id"]
    claimed = set() if claimed is None else claimed
    latest = latest_by_step(step_runs(instance, rescue_id))
    names = record["names"]
    done: set[int] = set()
    for step in record["steps"]:
        run = latest.get((step["index"], step["attempt"]))
        where = f"run {step['index'] + 1} ({step['stage']})"
        if not step["remaining"]:
            done.add(step["index"])
        elif run is None:
            continue
        elif run.status == dg.DagsterRunStatus.SUCCESS:
            bad = failed_checks(instance, run.run_id)
            if bad:
                return _stop(
                    instance,
                    record,
                    keys,
                    FAILED,
                    f"stopped: {where} succeeded but blocking checks failed: {', '.join(bad)}",
                )
            done.add(step["index"])
        elif run.status == dg.DagsterRunStatus.CANCELED:
            return _stop(
                instance,
                record,
                keys,
                CANCELED,
                f"canceled: {where} was terminated ({run.run_id[:8]}); "
                f"`rescue resume {rescue_id}` rebuilds what is missing",
            )
        elif (
            run.status == dg.DagsterRunStatus.FAILURE
            and (record.get("auto") or _died(instance, run))
            and (record.get("auto_resumes", 0) < MAX_AUTO_RESUMES)
        ):
            # the worker died or outlived its max_runtime (run monitoring failed the run), or
            # a rescue nobody typed failed (no one is watching it): resume once without a human
            return _auto_resume(instance, record, keys, where, run)
        elif run.status == dg.DagsterRunStatus.FAILURE:
            bad = failed_checks(instance, run.run_id)
            why = f"; blocking checks failed: {', '.join(bad)}" if bad else ""
            return _stop(
                instance,
                record,
                keys,
                FAILED,
                f"stopped: {where} failed ({run.run_id[:8]}){why}; `rescue resume {rescue_id}` "
                "rebuilds what is missing or failed validation",
            )
    if len(done) == len(record["steps"]):
        if (record.get("proof") or {}).get("status") in ("pending", "running"):
            settled = settle_proof(instance, record, keys)
            if isinstance(settled, dg.RunRequest):
                record["proof"]["status"] = "running"
                record["message"] = "every planned model was rebuilt; proving the incremental ones"
                save(instance, record)
                return Tick([settled], [])
            if settled is None:
                return Tick([], [f"rescue {rescue_id}: proof run in progress"])
            status, message = settled
            return _stop(instance, record, keys, status, message)
        return _stop(instance, record, keys, SUCCEEDED, "every planned model was rebuilt")

    if not latest and record.get("heavy") and not record.get("start_now"):
        wait = _heavy_wait(record, heavy_busy or set())
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
    requests, messages = [], []
    for step in record["steps"]:
        index = step["index"]
        if index in done or (index, step["attempt"]) in latest:
            continue
        if not all(a in done for a in step["after"]):
            continue
        models = set(step["remaining"])
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
        if waits:
            messages.append(
                f"run {index + 1} ({step['stage']}) of rescue {rescue_id} waits: "
                + "; ".join(waits)
            )
            continue
        claimed |= models
        requests.append(step_request(record, step, keys, checks_of))
    if messages:
        record["message"] = messages[0]
    elif requests:
        record["message"] = f"launched run(s) {', '.join(r.tags[TAG_STEP] for r in requests)}"
    save(instance, record)  # before the requests leave: a concurrent change drops them
    return Tick(requests, messages)


def _heavy_wait(record: Mapping[str, Any], heavy_busy: set[str]) -> str:
    """Why a heavy rescue may not start yet ("" when it may): peak hours (the playbook's
    "Scheduling Heavy Reloads"), or another heavy rescue running (heavy ones never overlap)."""
    from datetime import UTC

    from rescue_defs.planning.windows import at_peak, window_opens
    from rescue_defs.project import business_timezone, clock_now, peak_hours

    names = ", ".join(record["names"].get(m, m) for m in record["heavy"][:3])
    others = sorted(heavy_busy - {record["id"]})
    if others:
        return f"heavy ({names}): waits for heavy rescue {others[0]} to end"
    now, zone, peak = clock_now().replace(tzinfo=UTC), business_timezone(), peak_hours()
    if at_peak(now, zone, peak):
        opens = window_opens(now, zone, peak)
        return (
            f"heavy ({names}) at peak hours: waits for the low-traffic window at "
            f"{opens:%Y-%m-%d %H:%M} {zone} (`rescue launch --now` starts at once)"
        )
    return ""


def step_request(
    record: Mapping[str, Any],
    step: Mapping[str, Any],
    keys: Mapping[str, dg.AssetKey],
    checks_of=None,
) -> dg.RunRequest:
    """The run of one step. `checks_of(asset keys) -> check keys` lists the asset checks of the
    step's models, to plan only the dbt tests among them (None: plan every check)."""
    from rescue_defs.assets.dbt import DBT_ASSETS_NAME
    from rescue_defs.checks.coverage import VALIDATION_CHECKS

    remaining = step["remaining"]
    full_refresh = [m for m in step["full_refresh"] if m in remaining]
    selection = [keys[m] for m in remaining]
    # the models' dbt tests are planned as usual; the validation checks run anyway in rescue
    # runs (see checks/validation.py) without a stored "planned" event each
    check_keys = (
        [c for c in checks_of(selection) if c.name not in VALIDATION_CHECKS]
        if checks_of is not None
        else None
    )
    return dg.RunRequest(
        run_key=f"{record['id']}:{step['index']}:{step['attempt']}",
        job_name=STEP_JOB,
        asset_selection=selection,
        asset_check_keys=check_keys,
        run_config={
            "ops": {
                DBT_ASSETS_NAME: {
                    "config": {
                        "full_refresh": full_refresh,
                        "sandbox": bool(record.get("sandbox")),
                        "reason": f"rescue {record['id']} ({record['reason']}), "
                        f"run {step['index'] + 1}/{len(record['steps'])} [{step['stage']}]",
                    }
                }
            }
        },
        tags={
            TAG_ID: record["id"],
            TAG_STAGE: step["stage"],
            TAG_GROUP: str(step["index"]),
            TAG_STEP: str(step["index"]),
            TAG_ATTEMPT: str(step["attempt"]),
            TAG_REASON: "resume" if step["attempt"] else record["reason"],
            **record.get("tags", {}),
            **({TAG_SANDBOX: "true"} if record.get("sandbox") else {}),
            # run monitoring fails a run that outlives this (a dead run worker leaves its run
            # STARTED for good, holding the queue); `rescue resume` continues from there
            "dagster/max_runtime": str(
                record.get("max_runtime") or default_max_runtime(record, step)
            ),
        },
    )


MIN_MAX_RUNTIME = 900
RUNTIME_FACTOR = 6


def default_max_runtime(record: Mapping[str, Any], step: Mapping[str, Any]) -> int:
    """Six times the step's estimate, at least 15 minutes: far from a slow run, near enough
    that a dead one does not hold the queue through the night."""
    groups = record.get("plan", {}).get("groups", [])
    expected = next(
        (g.get("expected_seconds", 0) for g in groups if g.get("index") == step["index"]), 0
    )
    return int(max(MIN_MAX_RUNTIME, RUNTIME_FACTOR * float(expected or 0)))
