"""The dbt CLI resource asks no `dbt --version` of this environment's dbt (2 s of every run),
and still asks any other executable; dbt parses a project once per warehouse, not once per
invocation."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rescue_defs.assets.dbt_cli import RescueDbtCliResource, executable_version, keep_parse_state
from tests.conftest import FIXTURES, prepare
from tests.helpers import is_alive, listed_by, waiting_query


def test_this_environments_dbt_has_the_version_dbt_itself_prints():
    dbt = str(Path(sys.executable).absolute().parent / "dbt")
    printed = subprocess.check_output([dbt, "--version"]).decode()
    expected = re.search(r"installed:\s*(\d+\.\d+\.\d+)", printed).group(1)
    assert str(executable_version(dbt)) == expected


def test_a_dbt_of_another_environment_is_asked(tmp_path):
    other = tmp_path / "bin" / "dbt"
    other.parent.mkdir()
    other.write_text("#!/bin/sh\necho 'dbt-fusion 2.0.0-preview.45'\n")
    other.chmod(0o755)
    assert str(executable_version(str(other))) == "2.0.0"


def _invoke(dbt, target: Path) -> tuple[bool, list[str]]:
    """(dbt parsed the whole project, what `dbt ls` listed)"""
    invocation = dbt.cli(["ls", "--resource-type", "model"], target_path=target)
    events = [e.raw_event for e in invocation.stream_raw_events()]
    listed = [e["info"]["msg"] for e in events if e["info"]["name"] == "PrintEvent"]
    keep_parse_state(target)
    full = "Unable to do partial parsing" in (target / "dbt.log").read_text()
    return full, sorted(listed)


def test_dbt_parses_the_project_once_per_warehouse_not_once_per_invocation(
    tmp_path, warehouse, monkeypatch
):
    # parsed against one warehouse (as `dagster dev` does), then run against others: dbt's
    # saved state names the warehouse path, so each new path costs one full parse, and only one
    project_dir = tmp_path / "jaffle_shop"
    shutil.copytree(FIXTURES / "jaffle_shop", project_dir)
    prepare(project_dir, tmp_path / "parsed-with.duckdb")
    dbt = RescueDbtCliResource(project_dir=str(project_dir))

    first = _invoke(dbt, tmp_path / "run1")
    second = _invoke(dbt, tmp_path / "run2")
    monkeypatch.setenv("RESCUE_DUCKDB_PATH", str(tmp_path / "sandbox.duckdb"))
    other = _invoke(dbt, tmp_path / "run3")
    monkeypatch.setenv("RESCUE_DUCKDB_PATH", str(warehouse))
    back = _invoke(dbt, tmp_path / "run4")

    assert [first[0], second[0], other[0], back[0]] == [True, False, True, False]
    assert first[1] == second[1] == other[1] == back[1]
    assert "customers" in " ".join(first[1])


def test_invocations_share_an_adapter_only_when_they_use_the_same_warehouse(
    tmp_path, jaffle_project_dir, warehouse, monkeypatch
):
    dbt = RescueDbtCliResource(project_dir=str(jaffle_project_dir))

    def adapter_of(name: str):
        invocation = dbt.cli(["ls"], target_path=tmp_path / name)
        invocation.wait()
        return invocation.adapter

    first, second = adapter_of("run1"), adapter_of("run2")
    monkeypatch.setenv("RESCUE_DUCKDB_PATH", str(tmp_path / "sandbox.duckdb"))
    sandbox = adapter_of("run3")

    assert first is second
    assert sandbox is not first
    # the validation queries of a sandbox run read the sandbox, never prod
    assert Path(first.config.credentials.path) == warehouse
    assert Path(sandbox.config.credentials.path) == tmp_path / "sandbox.duckdb"


PARENT = """
import subprocess, sys, time
child = subprocess.Popen(sys.argv[2:], stdout=open(sys.argv[1], "w"), stderr=subprocess.STDOUT)
print(child.pid, flush=True)
time.sleep(600)
"""


def test_dbt_started_for_a_run_dies_with_the_worker_that_started_it(
    shop_project, warehouse, tmp_path
):
    """A run worker killed while dbt runs a long query (no output meanwhile): dbt must not go
    on writing the warehouse while the rescue resumes."""
    import os
    import signal
    import time

    from rescue_defs import dbt_child

    dbt = [dbt_child.executable(), "show", "--inline", waiting_query(tmp_path)]
    dbt += ["--project-dir", str(shop_project.project_dir)]
    dbt += ["--profiles-dir", str(shop_project.profiles_dir), "--target-path", "target/show"]
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "dbt.log"
    worker = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(log), *dbt],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    child = int(worker.stdout.readline())
    try:
        time.sleep(8)  # dbt has started, and runs the query
        assert is_alive(child), log.read_text()
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        deadline = time.monotonic() + 3
        while is_alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not is_alive(child), "dbt outlived the worker that started it"
    finally:
        os.killpg(worker.pid, signal.SIGKILL)


def test_a_cached_adapter_runs_dbts_macros_on_its_own_connection(tmp_path, monkeypatch):
    """dbt's macros run on the adapter registered in dbt's factory: an adapter handed out again
    from the cache after another warehouse's was made must be that one again."""
    project_dir = tmp_path / "jaffle_shop"
    shutil.copytree(FIXTURES / "jaffle_shop", project_dir)
    prepare(project_dir, tmp_path / "a.duckdb")
    import duckdb

    for name in ("a", "b"):  # two warehouses, one table in each
        with duckdb.connect(str(tmp_path / f"{name}.duckdb")) as con:
            con.execute("create table main.t as select 1 as x")
    dbt = RescueDbtCliResource(project_dir=str(project_dir))
    monkeypatch.setenv("RESCUE_DUCKDB_PATH", str(tmp_path / "a.duckdb"))
    first = dbt._initialize_dbt_core_adapter([])
    monkeypatch.setenv("RESCUE_DUCKDB_PATH", str(tmp_path / "b.duckdb"))
    assert dbt._initialize_dbt_core_adapter([]) is not first  # the other warehouse's
    monkeypatch.setenv("RESCUE_DUCKDB_PATH", str(tmp_path / "a.duckdb"))
    again = dbt._initialize_dbt_core_adapter([])
    assert again is first
    with again.connection_named("test"):
        table = again.Relation.create(database="a", schema="main", identifier="t")
        assert [c.name for c in again.get_columns_in_relation(table)] == ["x"]
    from rescue_defs.checks.validation import release_adapter

    release_adapter(again)


