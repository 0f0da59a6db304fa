"""The playbook's last validation step: the next run after a rescue (the scheduled pipeline,
or whatever next builds the rescued models) produced correct outputs, read from its event log
and added to the rescue's report by rescue_report_sensor."""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from rescue_defs.rescues.outcomes import model_outcomes
from rescue_defs.rescues.store import TAG_ID, TAG_KIND, TAG_REPORT_OF

# succeeded rescues whose next run has not been read yet
UNCONFIRMED = "rescues_unconfirmed"
# no run building the models this long after the rescue: say so and stop looking
CONFIRM_WITHIN = timedelta(days=3)
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]


def _planned(record: Mapping[str, Any]) -> list[str]:
    return [m for step in record["steps"] for m in step["models"]]


# per rescued model, the materializations after the rescue's end that are read for the run
# that made them (the product's own runs among them are skipped)
SCANNED_PER_MODEL = 20


def _runs_building(instance: dg.DagsterInstance, asset_keys, ended: datetime) -> list:
    """Finished runs that materialized a rescued model after the rescue ended, oldest first:
    found from the models' own materializations, so other jobs' runs on a busy instance (any
    number of them) are never read."""
    run_ids: set[str] = set()
    for key in asset_keys:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_timestamp=ended.timestamp()),
            limit=SCANNED_PER_MODEL,
            ascending=True,
        ).records
        run_ids.update(r.run_id for r in records)
    if not run_ids:
        return []
    return list(
        instance.get_run_records(
            filters=dg.RunsFilter(run_ids=sorted(run_ids), statuses=FINISHED), ascending=True
        )
    )


def next_run_outcome(
    instance: dg.DagsterInstance,
    record: Mapping[str, Any],
    keys: Mapping[str, dg.AssetKey],
    now: datetime | None = None,
) -> dict[str, Any] | None:
    """What the first finished run started after the rescue's end, not one of the product's
    own, did to the rescued models; a verdict of "none" after CONFIRM_WITHIN; None: not yet."""
    ended = datetime.fromisoformat(record["ended_at"])
    planned = _planned(record)
    names = record["names"]
    for run_record in _runs_building(instance, [keys[m] for m in planned if m in keys], ended):
        run = run_record.dagster_run
        if TAG_ID in run.tags or TAG_REPORT_OF in run.tags or TAG_KIND in run.tags:
            continue  # a rescue's own runs, its status and the product's jobs prove nothing new
        outcomes = model_outcomes(instance, [run], {m: keys[m] for m in planned if m in keys})
        rebuilt = [m for m in planned if m in outcomes and outcomes[m].rebuilt]
        if not rebuilt:
            continue
        failed = {
            names.get(m, m): [c.name for c in outcomes[m].failed]
            for m in rebuilt
            if outcomes[m].failed
        }
        return {
            "run_id": run.run_id,
            "job": run.job_name,
            "schedule": run.tags.get("dagster/schedule_name", ""),
            "status": run.status.value,
            "rebuilt": len(rebuilt),
            "planned": len(planned),
            "failed": failed,
            "verdict": "confirmed" if not failed and run.status.value == "SUCCESS" else "failed",
        }
    if (now or datetime.now(UTC)) - ended > CONFIRM_WITHIN:
        return {"verdict": "none", "planned": len(planned)}
    return None


def confirmation_lines(record: Mapping[str, Any]) -> list[str]:
    """The report's "Next run" section, for a rescue that succeeded."""
    if record["status"] != "succeeded":
        return []
    found = record.get("confirmation")
    lines = ["", "## Next run", ""]
    if found is None:
        return lines + [
            "- not yet: the next run that builds these models (the scheduled pipeline) will be "
            "read when it ends, and its verdict added here"
        ]
    if found["verdict"] == "none":
        days = CONFIRM_WITHIN.days
        return lines + [f"- no run built these models within {days} days of the rescue"]
    run = f"[{found['run_id'][:8]}](/runs/{found['run_id']}) ({found['job']}"
    run += f", schedule {found['schedule']})" if found["schedule"] else ")"
    if found["verdict"] == "confirmed":
        return lines + [
            f"- confirmed by run {run}: {found['rebuilt']}/{found['planned']} rescued models "
            "rebuilt again, every check passed"
        ]
    lines.append(f"- NOT confirmed: run {run} ended {found['status']}")
    lines += [
        f"  - {model}: {', '.join(checks)} failed" for model, checks in found["failed"].items()
    ]
    return lines
