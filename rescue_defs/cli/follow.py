"""How `rescue launch`, `resume` and `--wait` start a rescue's runs and follow it to its end."""

import argparse
import re
import sys
from urllib.parse import quote


def report_url(ui: str, rescue_id: str) -> str:
    """The rescue's partition of rescue_report in the UI (without `view=partitions` the asset
    page ignores the partition and shows the latest one)."""
    return f"{ui}/assets/rescue_report?view=partitions&partition={quote(rescue_id)}"


def start_and_follow(args, instance, rescue_id: str, keys, manifest, ui: str) -> int:
    said = _start(instance, rescue_id, keys, manifest, ui)
    print(said)
    if not args.wait:
        return 0
    # the webserver took the first run: it takes the next ones too (no wait for a tick)
    following = said.startswith("launched")
    return follow(
        instance,
        rescue_id,
        keys,
        args.wait_timeout,
        (lambda: _start(instance, rescue_id, keys, manifest, ui)) if following else None,
    )


def _start(instance, rescue_id: str, keys, manifest, ui: str) -> str:
    """Submit the rescue's next run(s) through the UI's webserver now (no wait for
    rescue_sensor's next tick); whatever it does not start, the sensor does. What happened."""
    from rescue_defs.rescues.kickoff import launch_next_runs

    said = launch_next_runs(instance, rescue_id, keys, manifest, ui)
    return said or "rescue_sensor (running under `./dev demo`) launches the runs in order."


def ui_address(args: argparse.Namespace, instance) -> str:
    """--ui, else RESCUE_UI_URL, else the address the deployment recorded on the instance."""
    from rescue_defs.rescues.kickoff import ui_url

    return ui_url(instance, args.ui)


# how often `--wait` looks: a rescue's end is noticed within this, not at a sensor tick
POLL_SECONDS = 0.5
REPEAT_SECONDS = 30
RUNNING_FOR = re.compile(r"running for \d+ s")


DAEMON_SILENT_SECONDS = 60


def daemon_warning(instance) -> str:
    """A line when no Dagster daemon has beaten lately: queued runs and rescue_sensor's ticks
    then wait for one, and `--wait` would wait silently."""
    import time

    beats = instance.get_daemon_heartbeats()
    newest = max((b.timestamp for b in beats.values()), default=None)
    if newest is not None and time.time() - newest <= DAEMON_SILENT_SECONDS:
        return ""
    seen = "never" if newest is None else f"not in the last {DAEMON_SILENT_SECONDS} s"
    return (
        f"no Dagster daemon seen on this instance ({seen}): queued runs start and rescue_sensor "
        "ticks only while one runs (`./dev demo`, or `dagster-daemon run`); waiting anyway"
    )


def follow(instance, rescue_id: str, keys, timeout: float, start=None) -> int:
    """Print the rescue's progress until it ends. `start()`: when one of its runs ended and
    the rescue goes on, start what comes next (the next run, the proof) without waiting for
    rescue_sensor's tick; returns what it did."""
    import time

    from rescue_defs import rescues
    from rescue_defs.console_script import resume_collecting

    resume_collecting()  # following may take an hour: collect what each poll leaves
    deadline = time.monotonic() + timeout
    if warning := daemon_warning(instance):
        print(f"rescue: warning: {warning}", file=sys.stderr, flush=True)
    shown: list[str] = []
    said = time.monotonic()
    finished = None
    while True:
        record = rescues.load(instance, rescue_id)
        if record["status"] == rescues.ACTIVE:
            # end the rescue when its last run ends, not at rescue_sensor's next tick (up to
            # 10 s later)
            try:
                settled = rescues.settle(instance, record, keys)
            except rescues.ConcurrentUpdate:
                settled = True  # the sensor settled it meanwhile
            if start is not None and settled is None:
                ended = sum(r.is_finished for r in rescues.step_runs(instance, rescue_id))
                if finished is not None and ended > finished:
                    what = start()
                    if what.startswith("launched"):
                        print(what, flush=True)
                finished = ended
        # the status first, the lines after: when it has ended, the last lines printed say so
        # (read the other way round, a rescue ending in between left "active ... proving" as
        # the last words of a rescue that succeeded)
        status = rescues.load(instance, rescue_id)["status"]
        lines = rescues.status_lines(instance, rescue_id, keys)
        # the elapsed time alone changes every second: say it again every REPEAT_SECONDS
        seen = [RUNNING_FOR.sub("", line) for line in lines]
        if seen != shown or time.monotonic() - said > REPEAT_SECONDS:
            print("\n".join(lines), flush=True)
            shown, said = seen, time.monotonic()
        if status == rescues.SUCCEEDED:
            return 0
        if status in rescues.ENDED:
            return 1
        if time.monotonic() > deadline:
            print(f"rescue {rescue_id} still {status} after {timeout:.0f} s", file=sys.stderr)
            return 1
        time.sleep(POLL_SECONDS)
