"""Who holds the DuckDB warehouse file: asked of the OS, without taking the lock.

DuckDB allows one writer process and takes a POSIX lock on the file (shared for read-only
connections, exclusive otherwise). A notebook left open on the warehouse makes every dbt run
fail at its first connection with `Could not set lock on file`. `fcntl(F_GETLK)` reports the
conflicting lock and its process without acquiring anything, so checking costs nothing and
cannot itself make a run fail.
"""

import fcntl
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

# struct flock on Linux x86-64 / aarch64: short l_type, short l_whence, off_t l_start,
# off_t l_len, pid_t l_pid
_FLOCK = "hhqqi"


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str

    @property
    def is_pipeline(self) -> bool:
        """A dbt or Dagster process: a run the queue already orders, not a stray reader."""
        programs = [Path(word).name for word in self.command.split()[:3]]
        return any(p == "dbt" or p.startswith("dagster") for p in programs) or (
            "-m dbt" in self.command or "-m dagster" in self.command
        )

    def describe(self) -> str:
        return f"PID {self.pid} ({self.command})" if self.command else f"PID {self.pid}"


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)[:200]


def holder(path: Path) -> Holder | None:
    """The other process whose lock would stop a writer, or None (free, missing file, or an
    OS that does not say)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    except OSError:
        return None
    finally:
        os.close(fd)
    kind, _, _, _, pid = struct.unpack(_FLOCK, answer)
    if kind == fcntl.F_UNLCK or pid <= 0:
        return None
    return Holder(pid, _command(pid))


def wait_until_free(path: Path, seconds: float, log=None) -> Holder | None:
    """Wait up to `seconds` for a non-pipeline holder to let go; the holder still there, or
    None when free."""
    deadline = time.monotonic() + seconds
    said = False
    while True:
        found = holder(path)
        if found is None or found.is_pipeline or time.monotonic() >= deadline:
            return found if found is not None and not found.is_pipeline else None
        if log is not None and not said:
            log(f"the warehouse {path} is held by {found.describe()}: waiting {seconds:.0f} s")
            said = True
        time.sleep(1.0)


class WarehouseHeld(Exception):
    """Another process still holds the warehouse after the wait; the message names it."""


def require_free(path: Path, then: str, log=None) -> None:
    """Wait RESCUE_LOCK_WAIT_SECONDS (60) for a holder outside the pipeline to let go, then
    raise naming it; `then` says what was not done."""
    from rescue_defs import settings

    seconds = settings.get("RESCUE_LOCK_WAIT_SECONDS")
    held = wait_until_free(path, seconds, log)
    if held is not None:
        raise WarehouseHeld(
            f"the warehouse {path} is held by {held.describe()} (waited {seconds:.0f} s): "
            f"close that connection and {then}"
        )
