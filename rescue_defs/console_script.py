"""The `rescue` console script: `cli.main` in a process that ends when the command does.

A plan holds a dbt manifest's millions of small objects (25 MB of JSON at 2,300 models).
Python's cyclic collector scans them again and again while they are read, and the interpreter
frees them one by one on its way out, though the process is ending: ~0.4 s each on the
2,332-model GitLab manifest, a third of `rescue plan`'s time (bench/plan_bench.py). So the
collector waits while the command reads and plans (it is switched back on before a command
settles into following a rescue: `resume_collecting`), and the process leaves without the
teardown once it has flushed its output and run its exit handlers.
"""

import atexit
import gc
import os
import sys
import threading


def run() -> None:
    gc.disable()
    from rescue_defs.cli import main

    try:
        code = main()
    except BrokenPipeError:  # `rescue plan | head` stopped reading: nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    leave(code)


def resume_collecting() -> None:
    """Before a long-lived loop: what was read so far is kept as it is (frozen, never scanned
    again), and what the loop allocates is collected as usual."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def leave(code: int) -> None:
    """Exit with `code` as `sys.exit` would, minus freeing every object one by one."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # `rescue plan | head`: the reader has gone, nothing to say
        pass
    sys.stderr.flush()
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    if any(t.is_alive() and not t.daemon for t in others):
        sys.exit(code)  # a thread the interpreter would wait for: the usual way out
    # what the interpreter runs on its way out before the teardown: temporary folders
    # (weakref finalizers), logging's flush, a Dagster instance's clean-up
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    sys.stderr.flush()
    os._exit(code)
