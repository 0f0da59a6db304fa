"""Rescues on a Dagster instance: record, launch stage by stage, guard, resume, report.

A rescue's record (its plan and steps) is kept in the instance's key-value store, so the CLI,
the UI job and the sensor all see the same rescue, on SQLite or Postgres storage alike. Runs
are only ever launched by `rescue_sensor` (one place decides what may start), as runs of
`rescue_step_job` with the step's models as the run's asset selection.

Why a sensor and not one orchestrating op: an op waiting for other runs would hold a run slot
for the whole rescue, and with the bundled DuckDB warehouse (one run at a time) the runs it
waits for could never start.
"""

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from rescue_defs.planning.checklist import ActiveRun, Environment, UpcomingRun
from rescue_defs.planning.cost import History
from rescue_defs.planning.manifest import DbtManifest
from rescue_defs.planning.plan import Plan, Planner, PlanRequest
from rescue_defs.planning.render import render_markdown

STEP_JOB = "rescue_step_job"
TAG_ID, TAG_STAGE, TAG_GROUP, TAG_REASON, TAG_STEP, TAG_ATTEMPT = (
    "rescue/id",
    "rescue/stage",
    "rescue/group",
    "rescue/reason",
    "rescue/step",
    "rescue/attempt",
)
TAG_SANDBOX = "rescue/sandbox"
_INDEX = "rescue/index"
ACTIVE, SUCCEEDED, FAILED, DRY_RUN = "active", "succeeded", "failed", "dry_run"
IN_FLIGHT = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
)


class RescueError(Exception):
    """A rescue that cannot be launched or resumed; the message says why."""


# ---------------------------------------------------------------- records


def _key(rescue_id: str) -> str:
    return f"rescue/{rescue_id}"


def save(instance: dg.DagsterInstance, record: Mapping[str, Any]) -> None:
    storage = instance.run_storage
    index = json.loads(storage.get_cursor_values({_INDEX}).get(_INDEX) or "[]")
    if record["id"] not in index:
        index.append(record["id"])
    storage.set_cursor_values({_key(record["id"]): json.dumps(record), _INDEX: json.dumps(index)})


def load(instance: dg.DagsterInstance, rescue_id: str) -> dict[str, Any]:
    raw = instance.run_storage.get_cursor_values({_key(rescue_id)}).get(_key(rescue_id))
    if not raw:
        raise RescueError(f"no rescue {rescue_id!r} on this Dagster instance")
    return json.loads(raw)


def rescue_ids(instance: dg.DagsterInstance) -> list[str]:
    storage = instance.run_storage
    return json.loads(storage.get_cursor_values({_INDEX}).get(_INDEX) or "[]")


# ---------------------------------------------------------------- instance facts for planning


def _run_models(run: dg.DagsterRun, keys: Mapping[dg.AssetKey, str], everything: frozenset[str]):
    if run.tags.get("rescue/kind") == "start":
        return frozenset()  # rescue_job only plans and records; it writes no table
    if run.asset_selection is None:
        # a run of a whole job writes whatever the job builds: assume all of it
        return everything
    return frozenset(keys[k] for k in run.asset_selection if k in keys)


def environment(
    instance: dg.DagsterInstance,
    manifest: DbtManifest,
    keys: Mapping[str, dg.AssetKey],
    schedules: Iterable[tuple[str, datetime]] = (),
    now: datetime | None = None,
    exclude_rescue: str | None = None,
) -> Environment:
    """What the checklist needs to know about the instance right now."""
    by_key = {k: uid for uid, k in keys.items()}
    everything = frozenset(manifest.models)
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=list(IN_FLIGHT)))
    active = tuple(
        ActiveRun(run.run_id, run.status.value, _run_models(run, by_key, everything), run.job_name)
        for run in runs
        if not (exclude_rescue and run.tags.get(TAG_ID) == exclude_rescue)
    )
    coordinator = instance.run_coordinator
    limit = getattr(coordinator, "max_concurrent_runs", None)
    return Environment(
        now=now or datetime.now(UTC),
        active_runs=active,
        upcoming_runs=tuple(UpcomingRun(name, at, everything) for name, at in schedules),
        max_concurrent_runs=limit if isinstance(limit, int) and limit >= 0 else None,
        known=True,
    )


