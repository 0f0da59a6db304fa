"""The README's first command, end to end: `./dev demo` serves the UI; everything materializes."""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from dagster_graphql import DagsterGraphQLClient

REPO = Path(__file__).resolve().parents[1]

ASSET_GROUPS = """
{ assetNodes { assetKey { path } groupName dependencyKeys { path } } }
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(predicate, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception:
            pass
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}; dagster dev said:\n{log.read_text()[-4000:]}")


@pytest.fixture
def demo(tmp_path: Path):
    port = _free_port()
    log = tmp_path / "dagster-dev.log"
    env = {
        **os.environ,
        "PORT": str(port),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "RESCUE_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(REPO / "dev"), "demo"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        client = DagsterGraphQLClient("127.0.0.1", port_number=port)
        _wait_for(lambda: client._execute(ASSET_GROUPS)["assetNodes"], 180, "the UI", log)
        yield client, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        # code servers dagster dev started must not outlive the test
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_demo_serves_the_lineage_and_materializes_everything(demo):
    client, log = demo
    nodes = client._execute(ASSET_GROUPS)["assetNodes"]
    group_of = {"/".join(n["assetKey"]["path"]): n["groupName"] for n in nodes}
    assert set(group_of.values()) == {"raw", "staging", "intermediate", "marts", "rescue"}
    deps = {"/".join(n["assetKey"]["path"]): n["dependencyKeys"] for n in nodes}
    assert {"path": ["raw", "orders"]} in deps["stg_order_status_changes"]

    # what "Materialize all" in the UI launches: the implicit asset job over every asset
    run_id = client.submit_job_execution(
        "__ASSET_JOB",
        run_config={"ops": {"raw_sources": {"config": {"through_date": "2026-01-12"}}}},
    )
    status = _wait_for(
        lambda: (
            (s := client.get_run_status(run_id).value) in ("SUCCESS", "FAILURE", "CANCELED") and s
        ),
        300,
        "the run",
        log,
    )
    assert status == "SUCCESS"
