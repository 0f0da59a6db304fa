"""Rescue's own definitions around a rescuable dbt assets definition: its jobs, sensors,
checks, report and incident assets, and the resources they need (api.py merges them into the
team's Definitions)."""

from collections.abc import Sequence, Set
from dataclasses import dataclass

import dagster as dg
from dagster_dbt import DbtProject

from rescue_defs import settings
from rescue_defs.assets.incidents import incident_is_resolved, incident_spec
from rescue_defs.assets.projects import LocationProjects
from rescue_defs.assets.report import REPORT_SPEC, rescue_status_job, rescue_succeeded
from rescue_defs.assets.rescue_step import RescueRun
from rescue_defs.checks.freshness import FRESHNESS_CHECK
from rescue_defs.checks.validation import ValidationResource
from rescue_defs.jobs.freshness import build_freshness_checks, build_freshness_job, source_keys
from rescue_defs.jobs.rescue import (
    build_cancel_rescue_job,
    build_rescue_job,
    build_rescue_step_job,
)
from rescue_defs.rescues.store import RESCUE_RUN
from rescue_defs.scope import ONE_PROJECT, Scope
from rescue_defs.sensors.merge import build_merge_sensor
from rescue_defs.sensors.outage import build_source_outage_sensor
from rescue_defs.sensors.report import build_rescue_report_sensor
from rescue_defs.sensors.rescue import build_rescue_sensor


@dataclass(frozen=True)
class ProjectPart:
    """One dbt project of the location: its rescuable dbt assets definitions (the twins),
    its scope (names of its own jobs and sensors) and the resource key of its DbtCliResource."""

    project: DbtProject
    dbt_models: Sequence[dg.AssetsDefinition]
    scope: Scope = ONE_PROJECT
    dbt_key: str = "dbt"


def rescue_definitions(
    parts: Sequence[ProjectPart],
    *,
    defined: Set[dg.AssetKey] = frozenset(),
    loaded_by_dagster: Set[dg.AssetKey] = frozenset(),
    schedules: list[dg.ScheduleDefinition] | None = None,
) -> dg.Definitions:
    """`defined`: asset keys the team's Definitions already has (its source loaders);
    `loaded_by_dagster`: those Dagster materializes (an outage then waits for their loads)."""
    schedules = list(schedules or ())
    all_models = [d for part in parts for d in part.dbt_models]
    # shared by the projects: a run selects one project's assets and checks (a proof that
    # runs again selects the proof's checks alone)
    step_job = build_rescue_step_job(all_models)
    projects = LocationProjects([part.project for part in parts])
    assets: list = [REPORT_SPEC]
    checks: list = [rescue_succeeded]
    jobs: list = [rescue_status_job, step_job, build_cancel_rescue_job(projects)]
    sensors: list = [build_rescue_report_sensor(rescue_status_job, projects)]
    judged: dict[dg.AssetKey, None] = {}  # sources with a freshness rule, in order
    specified = set(defined)  # two projects reading one source: one asset
    for part in parts:
        project, scope = part.project, part.scope
        sources = source_keys(project)
        # sources loaded outside Dagster (Fivetran, a COPY job): assets of their own, so their
        # freshness shows in the UI
        assets += [
            dg.AssetSpec(
                key,
                group_name="sources",
                description=f"dbt source `{uid.split('.', 2)[-1]}`, loaded outside Dagster: "
                "its freshness check measures the warehouse.",
            )
            for uid, key in sources.items()
            if key not in specified
        ]
        specified |= set(sources.values())
        freshness_checks = build_freshness_checks(project, scope, part.dbt_key)
        sensors.append(build_rescue_sensor(project, step_job, part.dbt_models, schedules, scope))
        if freshness_checks is not None:  # sources with a freshness rule: incidents to show
            judged.update(dict.fromkeys(sources.values()))
            freshness_job = build_freshness_job(freshness_checks, scope)
            checks.append(freshness_checks)
            jobs.append(freshness_job)
            loaded = any(key in loaded_by_dagster for key in sources.values())
            sensors.append(
                build_source_outage_sensor(
                    project, freshness_job, schedules, loaded_by_dagster=loaded, scope=scope
                )
            )
        sensors.append(build_merge_sensor(project, schedules, scope))
        jobs.append(build_rescue_job(project, schedules, scope))
    if judged:
        assets.append(incident_spec(judged))
        checks.append(incident_is_resolved)
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs,
        sensors=sensors,
        resources={
            RESCUE_RUN: RescueRun(),
            "validation": ValidationResource(
                business_timezone=settings.get("RESCUE_BUSINESS_TIMEZONE"),
                warehouse_timezone=settings.get("RESCUE_WAREHOUSE_TIMEZONE"),
                today=settings.raw("RESCUE_TODAY"),
            ),
        },
    )


def rescue_only_checks(defs: dg.Definitions) -> list[dg.AssetChecksDefinition]:
    """The checks rescue adds that a pipeline run must not run (source freshness): a team's
    own job subtracts them like the bundled shop's daily job does. (The proof's checks are
    the dbt assets' own: a run that does not prove leaves them out, with no step of theirs.)"""
    return [
        c
        for c in (defs.asset_checks or ())
        if isinstance(c, dg.AssetChecksDefinition)
        and any(k.name == FRESHNESS_CHECK for k in c.check_keys)
    ]