def test_a_build_asks_for_dbts_fast_test_edges_unless_the_team_chose(monkeypatch):
    from rescue_defs.assets.dbt_cli import with_fast_test_edges

    for name in ("DBT_USE_FAST_TEST_EDGES", "DBT_ENGINE_USE_FAST_TEST_EDGES"):
        monkeypatch.delenv(name, raising=False)
    assert with_fast_test_edges(["build", "--select", "a"]) == [
        "build",
        "--select",
        "a",
        "--use-fast-test-edges",
    ]
    assert with_fast_test_edges(["--quiet", "build"])[-1] == "--use-fast-test-edges"
    # other commands have no test edges; a team's own choice, either way, stands
    assert with_fast_test_edges(["run", "--select", "a"]) == ["run", "--select", "a"]
    assert with_fast_test_edges(["build", "--no-use-fast-test-edges"]) == [
        "build",
        "--no-use-fast-test-edges",
    ]
    assert with_fast_test_edges(["build"], ["--no-use-fast-test-edges"]) == ["build"]
    monkeypatch.setenv("DBT_ENGINE_USE_FAST_TEST_EDGES", "false")
    assert with_fast_test_edges(["build"]) == ["build"]


def test_a_dbt_without_the_flag_in_core_is_not_given_it(tmp_path):
    """dbt-core before 1.9 has no such flag, and the fusion engine (2.x) warns about it."""
    project = tmp_path / "jaffle_shop"
    shutil.copytree(FIXTURES / "jaffle_shop", project)
    fusion = tmp_path / "bin" / "dbt"
    fusion.parent.mkdir()
    fusion.write_text("#!/bin/sh\necho 'dbt-fusion 2.0.0-preview.45'\n")
    fusion.chmod(0o755)
    dbt = RescueDbtCliResource(project_dir=str(project), dbt_executable=str(fusion))
    invocation = dbt.cli(["build"], target_path=tmp_path / "target")
    invocation.process.wait()
    assert "--use-fast-test-edges" not in invocation.process.args
    assert invocation.process.args[1] == "build"  # (this environment's dbt gets it:
    # test_rescue_runs' stages)


def test_a_dbt_started_ahead_waits_having_done_nothing_then_runs_as_one_started_then(
    tmp_path, jaffle_project_dir, warehouse
):
    import time

    from rescue_defs import dbt_child
    from rescue_defs.assets.dbt_ahead import go, start_waiting

    dbt = RescueDbtCliResource(
        project_dir=str(jaffle_project_dir), dbt_executable=dbt_child.executable()
    )
    at_once = listed_by(dbt.cli(["ls", "--resource-type", "model"], target_path=tmp_path / "now"))
    ahead = start_waiting(dbt.cli, ["ls", "--resource-type", "model"], target_path=tmp_path / "a")
    time.sleep(4)  # long enough to have imported dbt, and to have run `ls` were it not waiting
    assert ahead.process.poll() is None
    assert not (tmp_path / "a" / "dbt.log").exists()  # dbt has not started: no log, no parse
    assert not (tmp_path / "a" / "manifest.json").exists()
    assert listed_by(go(ahead)) == at_once
    assert "customers" in " ".join(at_once)


def test_a_dbt_called_off_ends_having_written_nothing(tmp_path, jaffle_project_dir, warehouse):
    from rescue_defs import dbt_child
    from rescue_defs.assets.dbt_ahead import call_off, start_waiting

    dbt = RescueDbtCliResource(
        project_dir=str(jaffle_project_dir), dbt_executable=dbt_child.executable()
    )
    ahead = start_waiting(dbt.cli, ["run"], target_path=tmp_path / "a")
    call_off(ahead)
    assert ahead.process.returncode == 0
    assert not (tmp_path / "a" / "dbt.log").exists()
    assert not warehouse.exists()  # dbt never connected: nothing run, nothing written
    # the same folder started at once runs at once: no word left from the one called off
    again = dbt.cli(["ls", "--resource-type", "model"], target_path=tmp_path / "a")
    assert "customers" in " ".join(listed_by(again))


def test_only_rescue_dbt_is_started_ahead(tmp_path, jaffle_project_dir):
    """Any other executable would not wait: it would run at once, out of turn."""
    dbt = RescueDbtCliResource(project_dir=str(jaffle_project_dir), dbt_executable="dbt")
    with pytest.raises(ValueError, match="waits"):
        dbt.cli(["run"], target_path=tmp_path / "a", waiting=True)
