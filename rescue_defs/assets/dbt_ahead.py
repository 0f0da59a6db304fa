"""dbt started ahead: the step's next dbt invocation imports dbt while the one before runs.

Every dbt process spends its first 1.5-2 s importing dbt, before it reads a file. A rescue's
step runs its invocations one after another (stages, refresh layers, the proof's scratch
build), so each paid that on the step's critical path. Here the next invocation's process is
started once the one before it has built its first model (not at once: two dbt importing
themselves on two cores slow the one the step waits for), or at once when the one before it
imports nothing (itself started ahead, or the run worker's dbt imported while it loaded,
dbt_warm.py): it imports dbt and waits
(rescue-dbt's wait, dbt_child.py), having opened no file and no connection, until `go` says
it is its turn, or `call_off` says it never will be. The order of the writes is the step's,
as before: a waiting dbt writes nothing.
"""

import contextlib
import logging
import os
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rescue_defs.assets.dbt_cli import register_adapter, seed_parse_state
from rescue_defs.dbt_child import GO, GO_FILE, WARM_ENV

STOP = "stop"
CALL_OFF_SECONDS = 10.0
_QUIET = threading.local()  # set while a waiting invocation is started in this thread


class _NotRunningYet(logging.Filter):
    """dagster-dbt says "Running dbt command" when it starts the process: for a dbt that only
    waits, that line is said when it is told to go (`go`), not while the step before runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (getattr(_QUIET, "on", False) and "Running dbt command" in record.getMessage())


_FILTER = _NotRunningYet()


def start_waiting(start: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`start(*args, waiting=True, **kwargs)` (a RescueDbtCliResource.cli) without its
    "Running dbt command" line: the process imports dbt and waits for `go`."""
    logger = logging.getLogger("dagster.builtin")
    logger.addFilter(_FILTER)
    _QUIET.on = True
    try:
        return start(*args, waiting=True, **kwargs)
    finally:
        _QUIET.on = False


def go(invocation: Any, log: Any = None) -> Any:
    """Its turn: the parse state the invocations before it left seeds it (it was started
    before they kept it), its adapter is dbt's again, then it runs."""
    target = Path(invocation.target_path)
    seed_parse_state(target)
    # its adapter as it would be had it been started now: the one dbt's macros run on
    register_adapter(invocation.adapter)
    _say(target, GO)
    if log is not None:
        log.info(f"Running dbt command: `{invocation.dbt_command}` (dbt started ahead).")
    return invocation


def call_off(invocation: Any) -> None:
    """It never runs: the process ends having done nothing (stopped if it does not)."""
    with contextlib.suppress(OSError):
        _say(Path(invocation.target_path), STOP)
    process: subprocess.Popen = invocation.process
    try:
        process.wait(timeout=CALL_OFF_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _say(target: Path, word: str) -> None:
    partial = target / f"{GO_FILE}.{os.getpid()}.tmp"
    partial.write_text(word)
    os.replace(partial, target / GO_FILE)  # read whole or not at all


class Lineup:
    """A step's dbt commands in the order it runs them: taking one starts it (told to go if
    it was started ahead, else started now); the one after it starts ahead at once when the one
    taken imports nothing (it was ahead, or it is the step's first and the run worker has a dbt
    imported for it), else at `ahead` (once the one taken has built something), so that two
    dbt never import themselves at the same time."""

    def __init__(
        self,
        start: Callable[..., Any],
        commands: Sequence[Sequence[str]],
        log: Any = None,
    ):
        self.start, self.log = start, log
        self.commands = [list(c) for c in commands]
        self.waiting: tuple[list[str], Any] | None = None
        self.called_off: list = []
        # called once the next invocation taken is under way, if it was started ahead
        self.then: Callable[[], None] | None = None
        self.taken_one = False

    def take(self, args: Sequence[str]) -> Any:
        args = list(args)
        waiting, self.waiting = self.waiting, None
        if waiting is not None and waiting[0] == args:
            invocation = go(waiting[1], self.log)
            self.commands = self.commands[1:]
            self.ahead()  # it imports nothing: the next one's import slows nobody
            then, self.then = self.then, None
            if then is not None:
                then()
            return invocation
        if waiting is not None:  # not the command expected next (never, unless the step changed)
            self._call_off(waiting[1])
        invocation = self.start(args)
        if args in self.commands:
            self.commands = self.commands[self.commands.index(args) + 1 :]
        if os.environ.get(WARM_ENV) and not self.taken_one:
            # the run worker's dbt, imported while it loaded, runs the step's first: the
            # next one's import slows nobody (bundled rescue: its second stage 2.3 -> 1.3 s).
            # Had that dbt ended unused (dbt_warm.WAIT_SECONDS, a step that waited that long),
            # the two import themselves at once: only slower, never wrong
            self.ahead()
        self.taken_one = True
        return invocation

    def ahead(self) -> None:
        """The next command's dbt starts, and waits for its turn (once)."""
        if self.waiting is None and self.commands:
            self.waiting = (self.commands[0], start_waiting(self.start, self.commands[0]))

    def close(self) -> list:
        """Calls off what still waits; returns the invocations called off (their folders are
        the caller's to remove)."""
        if self.waiting is not None:
            self._call_off(self.waiting[1])
            self.waiting = None
        called_off, self.called_off = self.called_off, []
        return called_off

    def _call_off(self, invocation: Any) -> None:
        call_off(invocation)
        self.called_off.append(invocation)
