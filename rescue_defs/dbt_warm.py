"""A dbt imported while a rescue's run worker loads the code location.

A run worker spends ~1.6 s loading the code location before the rescue's step starts, on one
core; then the step's first dbt spends ~1.3 s importing dbt before it reads a file. Here a
rescue_step_job worker starts a dbt process as the load begins (`start_for_run_worker`): it
imports dbt on the other core, then waits on a socket no other user can reach. The step's
first `rescue-dbt` (dagster-dbt's child, dbt_child.py) hands it its arguments, environment,
folder and its own stdin/stdout/stderr (`hand_over`), then relays signals and exits with its
exit code: dagster-dbt reads that dbt's output on its child's pipe as from any dbt. One
invocation only; every later one starts as before. Nothing is run before the step asks:
the process opens no file and no connection until then, and ends unused when the worker ends
or after `WAIT_SECONDS`. Linux only (abstract socket, the peer's credentials); elsewhere, and
whenever anything here fails, dbt simply starts in the launcher. Standard library only.
"""

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rescue_defs.dbt_child import (
    HANDED_FILE,
    LAUNCHER,
    WARM_ENV,
    die_with_parent,
    executable,
    warm_up,
)

WARM_JOBS = frozenset({"rescue_step_job"})  # the runs whose step starts with dbt
WAIT_SECONDS = 120.0  # unused this long (its step began with a dbt started ahead): it ends
POLL_SECONDS = 0.2
RECEIVE_SECONDS = 5.0  # a launcher sends its whole request at once
_HEADER = struct.Struct("!I")
_SERVE = "from rescue_defs.dbt_warm import serve; serve()"
# what the launcher passes on to the dbt running its command
RELAYED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def run_worker_job(argv: list[str] | None = None) -> str | None:
    """The job this process is the run worker of, else None: a worker started by a code server
    (a spawned process whose arguments hold the job to reconstruct) or by a run launcher
    (`dagster api execute_run <args>`)."""
    import multiprocessing

    argv = sys.argv if argv is None else argv
    if "execute_run" in argv[:-1]:
        try:
            return _job_name(json.loads(argv[-1]))
        except ValueError:
            return None
    if multiprocessing.parent_process() is None:
        return None
    # a spawned process's Process object (unpickled from its parent) keeps its target's args
    for arg in getattr(multiprocessing.current_process(), "_args", None) or ():
        name = getattr(arg, "job_name", None)
        if isinstance(name, str):
            return name
    return None


def _job_name(value: Any) -> str | None:
    if isinstance(value, dict):
        if isinstance(value.get("job_name"), str):
            return value["job_name"]
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            found = _job_name(item)
            if found:
                return found
    return None


def start_for_run_worker() -> subprocess.Popen | None:
    """In a rescue_step_job worker: `start` (once per process)."""
    if os.environ.get(WARM_ENV) or run_worker_job() not in WARM_JOBS:
        return None
    return start()


