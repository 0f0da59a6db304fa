"""A team adds rescue to the Dagster project it already runs (tests/team_project): its own
`@dbt_assets` keep their keys (its translator's prefix), group, config and function; rescue's
jobs, sensors and checks join them; a rescue launched by the `rescue` CLI in another process
rebuilds under the team's keys and its status there equals the code location's."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets

from rescue_defs import rescues
from rescue_defs.api import TeamAssetsError, with_rescue
from rescue_defs.assets.dbt import load_manifest, model_asset_keys
from rescue_defs.published import published_schedules
from tests.conftest import FIXTURES
from tests.helpers import (
    PrefixTranslator,
    checks_of,
    drive_rescue,
    evaluate_rescue_sensor,
    materialize_all,
    rescue_id_of,
    start_rescue,
)

REPO = Path(__file__).resolve().parent.parent
TEAM_DEFINITIONS = REPO / "tests" / "team_project" / "definitions.py"
ORDERS = dg.AssetKey(["analytics", "orders"])


def dbt_parse(project_dir: Path) -> None:
    """What a team's deploy does before the code loads."""
    subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), "parse", "--quiet"],
        cwd=project_dir,
        env={**os.environ, "DBT_PROFILES_DIR": str(project_dir)},
        check=True,
    )


@pytest.fixture
def team_env(tmp_path, warehouse, monkeypatch) -> Path:
    project_dir = tmp_path / "jaffle_shop"
    shutil.copytree(FIXTURES / "jaffle_shop", project_dir)
    warehouse.parent.mkdir(parents=True, exist_ok=True)  # the profile's DuckDB file
    dbt_parse(project_dir)
    monkeypatch.setenv("TEAM_DBT_PROJECT_DIR", str(project_dir))
    monkeypatch.setenv("TEAM_DBT_PROFILES_DIR", str(project_dir))
    monkeypatch.setenv("RESCUE_TODAY", "2018-01-05")  # the seeds' last day
    return project_dir


