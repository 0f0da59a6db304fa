"""A team's own DagsterDbtTranslator (a key prefix, its own groups) names the assets, and every
part of a rescue keeps to those keys: the sensors and runs in the code location, and the `rescue`
CLI in another process, which reads the keys the code location published on the instance."""

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator

from rescue_defs import rescues
from rescue_defs.assets.dbt import load_manifest, model_asset_keys
from rescue_defs.definitions import build_definitions
from rescue_defs.project import load_dbt_project
from tests.helpers import drive_rescue, evaluate_rescue_sensor, materialize_all

REPO = Path(__file__).resolve().parent.parent


class TeamTranslator(DagsterDbtTranslator):
    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        return super().get_asset_key(dbt_resource_props).with_prefix("warehouse")

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "team_dbt"


def _rescue(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "rescue"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_teams_translator_names_the_assets_and_the_cli_rescues_under_those_keys(
    jaffle_project_dir, tmp_path, warehouse, monkeypatch
):
    project_dir = tmp_path / "jaffle_shop"  # a folder of its own: the translator is per folder
    shutil.copytree(jaffle_project_dir, project_dir)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("RESCUE_TODAY", "2018-01-05")  # the seeds' last day
    project = load_dbt_project(str(project_dir))
    defs = build_definitions(project, translator=TeamTranslator())

    graph = defs.resolve_asset_graph()
    orders = dg.AssetKey(["warehouse", "orders"])
    assert orders in graph.materializable_asset_keys
    assert dg.AssetKey("orders") not in graph.get_all_asset_keys()
    assert graph.get(orders).group_name == "team_dbt"

    with dg.DagsterInstance.get() as instance:
        assert materialize_all(defs, instance).success
        evaluate_rescue_sensor(defs, instance)  # the daemon's first tick publishes the keys

    # the CLI in another process: no code location loaded, its keys from the instance
    env = {**os.environ, "DAGSTER_HOME": str(home), "RESCUE_DUCKDB_PATH": str(warehouse)}
    env["PATH"] = f"{REPO / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    where = ["--project-dir", str(project_dir)]
    out = _rescue("launch", "--select", "stg_orders+", *where, env=env)
    rescue_id = re.search(r"^rescue (\S+): active$", out, re.M).group(1)
    with dg.DagsterInstance.get() as instance:
        record = drive_rescue(defs, instance, rescue_id)
        assert record["status"] == rescues.SUCCEEDED, record["message"]
        built = rescues.materialized(
            instance, (r.run_id for r in rescues.step_runs(instance, rescue_id))
        )
    assert orders in built and all(k.path[0] == "warehouse" for k in built), built
    planned = sum(len(step["models"]) for step in record["steps"])
    status = _rescue("status", rescue_id, *where, env=env)
    assert f"{planned}/{planned} rebuilt" in status, status
    # the CLI tells what the code location itself tells, check by check
    with dg.DagsterInstance.get() as instance:
        manifest = load_manifest(str(project.manifest_path), str(project.project_dir))
        lines = rescues.status_lines(instance, rescue_id, model_asset_keys(manifest))
    assert "\n".join(lines) in status, (lines, status)
