"""Rescues on a Dagster instance.

- `store`: the records (one key per rescue) and the index of active ones;
- `facts`: what the instance knows that planning needs (runs in flight, history, schedules);
- `lifecycle`: register a plan, resume, cancel;
- `advance`: advance stage by stage (what `rescue_sensor` calls on every tick);
- `outcomes`: what the rescue's runs did to each model, from the event log;
- `report`: the Markdown report on `rescue_report`; `status`: the `rescue status` lines;
- `confirm`: the next run after a rescue, read and added to its report.
"""

from rescue_defs.rescues.advance import STEP_JOB, Tick, advance, settle, step_request, stop
from rescue_defs.rescues.facts import environment, history, next_ticks, plan_for
from rescue_defs.rescues.lifecycle import cancel, new_rescue_id, register, resume
from rescue_defs.rescues.outcomes import (
    covered_steps,
    failed_checks,
    materialized,
    model_outcomes,
    step_runs,
)
from rescue_defs.rescues.report import (
    REPORT_ASSET,
    REPORT_PARTITIONS,
    finish,
    publish,
    report_markdown,
)
from rescue_defs.rescues.status import status_lines
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
    TAG_KIND,
    TAG_REASON,
    TAG_SANDBOX,
    TAG_STAGE,
    TAG_STEP,
    TAG_STEPS,
    ConcurrentUpdate,
    RescueError,
    active_ids,
    load,
    rescue_ids,
    save,
)

__all__ = [
    "ACTIVE",
    "CANCELED",
    "DRY_RUN",
    "ENDED",
    "FAILED",
    "REPORT_ASSET",
    "REPORT_PARTITIONS",
    "STEP_JOB",
    "SUCCEEDED",
    "TAG_ATTEMPT",
    "TAG_GROUP",
    "TAG_ID",
    "TAG_KIND",
    "TAG_REASON",
    "TAG_SANDBOX",
    "TAG_STAGE",
    "TAG_STEP",
    "TAG_STEPS",
    "ConcurrentUpdate",
    "RescueError",
    "Tick",
    "active_ids",
    "advance",
    "cancel",
    "environment",
    "covered_steps",
    "failed_checks",
    "finish",
    "history",
    "load",
    "materialized",
    "model_outcomes",
    "new_rescue_id",
    "next_ticks",
    "plan_for",
    "publish",
    "register",
    "report_markdown",
    "rescue_ids",
    "resume",
    "save",
    "settle",
    "status_lines",
    "step_request",
    "step_runs",
    "stop",
]