def _rescue(*args: str) -> str:
    """The `rescue` CLI as a user runs it, in its own process."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "rescue"), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def load_team_definitions() -> dg.Definitions:
    spec = importlib.util.spec_from_file_location("team_definitions", TEAM_DEFINITIONS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.defs


def test_a_teams_dbt_assets_keep_their_keys_config_and_function_and_a_rescue_keeps_to_them(
    team_env, instance
):
    defs = load_team_definitions()
    graph = defs.resolve_asset_graph()
    assert ORDERS in graph.materializable_asset_keys
    assert dg.AssetKey("orders") not in graph.get_all_asset_keys()
    assert graph.get(ORDERS).group_name == "analytics"
    assert {s.name for s in defs.schedules} == {"nightly_analytics_schedule"}
    assert {"rescue_sensor", "merge_sensor"} <= {s.name for s in defs.sensors}

    # the team's nightly job runs the team's function with the team's config, and the
    # rebuilt models gain row-count and max-date checks
    nightly = defs.resolve_job_def("nightly_analytics_job")
    result = nightly.execute_in_process(
        instance=instance,
        run_config={"ops": {"analytics_dbt_assets": {"config": {"full_refresh": True}}}},
    )
    assert result.success
    logs = [e.message for e in instance.all_logs(result.run_id) if e.user_message]
    assert any("analytics build (full_refresh=True)" in m for m in logs), logs
    checks = checks_of(result)
    assert checks[("analytics/orders", "row_count_is_expected")].passed

    # a rescue launched by the `rescue` CLI in another process, which has no code location:
    # it finds the team's keys on the instance (published by rescue_sensor's first tick)
    evaluate_rescue_sensor(defs, instance)
    out = _rescue("launch", "--select", "stg_orders+", "--project-dir", str(team_env))
    rescue_id = re.search(r"^rescue (\S+): active$", out, re.M).group(1)
    record = drive_rescue(defs, instance, rescue_id)
    assert record["status"] == rescues.SUCCEEDED, record["message"]
    runs = rescues.step_runs(instance, rescue_id)
    built = rescues.materialized(instance, (r.run_id for r in runs))
    assert ORDERS in built and all(k.path[0] == "analytics" for k in built), built
    # built with the rescue's own invocations (stages, dbt that dies with its worker)
    for run in runs:
        messages = [e.message for e in instance.all_logs(run.run_id) if e.user_message]
        assert not any("analytics build" in m for m in messages)
    # the CLI tells what the code location itself tells, check by check
    planned = sum(len(step["models"]) for step in record["steps"])
    status = _rescue("status", rescue_id, "--project-dir", str(team_env))
    assert f"{planned}/{planned} rebuilt" in status, status
    manifest = load_manifest(str(team_env / "target" / "manifest.json"), str(team_env))
    lines = rescues.status_lines(instance, rescue_id, model_asset_keys(manifest))
    assert "\n".join(lines) in status, (lines, status)
    # the CLI, in a process without this code, plans around the team's schedule
    (published,) = published_schedules(instance, "jaffle_shop")
    assert (published.name, published.cron_schedule) == ("nightly_analytics_schedule", "0 5 * * *")


def readme_example() -> str:
    """The code block of the README's "Add rescue to the Dagster project you already run"."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Add rescue to the Dagster project you already run") :]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def _validate(definitions: Path, cwd: Path) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-f"]
        + [str(definitions)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Validation successful" in done.stdout + done.stderr


def test_dagster_definitions_validate_passes_on_the_team_project(team_env):
    _validate(TEAM_DEFINITIONS, REPO)


def test_the_readme_example_validates_and_adds_rescue_in_two_lines(team_env, tmp_path):
    code = readme_example()
    # the team's code without rescue: the import and the with_rescue( ... ) wrapper
    added = [line for line in code.splitlines() if "with_rescue" in line]
    assert len(added) == 2, added
    folder = tmp_path / "location"
    folder.mkdir()
    shutil.copytree(team_env, folder / "analytics")  # `DbtProject(project_dir="analytics")`
    (folder / "definitions.py").write_text(code)
    _validate(folder / "definitions.py", folder)


def _other_project(team_env: Path) -> dg.AssetsDefinition:
    """The same dbt project checked out in a second folder: another project for Dagster."""
    other = team_env.parent / "other_checkout"
    shutil.copytree(team_env, other)
    project = DbtProject(project_dir=other, profiles_dir=other)
    return _dbt_assets(project, "second", project.manifest_path)


def _dbt_assets(project: DbtProject | None, name: str, manifest: Path, partitions_def=None):
    @dbt_assets(manifest=manifest, project=project, name=name, partitions_def=partitions_def)
    def team_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
        yield from dbt.cli(["build"], context=context).stream()

    return team_models


@pytest.mark.parametrize(
    "case, message",
    [
        (
            "none",
            "with_rescue needs a dbt assets definition (@dbt_assets) in the Definitions, "
            "found none",
        ),
        (
            "two projects of one name",
            "two dbt projects named 'jaffle_shop' (",
        ),
        (
            "no project",
            "were defined without project=: pass @dbt_assets(project=...) or "
            "with_rescue(..., project=DbtProject(...))",
        ),
        (
            "partitioned",
            "are partitioned (DailyPartitionsDefinition): rescue does not rebuild "
            "partitioned dbt assets yet",
        ),
    ],
)
def test_definitions_rescue_cannot_fit_say_why_in_one_line(team_env, case, message):
    project = DbtProject(project_dir=team_env, profiles_dir=team_env)
    manifest = project.manifest_path
    assets = {
        "none": [],
        "two projects of one name": [
            _dbt_assets(project, "first", manifest),
            _other_project(team_env),
        ],
        "no project": [_dbt_assets(None, "models", manifest)],
        "partitioned": [
            _dbt_assets(project, "daily", manifest, dg.DailyPartitionsDefinition("2026-01-01"))
        ],
    }[case]
    with pytest.raises(TeamAssetsError) as raised:
        with_rescue(dg.Definitions(assets=assets))
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_team_on_dagster_dbts_component_changes_one_line_of_defs_yaml(team_env, instance):
    from dagster.components.testing import create_defs_folder_sandbox

    from rescue_defs.component import RescueDbtProjectComponent

    project = {"project_dir": str(team_env), "profiles_dir": str(team_env)}
    with create_defs_folder_sandbox() as sandbox:
        sandbox.scaffold_component(
            component_cls=RescueDbtProjectComponent,
            defs_path="analytics",
            defs_yaml_contents={
                "type": "rescue_defs.component.RescueDbtProjectComponent",
                "attributes": {"project": project},
            },
        )
        with sandbox.build_all_defs() as defs:
            graph = defs.resolve_asset_graph()
            assert dg.AssetKey("orders") in graph.materializable_asset_keys
            assert {"rescue_sensor", "merge_sensor"} <= {s.name for s in defs.sensors}
            result = materialize_all(defs, instance)
    assert result.success
    assert checks_of(result)[("orders", "row_count_is_expected")].passed


def _as_the_daemon(defs, instance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """The run as the daemon launches it, its asset selection recorded on the run (each step
    of a project split over several definitions sees the whole run's models); every check of
    those assets (jaffle_shop has no incremental model: no proof check to leave out)."""
    return defs.resolve_job_def(request.job_name).execute_in_process(
        instance=instance,
        asset_selection=list(request.asset_selection),
        tags=request.tags,
        run_config=request.run_config,
        raise_on_error=False,
    )


@pytest.mark.parametrize(
    "select, layered",
    [("stg_orders+", None), ("+orders", True)],
    ids=["one stage", "staging then marts"],
)
def test_a_project_split_over_two_dbt_assets_definitions_is_rescued_across_both(
    team_env, instance, select, layered
):
    """Teams split one project by layer (dagster-dbt's `select=` / `exclude=`): one rescue
    runs both definitions' steps, in lineage order, each validating its own models (in
    stages too: the marts' step starts once the staging step built its stage)."""
    project = DbtProject(project_dir=team_env, profiles_dir=team_env)

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        select="path:models/staging",
        dagster_dbt_translator=PrefixTranslator("analytics"),
    )
    def staging_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
        yield from dbt.cli(["build"], context=context).stream()

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        exclude="path:models/staging",
        dagster_dbt_translator=PrefixTranslator("analytics"),
    )
    def mart_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
        yield from dbt.cli(["build"], context=context).stream()

    defs = with_rescue(
        dg.Definitions(
            assets=[staging_models, mart_models],
            resources={"dbt": DbtCliResource(project_dir=project)},
        )
    )
    stg_orders = dg.AssetKey(["analytics", "stg_orders"])
    assert {stg_orders, ORDERS} <= defs.resolve_asset_graph().materializable_asset_keys
    assert materialize_all(defs, instance).success

    started = start_rescue(defs, instance, select=select, layered=layered)
    record = drive_rescue(defs, instance, rescue_id_of(started), on_request=_as_the_daemon)
    assert record["status"] == rescues.SUCCEEDED, record["message"]
    runs = rescues.step_runs(instance, record["id"])
    built = rescues.materialized(instance, (r.run_id for r in runs))
    assert {stg_orders, ORDERS} <= set(built), built
    # both definitions' models validated, under their own keys
    evaluations = [
        e.dagster_event.event_specific_data
        for run in runs
        for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    checks = {(c.asset_key.to_user_string(), c.check_name) for c in evaluations if c.passed}
    assert {
        ("analytics/stg_orders", "row_count_is_expected"),
        ("analytics/orders", "row_count_is_expected"),
    } <= checks, checks