def history(instance: dg.DagsterInstance, keys: Mapping[str, dg.AssetKey], limit: int = 5):
    """Recent step durations per model from the instance: a materialization's run step time.

    dagster-dbt reports each model's own execution time as `Execution Duration` metadata."""
    incremental: dict[str, list[float]] = {}
    for uid, key in keys.items():
        events = instance.fetch_materializations(key, limit=limit).records
        durations = []
        for record in events:
            meta = record.asset_materialization.metadata if record.asset_materialization else {}
            value = meta.get("Execution Duration")
            if value is not None:
                durations.append(float(value.value))
        if durations:
            incremental[uid] = durations
    return History(incremental=incremental)


# ---------------------------------------------------------------- launching


def new_rescue_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def register(
    instance: dg.DagsterInstance,
    plan: Plan,
    *,
    force: bool = False,
    dry_run: bool = False,
    rescue_id: str | None = None,
    sandbox: bool = False,
    max_runtime: int | None = None,
) -> dict[str, Any]:
    """Record a planned rescue; the sensor launches its runs. Blocked plans need `force`.
    A sandbox rescue refreshes the sandbox copy of prod first (see rescue_defs.sandbox)."""
    if plan.blocks and not force and not dry_run:
        raise RescueError(
            "the plan is blocked: "
            + "; ".join(f"{i.key}: {i.reason}" for i in plan.blocks)
            + " (launch with force to override)"
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
        "sandbox": sandbox,
        "max_runtime": max_runtime,
        "created_at": datetime.now(UTC).isoformat(),
        "status": DRY_RUN if dry_run else ACTIVE,
        "reason": plan.request.reason,
        "forced": bool(plan.blocks and force),
        "plan": plan.to_dict(),
        "plan_markdown": render_markdown(plan),
        "names": dict(plan.names),
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
        "message": "waiting for rescue_sensor to launch the first run",
    }
    save(instance, record)
    return record


def step_runs(instance: dg.DagsterInstance, rescue_id: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(tags={TAG_ID: rescue_id})))


def _latest_by_step(runs: list[dg.DagsterRun]) -> dict[tuple[int, int], dg.DagsterRun]:
    latest: dict[tuple[int, int], dg.DagsterRun] = {}
    for run in runs:
        if TAG_STEP in run.tags:
            key = (int(run.tags[TAG_STEP]), int(run.tags.get(TAG_ATTEMPT, 0)))
            latest.setdefault(key, run)  # runs come newest first
    return latest


def failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Blocking (ERROR severity) checks that failed in a run."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    failed = []
    for record in records:
        data = record.event_log_entry.dagster_event.asset_check_evaluation_data
        if not data.passed and data.severity == dg.AssetCheckSeverity.ERROR:
            failed.append(f"{data.asset_key.to_user_string()}:{data.check_name}")
    return failed


def materialized(instance: dg.DagsterInstance, run_ids: Iterable[str]) -> set[dg.AssetKey]:
    done: set[dg.AssetKey] = set()
    for run_id in run_ids:
        done |= instance.get_asset_keys_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        )
    return done


@dataclass
class Tick:
    requests: list[dg.RunRequest]
    messages: list[str]


