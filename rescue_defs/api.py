"""Adds rescue to a team's existing Definitions: the one door into the package.

    defs = with_rescue(dg.Definitions(assets=[my_dbt_assets, ...], schedules=[...],
                                      resources={"dbt": DbtCliResource(project_dir=...)}))

The team's dbt assets keep their keys, groups, config and function; they gain row-count and
max-date checks; rescue's jobs, sensors, checks and report join them. The team's schedules are
"the scheduled pipeline" a rescue must not collide with.
"""

from collections.abc import Sequence
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtProject
from dagster_dbt.asset_utils import DAGSTER_DBT_MANIFEST_METADATA_KEY

from rescue_defs.assets.twin import TeamAssetsError

__all__ = ["TeamAssetsError", "rescue_only_checks", "with_rescue"]


def with_rescue(
    defs: dg.Definitions,
    *,
    project: DbtProject | None = None,
    schedules: Sequence[dg.ScheduleDefinition] | None = None,
) -> dg.Definitions:
    """`defs` with rescue added around its dbt assets: every `@dbt_assets` definition, of one
    dbt project or several (a project may be split over several definitions, e.g. by
    `select=`). With several projects, each gets its own rescue_job and sensors, named after
    it (`<project>_rescue_job`; scope.py).

    project: the DbtProject of those assets, when `@dbt_assets` was not given `project=`.
    schedules: the scheduled pipeline a rescue waits for and plans around; default: every
        schedule in `defs`.
    """
    from rescue_defs import dbt_warm, settings
    from rescue_defs.assembly import ProjectPart
    from rescue_defs.assets.dbt import rescuable
    from rescue_defs.scope import Scope

    settings.check()
    # a rescue's run worker: its first dbt imports itself while the load goes on (dbt_warm.py)
    dbt_warm.start_for_run_worker()
    teams = _dbt_assets_of(defs)
    groups = _projects(teams, project)
    resources = dict(defs.resources or {})
    parts, twins = [], []
    for index, (found, names, members) in enumerate(groups):
        scope = Scope(names, primary=index == 0) if len(groups) > 1 else Scope()
        mine = [rescuable(team, found, keyed_by=members) for team in members]
        twins += mine
        # the freshness checks ask for the project's DbtCliResource: the team's, else one
        # of their own for the project
        dbt_key = next((k for k in map(_dbt_key, members) if k in resources), None)
        if dbt_key is None:
            dbt_key = scope.named("dbt")
            resources.setdefault(dbt_key, _own_dbt(found))
        parts.append(ProjectPart(found, mine, scope, dbt_key))
    if len(groups) == 1 and "dbt" not in resources:
        resources["dbt"] = resources[parts[0].dbt_key]
    others = [a for a in (defs.assets or ()) if not any(a is team for team in teams)]
    if schedules is None:
        schedules = [s for s in (defs.schedules or ()) if isinstance(s, dg.ScheduleDefinition)]
    rescue = _rescue_defs(parts, others, list(schedules))
    resources = {**(rescue.resources or {}), **resources}
    return dg.Definitions(
        assets=[*others, *twins, *(rescue.assets or ())],
        asset_checks=[*(defs.asset_checks or ()), *(rescue.asset_checks or ())],
        jobs=[*(defs.jobs or ()), *(rescue.jobs or ())],
        schedules=list(defs.schedules or ()),
        sensors=[*(defs.sensors or ()), *(rescue.sensors or ())],
        resources=resources,
        executor=defs.executor,
        loggers=defs.loggers,
        metadata=defs.metadata,
    )


def _dbt_assets_of(defs: dg.Definitions) -> list[dg.AssetsDefinition]:
    found = [a for a in (defs.assets or ()) if _is_dbt_assets(a)]
    if not found:
        raise TeamAssetsError(
            "with_rescue needs a dbt assets definition (@dbt_assets) in the Definitions, found none"
        )
    for team in found:
        if team.partitions_def is not None:
            # a rescue's runs, proof and history are per model, not per partition: launched
            # unpartitioned they would fail or, worse, say rebuilt what one partition rebuilt
            raise TeamAssetsError(
                f"dbt assets {team.op.name!r} are partitioned "
                f"({type(team.partitions_def).__name__}): rescue does not rebuild "
                "partitioned dbt assets yet; add it to a location whose dbt assets are not "
                "partitioned"
            )
    return found


def _projects(
    teams: list[dg.AssetsDefinition], given: DbtProject | None
) -> list[tuple[DbtProject, str, list[dg.AssetsDefinition]]]:
    """(project, its dbt name, its definitions) for each dbt project, in the order found:
    a project split over several definitions (select=/exclude=) is one project."""
    from rescue_defs.assets.dbt import load_manifest
    from rescue_defs.assets.twin import project_of

    folders: dict[str, tuple[DbtProject, list[dg.AssetsDefinition]]] = {}
    for team in teams:
        found = given or project_of(team)
        folders.setdefault(str(Path(found.project_dir).resolve()), (found, []))[1].append(team)
    groups, named = [], {}
    for folder, (found, members) in folders.items():
        name = load_manifest(str(found.manifest_path), str(found.project_dir)).project_name
        if name in named:
            # each project's jobs and sensors are named after it, and records say whose
            raise TeamAssetsError(
                f"two dbt projects named {name!r} ({named[name]} and {folder}): rescue tells "
                "a location's projects apart by their dbt_project.yml name; rename one"
            )
        named[name] = folder
        groups.append((found, name, members))
    return groups


def _is_dbt_assets(asset) -> bool:
    if not isinstance(asset, dg.AssetsDefinition) or not asset.is_executable:
        return False
    metadata = next(iter((asset.metadata_by_key or {}).values()), {})
    return DAGSTER_DBT_MANIFEST_METADATA_KEY in metadata


def _own_dbt(project: DbtProject):
    from rescue_defs.assets.dbt import own_dbt

    return own_dbt(project)


def _dbt_key(team: dg.AssetsDefinition) -> str | None:
    from rescue_defs.assets.twin import dbt_resource_key

    return dbt_resource_key(team)


def _defined_keys(assets) -> set[dg.AssetKey]:
    keys: set[dg.AssetKey] = set()
    for a in assets:
        if isinstance(a, dg.AssetSpec):
            keys.add(a.key)
        elif isinstance(a, dg.AssetsDefinition):
            keys |= set(a.keys)
    return keys


def _materialized_by_dagster(assets) -> set[dg.AssetKey]:
    keys: set[dg.AssetKey] = set()
    for a in assets:
        if isinstance(a, dg.AssetsDefinition) and a.is_executable:
            keys |= set(a.keys)
    return keys


def _rescue_defs(parts, others, schedules) -> dg.Definitions:
    from rescue_defs import assembly

    return assembly.rescue_definitions(
        parts,
        defined=_defined_keys(others),
        loaded_by_dagster=_materialized_by_dagster(others),
        schedules=schedules,
    )


def rescue_only_checks(defs: dg.Definitions) -> list[dg.AssetChecksDefinition]:
    """The checks only rescue runs as steps of their own (source freshness): a nightly job of
    every asset subtracts them (they do nothing in it, but each is a step)."""
    from rescue_defs.assembly import rescue_only_checks as found

    return found(defs)
