"""Rescue records on the Dagster instance, safe with several writers on SQLite and Postgres.

Each rescue is one key of the instance's key-value store (`rescue/<id>`), always written alone:
SQLite's `set_cursor_values` silently drops a new key when another key of the same batch
already exists. The indexes are dynamic partition sets, whose adds and deletes are row
inserts and deletes (no read-modify-write of a shared list): `rescues` (every rescue, also the
partitions of the `rescue_report` asset) and `rescues_active` (what `rescue_sensor` looks at,
so a tick never loads the rescues that ended).

A record carries a version: `save` refuses to overwrite a record that changed since it was
loaded (the sensor and a CLI `cancel` writing at once), and the loser retries on fresh data.
The refusal holds when both write at the same moment: the write replaces only the value that
was read, in one statement (compat.swap_cursor_value).
"""

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import dagster as dg

from rescue_defs import compat

ALL_RESCUES = "rescues"
ACTIVE_RESCUES = "rescues_active"
# rescues that ended since rescue_report_sensor last looked: it evaluates their rescue_succeeded
# check, in a run (assets/report.py says why)
UNREPORTED_ENDS = "rescues_unreported_ends"

TAG_ID, TAG_STAGE, TAG_GROUP, TAG_REASON, TAG_STEP, TAG_ATTEMPT = (
    "rescue/id",
    "rescue/stage",
    "rescue/group",
    "rescue/reason",
    "rescue/step",
    "rescue/attempt",
)
TAG_SANDBOX = "rescue/sandbox"
# a run that builds several steps of a rescue, stage after stage: "index:attempt,..."
TAG_STEPS = "rescue/steps"
TAG_KIND = "rescue/kind"
# the job of every run that builds or proves a rescue's models (jobs/rescue.py)
STEP_JOB = "rescue_step_job"
# the resource a rescue's step run is configured through (assets/dbt.py's RescueRun)
RESCUE_RUN = "rescue_run"
# the run that evaluates an ended rescue's rescue_succeeded check; not one of its own runs
TAG_REPORT_OF = "rescue/report_of"
ACTIVE, SUCCEEDED, FAILED, DRY_RUN, CANCELED = (
    "active",
    "succeeded",
    "failed",
    "dry_run",
    "canceled",
)
ENDED = (SUCCEEDED, FAILED, CANCELED)


class RescueError(Exception):
    """A rescue that cannot be launched, resumed or canceled; the message says why."""


class ConcurrentUpdate(RescueError):
    """The record changed since it was loaded; load it again and redo the change."""


def _key(rescue_id: str) -> str:
    return f"rescue/{rescue_id}"


def _stored(instance: dg.DagsterInstance, rescue_id: str) -> dict[str, Any] | None:
    return _stored_raw(instance, rescue_id)[0]


def _stored_raw(instance: dg.DagsterInstance, rescue_id: str) -> tuple[dict | None, str | None]:
    raw = instance.run_storage.get_cursor_values({_key(rescue_id)}).get(_key(rescue_id))
    return (json.loads(raw) if raw else None), raw


def add_partition(instance: dg.DagsterInstance, name: str, key: str) -> None:
    """Add `key` to the dynamic partitions `name`, also when another process adds it at the
    same moment: Dagster looks for it, then inserts it, and of two processes ending the same
    rescue (the CLI following it, rescue_sensor) the slower one hits the storage's unique
    constraint (sqlite3 or psycopg2's IntegrityError, through SQLAlchemy). It is there then:
    what was asked is done. Any other failure is raised."""
    try:
        instance.add_dynamic_partitions(name, [key])
    except Exception:
        if not instance.has_dynamic_partition(name, key):
            raise