def advance(
    instance: dg.DagsterInstance,
    record: dict[str, Any],
    keys: Mapping[str, dg.AssetKey],
    manifest: DbtManifest,
    checks_of=None,
) -> Tick:
    """One look at a rescue: settle finished steps, launch what may start, say what waits."""
    rescue_id = record["id"]
    latest = _latest_by_step(step_runs(instance, rescue_id))
    names = record["names"]
    done: set[int] = set()
    messages: list[str] = []
    for step in record["steps"]:
        run = latest.get((step["index"], step["attempt"]))
        if not step["remaining"]:
            done.add(step["index"])
        elif run is None:
            continue
        elif run.status == dg.DagsterRunStatus.SUCCESS:
            bad = failed_checks(instance, run.run_id)
            if bad:
                record["status"] = FAILED
                record["message"] = (
                    f"stopped: run {step['index'] + 1} ({step['stage']}) succeeded but blocking "
                    f"checks failed: {', '.join(bad)}"
                )
                finish(instance, record, keys)
                return Tick([], [record["message"]])
            done.add(step["index"])
        elif run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
            bad = failed_checks(instance, run.run_id)
            why = f"; blocking checks failed: {', '.join(bad)}" if bad else ""
            record["status"] = FAILED
            record["message"] = (
                f"stopped: run {step['index'] + 1} ({step['stage']}) {run.status.value.lower()} "
                f"({run.run_id[:8]}){why}; `rescue resume {rescue_id}` rebuilds what is missing"
                " or failed validation"
            )
            finish(instance, record, keys)
            return Tick([], [record["message"]])
    if len(done) == len(record["steps"]):
        record["status"] = SUCCEEDED
        record["message"] = "every planned model was rebuilt"
        finish(instance, record, keys)
        return Tick([], [f"rescue {rescue_id} succeeded"])

    everything = frozenset(manifest.models)
    by_key = {k: uid for uid, k in keys.items()}
    # sandbox runs write the sandbox copy, prod runs prod: only runs of the same kind collide
    sandbox = bool(record.get("sandbox"))
    others = [
        r
        for r in instance.get_runs(filters=dg.RunsFilter(statuses=list(IN_FLIGHT)))
        if r.tags.get(TAG_ID) != rescue_id and (r.tags.get(TAG_SANDBOX) == "true") == sandbox
    ]
    requests = []
    for step in record["steps"]:
        index = step["index"]
        if index in done or (index, step["attempt"]) in latest:
            continue
        if not all(a in done for a in step["after"]):
            continue
        models = set(step["remaining"])
        blockers = [r for r in others if _run_models(r, by_key, everything) & models]
        if blockers:
            messages.append(
                f"run {index + 1} ({step['stage']}) of rescue {rescue_id} waits: "
                + "; ".join(
                    f"run {r.run_id[:8]} ({r.job_name}, {r.status.value.lower()}) writes "
                    + ", ".join(
                        sorted(
                            names.get(m, m) for m in _run_models(r, by_key, everything) & models
                        )[:3]
                    )
                    for r in blockers
                )
            )
            continue
        requests.append(step_request(record, step, keys, checks_of))
    if messages:
        record["message"] = messages[0]
    elif requests:
        record["message"] = f"launched run(s) {', '.join(r.tags[TAG_STEP] for r in requests)}"
    save(instance, record)
    return Tick(requests, messages)


def step_request(
    record: Mapping[str, Any],
    step: Mapping[str, Any],
    keys: Mapping[str, dg.AssetKey],
    checks_of=None,
) -> dg.RunRequest:
    """The run of one step. `checks_of(asset keys) -> check keys` lists the asset checks of the
    step's models, to plan only the dbt tests among them (None: plan every check)."""
    remaining = step["remaining"]
    full_refresh = [m for m in step["full_refresh"] if m in remaining]
    from rescue_defs.assets.dbt import DBT_ASSETS_NAME
    from rescue_defs.checks.rules import MAX_DATE_CHECK, ROW_COUNT_CHECK

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


def resume(instance: dg.DagsterInstance, rescue_id: str, keys: Mapping[str, dg.AssetKey]):
    """Plan minus materialized: every unfinished step keeps only the models not yet rebuilt by
    this rescue, with the same refresh flags; the sensor launches them."""
    record = load(instance, rescue_id)
    if record["status"] == SUCCEEDED:
        raise RescueError(f"rescue {rescue_id} already succeeded: nothing to resume")
    runs = step_runs(instance, rescue_id)
    busy = [r for r in runs if r.status in IN_FLIGHT]
    if busy:
        raise RescueError(
            f"rescue {rescue_id} still has run {busy[0].run_id[:8]} {busy[0].status.value}: "
            "wait for it or terminate it first"
        )
    outcomes = model_outcomes(instance, runs, keys)
    left = 0
    for step in record["steps"]:
        step["remaining"] = [
            m for m in step["remaining"] if not (outcomes[m].rebuilt and not outcomes[m].blocked)
        ]
        if step["remaining"]:
            step["attempt"] += 1  # a new run key: the sensor launches it afresh
        left += len(step["remaining"])
    record["status"] = ACTIVE if left else SUCCEEDED
    record["message"] = f"resumed: {left} model(s) left to rebuild"
    save(instance, record)
    return record


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    blocking: bool
    description: str


