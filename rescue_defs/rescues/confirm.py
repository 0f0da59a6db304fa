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
# per rescue, in the instance's key-value store: every materialization of its models up to
# this storage id has been read (the runs that made them were the product's, or ended without
# confirming), so that a tick reads only what is new since, not every model again
SCANNED_KEY = "rescue/confirm_scanned/{}"


# per rescue: the event log's newest storage id when a tick last found nothing left to wait
# for (no run of another's still going, nothing left unread): while it is still the newest,
# nothing can have been materialized since, and a tick reads nothing at all
QUIET_KEY = "rescue/confirm_quiet/{}"


def _marks(instance: dg.DagsterInstance, rescue_id: str) -> tuple[int, int]:
    """(scanned, quiet) of the rescue, 0 where not set."""
    keys = (SCANNED_KEY.format(rescue_id), QUIET_KEY.format(rescue_id))
    values = instance.run_storage.get_cursor_values(set(keys))
    scanned, quiet = (int(values.get(key) or 0) for key in keys)
    return scanned, quiet


def _set_marks(instance: dg.DagsterInstance, rescue_id: str, **marks: int) -> None:
    keys = {"scanned": SCANNED_KEY, "quiet": QUIET_KEY}
    for name, value in marks.items():
        # one key a call: SQL run storage inserts several at once, and where one of them is
        # there already, only updates those that are (SQLite: the new one is never stored)
        instance.run_storage.set_cursor_values({keys[name].format(rescue_id): str(value)})


def _ours(run: dg.DagsterRun) -> bool:
    """A rescue's own runs, its status runs and the product's jobs: they prove nothing new."""
    return TAG_ID in run.tags or TAG_REPORT_OF in run.tags or TAG_KIND in run.tags


def _runs_building(
    instance: dg.DagsterInstance, asset_keys, ended: datetime, scanned: int
) -> tuple[list, int, bool]:
    """Finished runs that materialized a rescued model after the rescue ended and after
    storage id `scanned`, oldest first, up to which storage id everything is now read, and
    whether all of it is read (nothing held).

    Found from the models' own materializations, so other jobs' runs on a busy instance (any
    number of them) are never read; and only for the models the asset index says were
    materialized since (one query for all of them), so a tick with nothing new reads nothing.
    A run still going holds the mark before its first materialization: read again once it
    ends; unless it is one of the product's own, which never confirms (a 2,000-model rescue's
    run, going for minutes, was read again whole on every tick: 14 s a tick at its end)."""
    after = ended.timestamp()
    fresh = [
        record.asset_entry.asset_key
        for record in instance.get_asset_records(list(asset_keys))
        if (last := record.asset_entry.last_materialization_record) is not None
        and last.storage_id > scanned
        and last.timestamp > after
    ]
    found: dict[str, int] = {}  # run id -> its first materialization read
    mark, held = scanned, float("inf")
    for key in fresh:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_timestamp=after, after_storage_id=scanned),
            limit=SCANNED_PER_MODEL,
            ascending=True,
        ).records
        for r in records:
            found[r.run_id] = min(found.get(r.run_id, r.storage_id), r.storage_id)
        if records:
            mark = max(mark, records[-1].storage_id)
        if len(records) == SCANNED_PER_MODEL:  # more of this model's are left to read
            held = min(held, records[-1].storage_id)
    whole = held == float("inf")
    mark = int(min(mark, held))
    if not found:
        return [], mark, whole
    runs = {
        r.dagster_run.run_id: r
        for r in instance.get_run_records(filters=dg.RunsFilter(run_ids=sorted(found)))
    }
    going = [
        found[i]
        for i, r in runs.items()
        if not r.dagster_run.is_finished and not _ours(r.dagster_run)
    ]
    if going:
        mark = min(going) - 1
    finished = [
        r for r in runs.values() if r.dagster_run.status in FINISHED and not _ours(r.dagster_run)
    ]
    return sorted(finished, key=lambda r: r.create_timestamp), mark, whole and not going


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
    scanned, quiet = _marks(instance, record["id"])
    newest = instance.event_log_storage.get_maximum_record_id() or 0
    if newest and newest == quiet:  # no event at all since a tick that found all read
        runs, mark, whole = [], scanned, False
    else:
        asset_keys = [keys[m] for m in planned if m in keys]
        runs, mark, whole = _runs_building(instance, asset_keys, ended, scanned)
    for run_record in runs:
        run = run_record.dagster_run
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
    marks = {"scanned": mark} if mark != scanned else {}
    if whole and newest:
        marks["quiet"] = newest
    if marks:
        _set_marks(instance, record["id"], **marks)
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
