"""`rescue-dbt`: dbt that dies with the process that started it.

dagster-dbt starts dbt as a child of the run worker. When the worker is killed (SIGKILL, an
OOM kill, a node lost), the child is re-parented and goes on writing the warehouse while
Dagster already calls the run failed and a resume starts: a writer nobody sees. On Linux this
launcher asks the kernel to SIGKILL it when its parent dies (PR_SET_PDEATHSIG, kept across
exec), then becomes dbt. Elsewhere it simply becomes dbt. No imports beyond the standard
library: it adds a few milliseconds to a dbt invocation.

Started ahead: a step's invocations run one after another, and each dbt spends its first
1.5-2 s importing itself. An invocation whose target folder holds `WAIT_FILE` does that import,
then waits until the step writes `GO_FILE` there: "go" runs dbt in this very process, anything
else ends it having done nothing (dbt has opened no file, no connection by then). The next
stage's dbt is thus ready the moment the stage before it is validated (assets/dbt_ahead.py).
"""

import ctypes
import os
import shutil
import signal
import sys
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1
LAUNCHER = "rescue-dbt"
WAIT_FILE = ".rescue_wait"  # in the invocation's target folder: import dbt, then wait
GO_FILE = ".rescue_go"  # written (whole, by rename) when it is the invocation's turn: "go"
GO = "go"
POLL_SECONDS = 0.01
# set by a run worker for its own children, never by a user (dbt_warm.py)
WARM_ENV = "_RESCUE_DBT_WARM"
SIDE_FILE = ".rescue_side"  # in the target folder: not the step's build, leave that dbt to it
# in the target folder, by rescue-dbt: the pid of the dbt imported ahead that ran the command
HANDED_FILE = ".rescue_imported_ahead"


def _beside_python() -> Path:
    """This Python environment's dbt (it may not exist)."""
    return Path(sys.executable).absolute().parent / "dbt"


def dbt() -> str:
    """The dbt beside this Python (the environment's), else the one on PATH."""
    here = _beside_python()
    return str(here) if here.exists() else (shutil.which("dbt") or "dbt")


def executable() -> str:
    """What runs dbt for the product's steps: this launcher when installed beside this Python,
    else dbt itself (absolute when found, so a PATH without the environment still finds it)."""
    launcher = Path(sys.executable).absolute().parent / LAUNCHER
    return str(launcher) if launcher.exists() else dbt()


def die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent (pid `parent`) dies (Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the request took effect
            sys.exit("rescue-dbt: the process that started dbt is gone; not starting it")


def main() -> None:
    parent = os.getppid()
    die_with_parent(parent)
    program = dbt()
    target = os.environ.get("DBT_TARGET_PATH", "")
    if target and os.path.exists(os.path.join(target, WAIT_FILE)):
        _wait_then_run(program, Path(target), parent)
    warm = os.environ.pop(WARM_ENV, "")
    side = bool(target) and os.path.exists(os.path.join(target, SIDE_FILE))
    if warm and not side and Path(program) == _beside_python():
        from rescue_defs.dbt_warm import hand_over

        hand_over(warm)  # a dbt this run worker imported ahead runs it, if one waits
    os.execv(program, [program, *sys.argv[1:]])


def _wait_then_run(program: str, target: Path, parent: int) -> None:
    """dbt imported while the step before runs; then run now, or end having done nothing."""
    cli = None
    if Path(program) == _beside_python():
        try:
            from dbt.cli.main import cli  # the slow part: what waiting is for
        except ImportError:  # a broken environment: dbt says so when it starts, as usual
            cli = None
        else:
            try:
                kind = (target / WAIT_FILE).read_text().strip()
            except OSError:  # its folder removed meanwhile: only the head start is lost
                kind = ""
            warm_up(kind)
    go = target / GO_FILE
    while not go.exists():
        if os.getppid() != parent or not target.is_dir():  # the step has ended without it
            sys.exit(0)
        time.sleep(POLL_SECONDS)
    try:
        word = go.read_text().strip()
    except OSError:  # its folder removed: the step has ended without it
        word = ""
    if word != GO:
        sys.exit(0)
    if cli is None:
        os.execv(program, [program, *sys.argv[1:]])
    sys.argv = [program, *sys.argv[1:]]
    sys.exit(cli())  # what the `dbt` script does


def warm_up(kind: str) -> None:
    """What every dbt command does first after its imports, and keeps for the process: the
    JSON schemas it validates the project, profile and results against (built once per class,
    ~0.3 s), and the adapter's module (`kind`: the adapter type, or "")."""
    import importlib

    try:
        from dbt.contracts.project import (
            Configuration,
            PackageConfig,
            ProfileConfig,
            Project,
            ProjectFlags,
        )
        from dbt.contracts.selection import SelectorFile
        from dbt.task.test import TestResultData

        classes = [Project, ProfileConfig, PackageConfig, Configuration, ProjectFlags]
        classes += [SelectorFile, TestResultData]
        if kind.isidentifier():
            classes.append(importlib.import_module(f"dbt.adapters.{kind}").Plugin.credentials)
        for cls in classes:
            cls.json_schema()
    except Exception:  # only a head start: dbt does all this itself when it runs
        pass


if __name__ == "__main__":
    main()