def save(instance: dg.DagsterInstance, record: dict[str, Any]) -> None:
    """Write a record loaded (or created) by the caller; bumps its version."""
    rescue_id = record["id"]
    current, raw = _stored_raw(instance, rescue_id)
    stored_version = current.get("version", 0) if current else 0
    changed = ConcurrentUpdate(
        f"rescue {rescue_id} changed meanwhile (version {stored_version}, "
        f"not {record.get('version', 0)}): load it again"
    )
    if record.get("version", 0) != stored_version:
        raise changed
    _remember(record, current)
    active = record["status"] == ACTIVE
    if current is None:
        add_partition(instance, ALL_RESCUES, rescue_id)
    # activate before the record says so, deactivate after: a crash in between leaves an id in
    # the active set whose record has ended, which the sensor drops (never the reverse, which
    # would strand an active rescue)
    if active:
        add_partition(instance, ACTIVE_RESCUES, rescue_id)
    record["version"] = stored_version + 1
    # written only over what was read: another process's save in between (the CLI's cancel,
    # rescue_sensor's launch) makes this one fail, never vanish (compat.swap_cursor_value)
    swapped = compat.swap_cursor_value(instance, _key(rescue_id), raw, json.dumps(record))
    if swapped is False:
        record["version"] = stored_version
        raise ConcurrentUpdate(
            f"rescue {rescue_id} changed meanwhile (saved by another process while this one "
            "saved): load it again"
        )
    if swapped is None:  # a storage that cannot compare and set: as Dagster writes
        instance.run_storage.set_cursor_values({_key(rescue_id): json.dumps(record)})
    if not active:
        instance.delete_dynamic_partition(ACTIVE_RESCUES, rescue_id)


# how often `retried` tries again when another writer got in first: rescue_sensor saves a
# record at most once a tick, so a second try all but always takes; the rest is for a storm
UPDATE_TRIES = 20
T = TypeVar("T")


def retried(attempt: Callable[[], T]) -> T:
    """`attempt()`, again while another process's save gets in ahead of its own (the sensor's
    tick while a user cancels or resumes): each try loads the record afresh, so it is done, or
    refused, on what is there now. An attempt's work before its save must bear doing twice."""
    tries = 0
    while True:
        try:
            return attempt()
        except ConcurrentUpdate:
            tries += 1
            if tries == UPDATE_TRIES:
                raise


def update(
    instance: dg.DagsterInstance, rescue_id: str, change: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Load the record, `change` it, save it: again on the record as it is now when another
    process saved it in between. `change` raises RescueError to refuse on what it sees."""

    def attempt() -> dict[str, Any]:
        record = load(instance, rescue_id)
        change(record)
        save(instance, record)
        return record

    return retried(attempt)


HISTORY_KEPT = 200


def _remember(record: dict[str, Any], current: Mapping[str, Any] | None) -> None:
    """Every change of status or message, in order, with its time: a killed run, the
    automatic resume, a resume by hand, a cancel, the end (the report's History)."""
    said = (record["status"], record.get("message", ""))
    if current is not None and (current["status"], current.get("message", "")) == said:
        return
    history = record.setdefault("history", [])
    if history and (history[-1]["status"], history[-1]["message"]) == said:
        return
    history.append({"at": datetime.now(UTC).isoformat(), "status": said[0], "message": said[1]})
    del history[:-HISTORY_KEPT]


def load(instance: dg.DagsterInstance, rescue_id: str) -> dict[str, Any]:
    record = _stored(instance, rescue_id)
    if record is None:
        raise RescueError(f"no rescue {rescue_id!r} on this Dagster instance")
    return record


def active_ids(instance: dg.DagsterInstance) -> list[str]:
    """Rescues the sensor has to look at, in the order they became active."""
    return list(instance.get_dynamic_partitions(ACTIVE_RESCUES))


def forget_inactive(instance: dg.DagsterInstance, rescue_id: str) -> None:
    instance.delete_dynamic_partition(ACTIVE_RESCUES, rescue_id)


def rescue_ids(instance: dg.DagsterInstance) -> list[str]:
    """Every rescue on the instance, oldest first (the partitions' insertion order: ids typed
    by people start with their UTC creation time, ids of automatic rescues name their event)."""
    return list(instance.get_dynamic_partitions(ALL_RESCUES))


def records(instance: dg.DagsterInstance, ids: list[str]) -> list[Mapping[str, Any]]:
    if not ids:
        return []
    raw = instance.run_storage.get_cursor_values({_key(i) for i in ids})
    return [json.loads(raw[_key(i)]) for i in ids if raw.get(_key(i))]
