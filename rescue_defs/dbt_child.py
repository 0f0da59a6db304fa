"""`rescue-dbt`: dbt that dies with the process that started it.

dagster-dbt starts dbt as a child of the run worker. When the worker is killed (SIGKILL, an
OOM kill, a node lost), the child is re-parented and goes on writing the warehouse while
Dagster already calls the run failed and a resume starts: a writer nobody sees. On Linux this
launcher asks the kernel to SIGKILL it when its parent dies (PR_SET_PDEATHSIG, kept across
exec), then becomes dbt. Elsewhere it simply becomes dbt. No imports beyond the standard
library: it adds a few milliseconds to a dbt invocation.
"""

import ctypes
import os
import shutil
import signal
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1
LAUNCHER = "rescue-dbt"


def dbt() -> str:
    """The dbt beside this Python (the environment's), else the one on PATH."""
    here = Path(sys.executable).absolute().parent / "dbt"
    return str(here) if here.exists() else (shutil.which("dbt") or "dbt")


def executable() -> str:
    """What runs dbt for the product's steps: this launcher when installed beside this Python,
    else dbt itself (absolute when found, so a PATH without the environment still finds it)."""
    launcher = Path(sys.executable).absolute().parent / LAUNCHER
    return str(launcher) if launcher.exists() else dbt()


def main() -> None:
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the request took effect
            sys.exit("rescue-dbt: the process that started dbt is gone; not starting it")
    program = dbt()
    os.execv(program, [program, *sys.argv[1:]])


if __name__ == "__main__":
    main()
