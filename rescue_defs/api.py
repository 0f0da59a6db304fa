"""Adds rescue to a team's existing Definitions: the one door into the package.

    defs = with_rescue(dg.Definitions(assets=[my_dbt_assets, ...], schedules=[...],
                                      resources={"dbt": DbtCliResource(project_dir=...)}))

The team's dbt assets keep their keys, groups, config and function; they gain row-count and
max-date checks; rescue's jobs, sensors, checks and report join them. The team's schedules are
"the scheduled pipeline" a rescue must not collide with.
"""

from collections.abc import Sequence

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
    """`defs` with rescue added around its dbt assets (one `@dbt_assets` definition).

    project: the DbtProject of those assets, when `@dbt_assets` was not given `project=`.
    schedules: the scheduled pipeline a rescue waits for and plans around; default: every
        schedule in `defs`.
    """
    from rescue_defs import settings
    from rescue_defs.assets.dbt import rescuable

    settings.check()
    team = _dbt_assets_of(defs)
    twin = rescuable(team, project)
    project = project or _project_of(team)
    others = [a for a in (defs.assets or ()) if a is not team]
    if schedules is None:
        schedules = [s for s in (defs.schedules or ()) if isinstance(s, dg.ScheduleDefinition)]
    rescue = _rescue_defs(project, twin, others, list(schedules))
    resources = dict(rescue.resources or {})
    resources.update(defs.resources or {})
    # the proof and freshness checks ask for `dbt`: the team's, else one for the project
    dbt_key = _dbt_key(team)
    if "dbt" not in resources:
        resources["dbt"] = resources[dbt_key] if dbt_key in resources else _own_dbt(project)
    return dg.Definitions(
        assets=[*others, twin, *(rescue.assets or ())],
        asset_checks=[*(defs.asset_checks or ()), *(rescue.asset_checks or ())],
        jobs=[*(defs.jobs or ()), *(rescue.jobs or ())],
        schedules=list(defs.schedules or ()),
        sensors=[*(defs.sensors or ()), *(rescue.sensors or ())],
        resources=resources,
        executor=defs.executor,
        loggers=defs.loggers,
        metadata=defs.metadata,
    )


def _dbt_assets_of(defs: dg.Definitions) -> dg.AssetsDefinition:
    found = [a for a in (defs.assets or ()) if _is_dbt_assets(a)]
    if len(found) != 1:
        names = ", ".join(a.op.name for a in found) or "none"
        raise TeamAssetsError(
            f"with_rescue needs exactly one dbt assets definition (@dbt_assets) in the "
            f"Definitions, found {len(found)} ({names})"
        )
    team = found[0]
    if team.partitions_def is not None:
        # a rescue's runs, proof and history are per model, not per partition: launched
        # unpartitioned they would fail or, worse, say rebuilt what one partition rebuilt
        raise TeamAssetsError(
            f"dbt assets {team.op.name!r} are partitioned "
            f"({type(team.partitions_def).__name__}): rescue does not rebuild partitioned dbt "
            "assets yet; add it to a location whose dbt assets are not partitioned"
        )
    return team


def _is_dbt_assets(asset) -> bool:
    if not isinstance(asset, dg.AssetsDefinition) or not asset.is_executable:
        return False
    metadata = next(iter((asset.metadata_by_key or {}).values()), {})
    return DAGSTER_DBT_MANIFEST_METADATA_KEY in metadata


def _project_of(team: dg.AssetsDefinition) -> DbtProject:
    from dagster_dbt.asset_utils import get_manifest_and_translator_from_dbt_assets

    return get_manifest_and_translator_from_dbt_assets([team])[2]


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


def _rescue_defs(project, twin, others, schedules) -> dg.Definitions:
    from rescue_defs import assembly

    return assembly.rescue_definitions(
        project,
        twin,
        defined=_defined_keys(others),
        loaded_by_dagster=_materialized_by_dagster(others),
        schedules=schedules,
    )


def rescue_only_checks(defs: dg.Definitions) -> list[dg.AssetChecksDefinition]:
    """The checks only a rescue runs (the proof, source freshness): a nightly job of every
    asset subtracts them (they do nothing in it, but each is a step)."""
    from rescue_defs.assembly import rescue_only_checks as found

    return found(defs)
