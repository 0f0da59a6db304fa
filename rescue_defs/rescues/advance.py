"""A rescue's life: register its plan, advance it stage by stage, resume, cancel.

Runs are only ever launched by `rescue_sensor` (one place decides what may start), as runs of
`rescue_step_job` with the step's models as the run's asset selection. Why a sensor and not one
orchestrating op: an op waiting for other runs would hold a run slot for the whole rescue, and
with the bundled DuckDB warehouse (one run at a time) the runs it waits for could never start.
"""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from rescue_defs.planning.manifest import DbtManifest
from rescue_defs.planning.plan import Plan
from rescue_defs.planning.render import render_markdown
from rescue_defs.rescues.facts import IN_FLIGHT, run_models, runs_in_flight
from rescue_defs.rescues.outcomes import failed_checks, latest_by_step, model_outcomes, step_runs
from rescue_defs.rescues.report import finish, publish
from rescue_defs.rescues.store import (
    ACTIVE,
    CANCELED,
    DRY_RUN,
    ENDED,
    FAILED,
    SUCCEEDED,
    TAG_ATTEMPT,
    TAG_GROUP,
    TAG_ID,
    TAG_REASON,
    TAG_SANDBOX,
    TAG_STAGE,
    TAG_STEP,
    RescueError,
    load,
    save,
)

STEP_JOB = "rescue_step_job"


def new_rescue_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


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
) -> dict[str, Any]:
    """Record a planned rescue and publish its plan; the sensor launches its runs. Blocked
    plans need `force`. A sandbox rescue refreshes the sandbox copy of prod first."""
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
    record = {
        "id": rescue_id or new_rescue_id(),
        "version": 0,
        "sandbox": sandbox,
        "max_runtime": max_runtime,
        "created_at": datetime.now(UTC).isoformat(),
        "status": DRY_RUN if dry_run else ACTIVE,
        "reason": plan.request.reason,
        "forced": bool(blocks and force),
        "blocks": blocks,
        "plan": plan.to_dict(),
        "plan_markdown": render_markdown(plan),
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
    }
    save(instance, record)
    publish(instance, record, keys)
    return record


@dataclass
class Tick:
    requests: list[dg.RunRequest]
    messages: list[str]


def _stop(instance, record, keys, status: str, message: str) -> Tick:
    record["status"] = status
    record["message"] = message
    finish(instance, record, keys)
    return Tick([], [message])


def advance(
    instance: dg.DagsterInstance,
    record: dict[str, Any],
    keys: Mapping[str, dg.AssetKey],
    manifest: DbtManifest,
    checks_of=None,
    claimed: set[str] | None = None,
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
        return _stop(instance, record, keys, SUCCEEDED, "every planned model was rebuilt")

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


def step_request(
    record: Mapping[str, Any],
    step: Mapping[str, Any],
    keys: Mapping[str, dg.AssetKey],
    checks_of=None,
) -> dg.RunRequest:
    """The run of one step. `checks_of(asset keys) -> check keys` lists the asset checks of the
    step's models, to plan only the dbt tests among them (None: plan every check)."""
    from rescue_defs.assets.dbt import DBT_ASSETS_NAME
    from rescue_defs.checks.rules import MAX_DATE_CHECK, ROW_COUNT_CHECK

    remaining = step["remaining"]
    full_refresh = [m for m in step["full_refresh"] if m in remaining]
    selection = [keys[m] for m in remaining]
    # the models' dbt tests are planned as usual; the validation checks run anyway in rescue
    # runs (see checks/validation.py) without a stored "planned" event each
    check_keys = (
        [c for c in checks_of(selection) if c.name not in (ROW_COUNT_CHECK, MAX_DATE_CHECK)]
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
            **({TAG_SANDBOX: "true"} if record.get("sandbox") else {}),
            # run monitoring fails a run that outlives this; `rescue resume` continues from there
            **(
                {"dagster/max_runtime": str(record["max_runtime"])}
                if record.get("max_runtime")
                else {}
            ),
        },
    )


def _busy(instance, rescue_id: str) -> list[dg.DagsterRun]:
    return [
        r for r in step_runs(instance, rescue_id) if r.status in IN_FLIGHT and TAG_STEP in r.tags
    ]


def resume(
    instance: dg.DagsterInstance,
    rescue_id: str,
    keys: Mapping[str, dg.AssetKey],
    force: bool = False,
):
    """Plan minus materialized: every unfinished step keeps only the models not yet rebuilt by
    this rescue, or rebuilt but unchecked or failing a check, with the same refresh flags."""
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
            if not (outcomes[m].rebuilt and outcomes[m].checks and not outcomes[m].failed)
        ]
        if step["remaining"]:
            step["attempt"] += 1  # a new run key: the sensor launches it afresh
        left += len(step["remaining"])
    if record["status"] == DRY_RUN and record.get("blocks"):
        record["forced"] = True
    record["status"] = ACTIVE if left else SUCCEEDED
    record["message"] = f"resumed: {left} model(s) left to rebuild"
    if left:
        save(instance, record)
    else:
        finish(instance, record, keys)
    return record


def cancel(
    instance: dg.DagsterInstance,
    rescue_id: str,
    keys: Mapping[str, dg.AssetKey],
    who: str = "cli",
) -> dict[str, Any]:
    """Stop a rescue: no further run starts, its runs in flight are terminated, the report
    says what is left. `rescue resume` can pick it up again later."""
    record = load(instance, rescue_id)
    if record["status"] in ENDED:
        raise RescueError(f"rescue {rescue_id} already {record['status']}: nothing to cancel")
    record["status"] = CANCELED
    record["message"] = f"canceled ({who})"
    save(instance, record)  # first: the sensor launches nothing more from here on
    stopped, unreachable = [], []
    for run in _busy(instance, rescue_id):
        if instance.run_coordinator.cancel_run(run.run_id):
            stopped.append(run.run_id[:8])
        elif run.status in (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED):
            instance.report_run_canceled(run, message=f"rescue {rescue_id} canceled")
            stopped.append(run.run_id[:8])
        else:  # never claim a termination that did not happen
            unreachable.append(run.run_id[:8])
    record = load(instance, rescue_id)
    record["message"] = f"canceled ({who})"
    if stopped:
        record["message"] += f"; terminated run(s) {', '.join(stopped)}"
    if unreachable:
        record["message"] += (
            f"; could not reach run(s) {', '.join(unreachable)} to terminate them: terminate "
            "them in the UI (Runs -> Terminate)"
        )
    if not stopped and not unreachable:
        record["message"] += "; no run was in flight"
    finish(instance, record, keys)
    return record