def start() -> subprocess.Popen | None:
    """Start the waiting dbt for this process's rescue-dbt children (Linux, rescue-dbt beside
    this Python); its name is in this process's environment, which dagster-dbt passes on."""
    if not sys.platform.startswith("linux") or Path(executable()).name != LAUNCHER:
        return None
    name = f"rescue-dbt-{os.getpid()}-{os.urandom(6).hex()}"
    try:
        waiting = subprocess.Popen(
            [sys.executable, "-c", _SERVE, name, str(os.getpid())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return None
    os.environ[WARM_ENV] = name
    return waiting


def hand_over(name: str) -> None:
    """In rescue-dbt: hand this invocation to the waiting dbt and exit with its exit code.
    Returns (dbt then starts here) when none waits or it did not take the invocation."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect("\0" + name)
        request = json.dumps(
            {
                "argv": sys.argv[1:],
                "env": dict(os.environ),
                "cwd": os.getcwd(),
                "python": sys.executable,
                "signals": _signal_state(),
            }
        ).encode()
        socket.send_fds(sock, [_HEADER.pack(len(request)) + request], [0, 1, 2])
        answers = sock.makefile("rb")
        taken = answers.readline()
    except OSError:
        sock.close()
        return
    if not taken.strip().isdigit():  # it ended without starting dbt: start it here
        sock.close()
        return
    pid = int(taken)
    for sig in RELAYED:
        signal.signal(sig, lambda number, _frame: _signal(pid, number))
    _tell_the_step(pid)
    ended = answers.readline().strip().decode()
    answers.read()  # until it has exited: its output is whole before this process ends
    # no exit code: it was killed (SIGKILL by the system, or the worker's end)
    sys.exit(int(ended) if ended.lstrip("-").isdigit() else 1)


def _tell_the_step(pid: int) -> None:
    """For the step's log (assets/dbt_cli.py reads it after the command): which dbt ran it."""
    target = os.environ.get("DBT_TARGET_PATH", "")
    if target:
        try:
            (Path(target) / HANDED_FILE).write_text(str(pid))
        except OSError:  # only the log line is lost
            pass


def _signal_state() -> dict[str, list[int]]:
    """What this launcher ignores and blocks of the signals it relays, as the dbt it would have
    started would have inherited them."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    return {
        "ignored": [int(s) for s in RELAYED if signal.getsignal(s) == signal.SIG_IGN],
        "blocked": [int(s) for s in RELAYED if s in blocked],
    }


def _take_signal_state(state: Any) -> None:
    """In the waiting dbt, before it runs the command: the launcher's signal state for the
    signals it relays (the worker that started this process may have had others: a SIGTERM
    it ignored, relayed here, would leave dbt running with nobody to stop it)."""
    state = state if isinstance(state, dict) else {}
    ignored = {s for s in RELAYED if s in _numbers(state.get("ignored"))}
    blocked = {s for s in RELAYED if s in _numbers(state.get("blocked"))}
    for sig in RELAYED:
        if sig in ignored:
            signal.signal(sig, signal.SIG_IGN)
        else:  # as Python starts: SIGINT raises KeyboardInterrupt, the others end the process
            signal.signal(
                sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
            )
    signal.pthread_sigmask(signal.SIG_UNBLOCK, set(RELAYED) - blocked)
    signal.pthread_sigmask(signal.SIG_BLOCK, blocked)


def _numbers(value: Any) -> set[int]:
    return {v for v in value if isinstance(v, int)} if isinstance(value, list) else set()


def _signal(pid: int, number: int) -> None:
    try:
        os.kill(pid, number)
    except OSError:
        pass


def serve() -> None:
    """The waiting dbt (argv: the socket's name, the pid of the run worker that started it)."""
    parent = int(sys.argv[2])
    die_with_parent(parent)  # ends it at once if that worker is already gone
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind("\0" + sys.argv[1])
    server.listen(4)
    try:
        from dbt.cli.main import cli  # the slow part: what waiting is for
    except ImportError:
        os._exit(0)
    warm_up("")
    server.settimeout(POLL_SECONDS)
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        if os.getppid() != parent or time.monotonic() > deadline:
            os._exit(0)
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        if _from_a_child_of(conn, parent):
            conn.settimeout(RECEIVE_SECONDS)
            try:
                request, fds = _receive(conn)
            except (OSError, ValueError):  # not a whole request: that launcher runs its dbt
                request, fds = {}, []
            # the dbt of the launcher's own Python environment, or none: that launcher runs
            # its dbt itself (told by the connection closing without a pid)
            if request.get("python") == sys.executable and len(fds) == 3:
                conn.settimeout(None)
                break
            for fd in fds:
                os.close(fd)
        conn.close()
    server.close()  # one invocation: a later rescue-dbt finds none and starts dbt itself
    for number, fd in enumerate(fds[:3]):
        os.dup2(fd, number)
    for fd in fds:
        os.close(fd)
    _take_signal_state(request.get("signals"))
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    conn.sendall(f"{os.getpid()}\n".encode())
    threading.Thread(target=_end_with, args=(conn,), daemon=True).start()
    sys.argv = ["dbt", *request["argv"]]
    try:
        code = cli()
    except SystemExit as e:
        code = e.code
    except BaseException:  # what the dbt script would print, then its exit code
        import traceback

        traceback.print_exc()
        code = 1
    code = code if isinstance(code, int) else (0 if code is None else 1)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass
    try:
        conn.sendall(f"{code}\n".encode())
    except OSError:
        pass
    sys.exit(code)  # as dbt exits: its multiprocessing resources released


def _from_a_child_of(conn: socket.socket, parent: int) -> bool:
    """Only a process of this user started by the same run worker may hand over a command."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    if uid != os.getuid():
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return int(stat.rsplit(")", 1)[1].split()[1]) == parent


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    """The request and the three descriptors sent with it; ValueError when not whole."""
    data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, 3)
    fds = list(fds)
    try:
        while len(data) < _HEADER.size or len(data) < _HEADER.size + _size(data):
            more = conn.recv(1 << 16)
            if not more:
                raise ValueError("the request ended early")
            data += more
        request = json.loads(data[_HEADER.size : _HEADER.size + _size(data)])
        if not isinstance(request, dict):
            raise ValueError("not a request")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return request, fds


def _size(data: bytes) -> int:
    return _HEADER.unpack_from(data)[0] if len(data) >= _HEADER.size else 0


def _end_with(conn: socket.socket) -> None:
    """The rescue-dbt that handed the command over is gone (killed): so is this dbt, as a dbt
    it had started itself would be."""
    try:
        while conn.recv(1024):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGKILL)