@dataclass
class ModelOutcome:
    """What the rescue's runs did to one planned model (latest run wins)."""

    rebuilt: bool = False
    checks: dict[str, CheckOutcome] | None = None

    @property
    def failed(self) -> list[CheckOutcome]:
        return [c for c in (self.checks or {}).values() if not c.passed]

    @property
    def blocked(self) -> bool:
        return any(c.blocking for c in self.failed)

    @property
    def validated(self) -> bool:
        """Rebuilt, and its row-count, max-date and dbt test checks all passed."""
        from rescue_defs.checks.rules import MAX_DATE_CHECK, ROW_COUNT_CHECK

        checks = self.checks or {}
        return (
            self.rebuilt
            and ROW_COUNT_CHECK in checks
            and MAX_DATE_CHECK in checks
            and not self.failed
        )


def model_outcomes(
    instance: dg.DagsterInstance,
    runs: Iterable[dg.DagsterRun],
    keys: Mapping[str, dg.AssetKey],
) -> dict[str, ModelOutcome]:
    by_key = {k: uid for uid, k in keys.items()}
    outcomes = {uid: ModelOutcome() for uid in keys}
    ordered = sorted(runs, key=lambda r: instance.get_run_record_by_id(r.run_id).create_timestamp)
    for run in ordered:
        if run.tags.get(TAG_SANDBOX) == "true":
            _sandbox_outcomes(instance, run.run_id, by_key, outcomes)
            continue
        for key in materialized(instance, [run.run_id]):
            if key in by_key:
                outcomes[by_key[key]].rebuilt = True
        records = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
        for record in records:
            data = record.event_log_entry.dagster_event.asset_check_evaluation_data
            uid = by_key.get(data.asset_key)
            if uid is None:
                continue
            outcome = outcomes[uid]
            if outcome.checks is None:
                outcome.checks = {}
            outcome.checks[data.check_name] = CheckOutcome(
                data.check_name,
                data.passed,
                data.severity == dg.AssetCheckSeverity.ERROR,
                data.description or "",
            )
    return outcomes


