"""Rescue's own definitions around a rescuable dbt assets definition: its jobs, sensors,
checks, report and incident assets, and the resources they need (api.py merges them into the
team's Definitions)."""

from collections.abc import Sequence, Set

import dagster as dg
from dagster_dbt import DbtProject

from rescue_defs import settings
from rescue_defs.assets.dbt import RESCUE_RUN, RescueRun
from rescue_defs.assets.incidents import incident_is_resolved, incident_spec
from rescue_defs.assets.report import REPORT_SPEC, rescue_status_job, rescue_succeeded
from rescue_defs.checks.validation import ValidationResource
from rescue_defs.jobs.freshness import build_freshness_checks, build_freshness_job, source_keys
from rescue_defs.jobs.proof import build_proof_job, proof_check_keys
from rescue_defs.jobs.rescue import (
    build_cancel_rescue_job,
    build_rescue_job,
    build_rescue_step_job,
)
from rescue_defs.sensors.merge import build_merge_sensor
from rescue_defs.sensors.outage import build_source_outage_sensor
from rescue_defs.sensors.report import build_rescue_report_sensor
from rescue_defs.sensors.rescue import build_rescue_sensor


def rescue_definitions(
    project: DbtProject,
    dbt_models: Sequence[dg.AssetsDefinition],
    *,
    defined: Set[dg.AssetKey] = frozenset(),
    loaded_by_dagster: Set[dg.AssetKey] = frozenset(),
    schedules: list[dg.ScheduleDefinition] | None = None,
) -> dg.Definitions:
    """`defined`: asset keys the team's Definitions already has (its source loaders);
    `loaded_by_dagster`: those Dagster materializes (an outage then waits for their loads)."""
    schedules = list(schedules or ())
    sources = source_keys(project)
    assets: list = [
        REPORT_SPEC,
        # sources loaded outside Dagster (Fivetran, a COPY job): assets of their own, so their
        # freshness shows in the UI
        *(
            dg.AssetSpec(
                key,
                group_name="sources",
                description=f"dbt source `{uid.split('.', 2)[-1]}`, loaded outside Dagster: "
                "its freshness check measures the warehouse.",
            )
            for uid, key in sources.items()
            if key not in defined
        ),
    ]
    proof_keys = proof_check_keys(dbt_models)
    step_job = build_rescue_step_job(dbt_models, proof_keys)
    proof_jobs = [build_proof_job(proof_keys)] if proof_keys else []
    freshness_checks = build_freshness_checks(project)
    freshness_jobs = [build_freshness_job(freshness_checks)] if freshness_checks is not None else []
    record_checks = [rescue_succeeded]
    if freshness_checks is not None:  # sources with a freshness rule: incidents to show
        assets.append(incident_spec(sources.values()))
        record_checks.append(incident_is_resolved)
    sensors = [
        build_rescue_sensor(project, step_job, dbt_models, proof_jobs, schedules),
        build_merge_sensor(project, schedules),
        build_rescue_report_sensor(rescue_status_job, project),
    ]
    if freshness_jobs:
        loaded = any(key in loaded_by_dagster for key in sources.values())
        sensors.insert(
            1,
            build_source_outage_sensor(
                project, freshness_jobs[0], schedules, loaded_by_dagster=loaded
            ),
        )
    return dg.Definitions(
        assets=assets,
        asset_checks=[c for c in (freshness_checks,) if c is not None] + record_checks,
        jobs=[
            rescue_status_job,
            *freshness_jobs,
            step_job,
            *proof_jobs,
            build_rescue_job(project, schedules),
            build_cancel_rescue_job(project),
        ],
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
        if isinstance(c, dg.AssetChecksDefinition) and c.node_def.name == "source_freshness"
    ]
