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

REPO = Path(__file__).resolve().parents[1]
ASSET_GROUPS = """
{ assetNodes { assetKey { path } groupName dependencyKeys { path } } }
"""
# what the UI's launchpad sends (the GraphQL client's submit cannot select assets)
LAUNCH = """
mutation ($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
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
        demo.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        # seen after long use: issue #25's "dagster dev ignored SIGTERM"
        print(f"dagster dev still running 20 s after signal {signal_first}; log: {demo.log}")
    try:
        os.killpg(demo.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@contextmanager
def served(env: dict[str, str], log: Path) -> Iterator[Demo]:
    demo = start(env, log)
    try:
        yield demo
    finally:
        stop(demo)