def _sandbox_outcomes(instance, run_id: str, by_key, outcomes) -> None:
    """Sandbox runs report observations carrying their verdicts (rescue_defs.sandbox)."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION
    ).records
    for record in records:
        observation = record.event_log_entry.dagster_event.asset_observation_data.asset_observation
        uid = by_key.get(observation.asset_key)
        if uid is None or "sandbox" not in observation.metadata:
            continue
        outcome = outcomes[uid]
        outcome.rebuilt = True
        outcome.checks = {}
        for name, value in observation.metadata.items():
            text = str(value.value)
            if text.startswith(("passed", "FAILED")):
                passed = text.startswith("passed")
                outcome.checks[name] = CheckOutcome(name, passed, not passed, text)


def report_markdown(
    instance: dg.DagsterInstance, record: Mapping[str, Any], keys, with_plan: bool = True
) -> str:
    """The rescue report: plan, runs, per-model outcome, failed checks, what is left."""
    rescue_id = record["id"]
    runs = step_runs(instance, rescue_id)
    outcomes = model_outcomes(instance, runs, keys)
    names = record["names"]
    planned = [m for step in record["steps"] for m in step["models"]]
    stage_of = {m: step["stage"] for step in record["steps"] for m in step["models"]}
    lines = [
        f"# Rescue {rescue_id}: {record['status']}"
        + (" (sandbox: nothing in prod was touched)" if record.get("sandbox") else ""),
        "",
        f"- reason: {record['reason'] or '(none)'}",
        f"- created: {record['created_at']}"
        + (" (checklist block overridden)" if record.get("forced") else ""),
        f"- state: {record['message']}",
        "",
        "## Runs",
        "",
        "| # | stage | attempt | run | status |",
        "|---|---|---|---|---|",
    ]
    for run in sorted(runs, key=lambda r: instance.get_run_record_by_id(r.run_id).create_timestamp):
        if TAG_STEP not in run.tags:
            continue
        step = int(run.tags[TAG_STEP])
        lines.append(
            f"| {step + 1} | {run.tags.get(TAG_STAGE, '')} | {run.tags.get(TAG_ATTEMPT, '0')} "
            f"| {run.run_id[:8]} | {run.status.value} |"
        )
    rebuilt = [m for m in planned if outcomes[m].rebuilt]
    validated = [m for m in planned if outcomes[m].validated]
    failing = [m for m in planned if outcomes[m].failed]
    lines += [
        "",
        f"## Models: {len(rebuilt)}/{len(planned)} rebuilt, {len(validated)} validated, "
        f"{len(failing)} failed a check",
        "",
        "| model | stage | rebuilt | validated | failed checks |",
        "|---|---|---|---|---|",
    ]
    for m in planned:
        o = outcomes[m]
        lines.append(
            f"| {names.get(m, m)} | {stage_of[m]} | {'yes' if o.rebuilt else 'no'} "
            f"| {'yes' if o.validated else 'no'} | {', '.join(c.name for c in o.failed)} |"
        )
    if failing:
        lines += ["", "## Failed checks", ""]
        for m in failing:
            for c in outcomes[m].failed:
                level = "blocking" if c.blocking else "warning"
                lines.append(f"- **{names.get(m, m)}** `{c.name}` ({level}): {c.description}")
    left = [m for m in planned if not outcomes[m].rebuilt]
    blocked = [m for m in planned if outcomes[m].rebuilt and outcomes[m].blocked]
    lines += ["", "## Left to do", ""]
    if not left and not blocked:
        lines.append("Nothing: every planned model was rebuilt and passed its blocking checks.")
    if left:
        lines.append(f"- not rebuilt ({len(left)}): " + ", ".join(names.get(m, m) for m in left))
    if blocked:
        lines.append(
            f"- rebuilt but failed a blocking check ({len(blocked)}): "
            + ", ".join(names.get(m, m) for m in blocked)
        )
    if left or blocked:
        lines.append(f"- then: `rescue resume {rescue_id}` rebuilds exactly these")
    if with_plan:
        lines += ["", "## Plan", "", record.get("plan_markdown", "")]
    return "\n".join(lines)


REPORT_ASSET = dg.AssetKey("rescue_report")


def finish(instance: dg.DagsterInstance, record: dict[str, Any], keys) -> None:
    """Save a rescue that reached an end state and publish its report on `rescue_report`."""
    save(instance, record)
    report = report_markdown(instance, record, keys)
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=REPORT_ASSET,
            description=f"rescue {record['id']}: {record['status']}",
            metadata={
                "rescue_id": record["id"],
                "status": record["status"],
                "reason": record["reason"],
                "report": dg.MetadataValue.md(report),
            },
            tags={TAG_ID: record["id"]},
        )
    )


def status_lines(instance: dg.DagsterInstance, rescue_id: str) -> list[str]:
    record = load(instance, rescue_id)
    latest = _latest_by_step(step_runs(instance, rescue_id))
    names = record["names"]
    lines = [f"rescue {rescue_id}: {record['status']} ({record['reason']}) - {record['message']}"]
    for step in record["steps"]:
        run = latest.get((step["index"], step["attempt"]))
        state = run.status.value if run else ("done" if not step["remaining"] else "waiting")
        left = ", ".join(names.get(m, m) for m in step["remaining"])
        lines.append(
            f"  run {step['index'] + 1} [{step['stage']}] {state}"
            + (f" ({run.run_id})" if run else "")
            + f": {len(step['models']) - len(step['remaining'])}/{len(step['models'])} rebuilt"
            + (f" before this attempt; left: {left}" if step["attempt"] and left else "")
        )
    return lines


def plan_for(
    planner: Planner,
    instance: dg.DagsterInstance,
    request: PlanRequest,
    keys: Mapping[str, dg.AssetKey],
    previous: DbtManifest | None = None,
    schedules: Iterable[tuple[str, datetime]] = (),
) -> Plan:
    env = environment(instance, planner.manifest, keys, schedules)
    return planner.plan(request, previous=previous, history=history(instance, keys), env=env)


def next_ticks(schedule_defs, now: datetime, horizon: timedelta = timedelta(hours=6)):
    """(name, time) of schedules firing within the horizon."""
    from dagster._utils.schedules import cron_string_iterator

    upcoming = []
    for schedule in schedule_defs:
        it = cron_string_iterator(
            now.timestamp(), schedule.cron_schedule, schedule.execution_timezone or "UTC"
        )
        at = next(it)
        if at <= now + horizon:
            upcoming.append((schedule.name, at))
    return upcoming
