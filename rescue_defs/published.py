"""What a code location publishes on the Dagster instance for processes that do not load it
(the `rescue` CLI, on any machine): small values in the instance's key-value store.

A sensor publishes every tick; this process remembers what it wrote, so an unchanged value
costs no read or write, and re-checks every minute (another process may have written)."""

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import dagster as dg

RECHECK_SECONDS = 60.0
# (the instance's home, key) -> (value, when this process wrote/read it): per instance, since
# a process may serve several (a test suite's worker does: a value written to one instance
# was then never written to the next)
_WRITTEN: dict[tuple[str, str], tuple[str, float]] = {}


def publish(instance: dg.DagsterInstance, key: str, value: str) -> None:
    where = (str(instance.root_directory), key)
    last = _WRITTEN.get(where)
    now = time.monotonic()
    if last is not None and last[0] == value and now - last[1] < RECHECK_SECONDS:
        return
    if instance.run_storage.get_cursor_values({key}).get(key) != value:
        instance.run_storage.set_cursor_values({key: value})
    _WRITTEN[where] = (value, now)


def read(instance: dg.DagsterInstance, key: str) -> str | None:
    return instance.run_storage.get_cursor_values({key}).get(key)


@dataclass(frozen=True)
class PublishedSchedule:
    """What planning reads of a schedule (rescues.next_ticks)."""

    name: str
    cron_schedule: str | Sequence[str]
    execution_timezone: str | None
    job_name: str


def schedules_key(project_name: str) -> str:
    return f"rescue/schedules/{project_name}"


def publish_schedules(instance: dg.DagsterInstance, project_name: str, schedules) -> None:
    value = [
        {
            "name": s.name,
            "cron_schedule": s.cron_schedule,
            "execution_timezone": s.execution_timezone,
            "job_name": s.job_name,
        }
        for s in schedules
    ]
    publish(instance, schedules_key(project_name), json.dumps(value, sort_keys=True))


def published_schedules(instance: dg.DagsterInstance, project_name: str) -> list[Any]:
    """The scheduled pipeline as the code location published it (none before its first tick)."""
    stored = read(instance, schedules_key(project_name))
    return [PublishedSchedule(**s) for s in json.loads(stored)] if stored else []


CLOCK_KEY = "rescue/clock"


def publish_clock(instance: dg.DagsterInstance, now: datetime, at: float | None = None) -> None:
    """A simulation's business clock: `now` (naive UTC) at real time `at` (epoch seconds;
    default: this moment), moving on in real time from there. Freshness and planning judge by
    it (the bundled demo replays past days; RESCUE_NOW still wins)."""
    value = json.dumps({"now": now.isoformat(), "at": time.time() if at is None else at})
    instance.run_storage.set_cursor_values({CLOCK_KEY: value})


def published_clock(instance: dg.DagsterInstance) -> datetime | None:
    stored = read(instance, CLOCK_KEY)
    if not stored:
        return None
    value = json.loads(stored)
    return datetime.fromisoformat(value["now"]) + timedelta(seconds=time.time() - value["at"])
