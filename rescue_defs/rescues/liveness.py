"""Signs of life of a rescue's runs, so that a dead run worker never leaves a rescue stuck.

Dagster's default run launcher cannot ask whether a run's worker still lives: when the whole
`dagster dev` (or a worker's container) is killed, the run stays STARTED for ever, run
monitoring only logs "Checking run", `rescue resume` refuses ("still has run STARTED") and a
termination has no process to reach. While a rescue's step or proof runs, a thread of its
worker stamps the run's tag `rescue/alive` (the time, in the instance's storage: any process
reads it, in any container); whoever advances the rescue (rescue_sensor, `rescue launch --wait`,
`rescue resume`, `rescue cancel`) fails a STARTED run silent for longer than silent_seconds(),
saying so, and the rescue then goes on as after any dead worker (resumed once automatically,
or stopped for a human with the command to resume it).
"""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import dagster as dg

from rescue_defs import settings

TAG_ALIVE = "rescue/alive"
BEAT_SECONDS = 15.0


def silent_seconds() -> float:
    """RESCUE_RUN_SILENT_SECONDS, 90 by default: six missed beats. A worker busy in dbt still
    beats (a thread), a loaded machine's pauses last seconds, not a minute and a half; a live
    run called dead would let a resume write its tables beside it: err long."""
    return settings.get("RESCUE_RUN_SILENT_SECONDS")


# before its first beat a run worker loads the code location (a big project, dbt parsing it)
FIRST_BEAT_SECONDS = 300.0


@contextmanager
def heartbeat(instance: dg.DagsterInstance, run_id: str, every: float = BEAT_SECONDS) -> Iterator:
    """Stamp the run's TAG_ALIVE now and every `every` seconds until the block ends."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                instance.add_run_tags(run_id, {TAG_ALIVE: f"{time.time():.0f}"})
            except Exception:  # storage busy for a moment: the next beat tries again
                pass
            if stop.wait(every):
                return

    thread = threading.Thread(target=beat, name=f"rescue-heartbeat-{run_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def last_sign_of_life(instance: dg.DagsterInstance, run: dg.DagsterRun) -> float | None:
    """When the run last showed it was alive: its newest beat, else its start (None: never
    started)."""
    beat = run.tags.get(TAG_ALIVE)
    if beat is not None:
        return float(beat)
    record = instance.get_run_record_by_id(run.run_id)
    return record.start_time if record is not None else None


def fail_if_silent(
    instance: dg.DagsterInstance, run: dg.DagsterRun, now: float | None = None
) -> dg.DagsterRun:
    """Fail a STARTED run whose worker has been silent for silent_seconds() (a CANCELING one
    is marked canceled); the run as it is now."""
    if run.status not in (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING):
        return run
    alive = last_sign_of_life(instance, run)
    now = time.time() if now is None else now
    allowed = silent_seconds() if TAG_ALIVE in run.tags else FIRST_BEAT_SECONDS
    if alive is None or now - alive < allowed:
        return run
    since = datetime.fromtimestamp(alive, UTC).strftime("%H:%M:%S UTC")
    why = (
        f"run worker silent since {since} ({now - alive:.0f} s without a sign of life: killed "
        "with its `dagster dev`, its container or its machine)"
    )
    if run.status == dg.DagsterRunStatus.CANCELING:  # asked to stop, and nobody is left to
        instance.report_run_canceled(run, message=f"{why}: marked canceled")
    else:
        instance.report_run_failed(run, message=f"{why}: marked failed so the rescue can go on")
    return instance.get_run_by_id(run.run_id) or run


def beats(run: dg.DagsterRun) -> bool:
    """The run is one that stamps signs of life: a rescue's step or proof run."""
    from rescue_defs.rescues.store import TAG_KIND, TAG_STEP

    return TAG_STEP in run.tags or run.tags.get(TAG_KIND) == "proof"


def fail_silent(instance: dg.DagsterInstance, runs: list[dg.DagsterRun]) -> list[dg.DagsterRun]:
    """The runs, those whose worker is found silent now failed."""
    return [fail_if_silent(instance, run) if beats(run) else run for run in runs]


@contextmanager
def while_running(context) -> Iterator:
    """Heartbeat of an op's run when it is a rescue's (other runs are not watched)."""
    from rescue_defs.rescues.store import TAG_ID

    if TAG_ID not in context.run.tags:
        yield
        return
    with heartbeat(context.instance, context.run.run_id):
        yield
