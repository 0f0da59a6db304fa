"""An analyst's open DuckDB connection: named before launch, and no dbt run fails on it."""

import contextlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from rescue_defs import rescues
from rescue_defs.cli import main
from rescue_defs.warehouse_lock import holder
from tests.helpers import dbt_commands, materialize_all, raw_config


@contextlib.contextmanager
def holding(path: Path):
    """Another process with the DuckDB file at `path` open read-write, as a notebook would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    duckdb.connect(str(path)).close()
    code = (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('open', flush=True); "
        "time.sleep(120)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "open"
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def notebook(warehouse: Path):
    with holding(warehouse) as proc:
        yield proc


def test_the_holder_is_named_by_pid_and_command_without_taking_the_lock(notebook, warehouse):
    found = holder(warehouse)
    assert found is not None and found.pid == notebook.pid
    assert "duckdb.connect" in found.command and not found.is_pipeline
    notebook.kill()
    notebook.wait()
    assert holder(warehouse) is None


def test_launch_refuses_while_a_notebook_holds_the_warehouse_and_names_it(
    shop_project, notebook, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    args = ["launch", "--project-dir", str(shop_project.project_dir), "--select", "stg_orders+"]
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 2
    assert f"held by PID {notebook.pid}" in out + err
    with dg.DagsterInstance.get() as instance:
        assert rescues.rescue_ids(instance) == []  # nothing registered, nothing launched


@pytest.mark.parametrize("what", ["loader", "dbt models"])
def test_a_run_waits_for_the_holder_then_fails_naming_it_before_any_dbt_command(
    shop_defs, instance, notebook, monkeypatch, what
):
    monkeypatch.setenv("RESCUE_LOCK_WAIT_SECONDS", "2")
    started = time.monotonic()
    if what == "loader":
        result = materialize_all(shop_defs, instance, raw_config("2026-01-05"), False)
    else:
        job = shop_defs.resolve_implicit_global_asset_job_def()
        models = [
            k
            for k in shop_defs.resolve_asset_graph().materializable_asset_keys
            if k.path[0] != "raw"
        ]
        result = job.execute_in_process(
            instance=instance, asset_selection=models, raise_on_error=False
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert f"held by PID {notebook.pid}" in failure.step_failure_data.error.message
    assert dbt_commands(instance, result.run_id) == []
    assert time.monotonic() - started < 60


@pytest.fixture
def own_file_project(tmp_path: Path, warehouse: Path):
    """A team's DuckDB project whose profile names its own file (an absolute path, no
    RESCUE_DUCKDB_PATH), beside this test's bundled-warehouse setting, which names another."""
    from tests.conftest import FIXTURES, prepare

    project = tmp_path / "their_project"
    shutil.copytree(FIXTURES / "jaffle_shop", project)
    own = tmp_path / "theirs" / "jaffle.duckdb"
    own.parent.mkdir()
    duckdb.connect(str(own)).close()
    (project / "profiles.yml").write_text(
        f"jaffle_shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        f"      path: {own}\n      threads: 2\n"
    )
    return prepare(project, own)


def test_launch_names_a_notebook_on_the_projects_own_file_not_on_the_bundled_one(
    own_file_project, warehouse, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    args = ["launch", "--project-dir", str(own_file_project.project_dir)]
    args += ["--select", "customers"]
    with holding(warehouse):  # another project's file: none of this rescue's business
        assert main([*args, "--dry-run"]) == 0
        out, err = capsys.readouterr()
        assert "held by" not in out + err and "no warehouse file" not in out + err
    with holding(tmp_path / "theirs" / "jaffle.duckdb") as on_theirs:
        assert main(args) == 2
        out, err = capsys.readouterr()
        assert f"held by PID {on_theirs.pid}" in out + err


def test_a_run_of_another_duckdb_project_waits_for_a_notebook_on_its_own_file(
    own_file_project, instance, tmp_path, monkeypatch
):
    from rescue_defs.definitions import build_definitions

    monkeypatch.setenv("RESCUE_LOCK_WAIT_SECONDS", "2")
    defs = build_definitions(own_file_project)
    job = defs.resolve_implicit_global_asset_job_def()
    models = [k for k in defs.resolve_asset_graph().materializable_asset_keys]
    with holding(tmp_path / "theirs" / "jaffle.duckdb") as on_theirs:
        result = job.execute_in_process(
            instance=instance, asset_selection=models, raise_on_error=False
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert f"held by PID {on_theirs.pid}" in failure.step_failure_data.error.message
    assert dbt_commands(instance, result.run_id) == []
