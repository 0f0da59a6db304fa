"""`./dev demo` (a real `dagster dev`: webserver, daemon, code server, run workers) on a test's
own Dagster home and warehouse: started, waited for, and stopped without leaving a process."""

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# what the UI's launchpad sends, as the CLI sends it (the GraphQL client's submit cannot select
# assets)
from rescue_defs.rescues.kickoff import SUBMIT as LAUNCH  # noqa: F401  (tests and bench use it)

REPO = Path(__file__).resolve().parents[1]
ASSET_GROUPS = """
{ assetNodes { assetKey { path } groupName dependencyKeys { path } } }
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, log: Path):
    """The predicate's first truthy value, polled every second; fails naming `what` with the
    end of dagster dev's log when it never comes (tests and bench/walkthrough.py use it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except AssertionError:  # the predicate knows it never will
            raise
        except Exception:  # the webserver is not up yet, or restarting
            pass
        time.sleep(1)
    raise AssertionError(
        f"timed out waiting for {what}; dagster dev said:\n{log.read_text()[-4000:]}"
    )


@dataclass
class Demo:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self):
        from dagster_graphql import DagsterGraphQLClient

        return DagsterGraphQLClient("127.0.0.1", port_number=self.port)


def start(env: dict[str, str], log: Path, port: int | None = None) -> Demo:
    """`./dev demo` in its own process group, once its UI answers."""
    port = port or free_port()
    with log.open("a") as out:
        process = subprocess.Popen(
            [str(REPO / "dev"), "demo"],
            env={**env, "PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # as from a background job (nohup, `&`, CI): SIGINT arrives ignored
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    demo = Demo(process, port, log)
    client = demo.client()
    wait_for(lambda: client._execute(ASSET_GROUPS)["assetNodes"], 180, "the UI", log)
    return demo


def stop(demo: Demo, signal_first: int = signal.SIGTERM) -> None:
    """SIGTERM (or `signal_first`), then SIGKILL of the whole group: code servers and run
    workers dagster dev started must not outlive the test."""
    try:
        os.killpg(demo.process.pid, signal_first)
    except ProcessLookupError:
        return
    try:
        demo.process.wait(timeout=60)
        stopped = True
    except subprocess.TimeoutExpired:
        stopped = False
    try:
        os.killpg(demo.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    # issue #25: started in the background, dagster dev ignored SIGTERM (./dev demo says why)
    assert stopped, f"dagster dev still running 60 s after signal {signal_first}; log: {demo.log}"


@contextmanager
def served(env: dict[str, str], log: Path) -> Iterator[Demo]:
    demo = start(env, log)
    try:
        yield demo
    finally:
        stop(demo)
