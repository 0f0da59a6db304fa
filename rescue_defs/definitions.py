"""The one Definitions of the code location."""

from rescue_defs import parsing

# A reload of a project edited since its last parse: dbt parses it on the other core while
# this process spends 2-3 s importing Dagster below (parsing.py; only under `dagster dev`)
parsing.start_for_environment()


import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtProject
from dagster_duckdb import DuckDBResource

from rescue_defs import dbt_child, settings
from rescue_defs.assets.dbt import build_dbt_models
from rescue_defs.assets.dbt_cli import RescueDbtCliResource
from rescue_defs.assets.incidents import incident_is_resolved, incident_spec
from rescue_defs.assets.raw import raw_sources
from rescue_defs.assets.report import REPORT_SPEC, rescue_status_job, rescue_succeeded
from rescue_defs.checks.validation import ValidationResource
from rescue_defs.jobs.freshness import (
    build_freshness_checks,
    build_freshness_job,
    source_keys,
)
from rescue_defs.jobs.pipeline import build_daily_pipeline_job, daily_pipeline_schedule
from rescue_defs.jobs.proof import build_proof_checks, build_proof_job
from rescue_defs.jobs.rescue import (
    build_cancel_rescue_job,
    build_rescue_job,
    build_rescue_step_job,
)
from rescue_defs.project import (
    ProjectNotReady,
    configure_warehouse_env,
    dbt_project,
    is_bundled,
)
from rescue_defs.sensors.merge import build_merge_sensor
from rescue_defs.sensors.outage import build_source_outage_sensor
from rescue_defs.sensors.report import build_rescue_report_sensor
from rescue_defs.sensors.rescue import build_rescue_sensor


def build_definitions(
    project: DbtProject, translator: DagsterDbtTranslator | None = None
) -> dg.Definitions:
    """Rescue for one dbt project: its dbt assets (named by `translator`, the team's own, else
    the default), the rescue jobs, sensors, checks and report."""
    warehouse = configure_warehouse_env()
    dbt_models = build_dbt_models(project, translator)
    report = REPORT_SPEC
    assets: list = [dbt_models, report]
    bundled = is_bundled(project)
    if bundled:
        # the simulated shop systems only feed the bundled warehouse
        assets.insert(0, raw_sources)
    else:
        # sources loaded outside Dagster (Fivetran, a COPY job): assets of their own, so their
        # freshness shows in the UI
        assets += [
            dg.AssetSpec(
                key,
                group_name="sources",
                description=f"dbt source `{uid.split('.', 2)[-1]}`, loaded outside Dagster: "
                "its freshness check measures the warehouse.",
            )
            for uid, key in source_keys(project).items()
        ]
    proof_checks = build_proof_checks(project)
    step_job = build_rescue_step_job(dbt_models, [proof_checks] if proof_checks else [])
    proof_jobs = [build_proof_job(proof_checks)] if proof_checks is not None else []
    freshness_checks = build_freshness_checks(project, bundled)
    freshness_jobs = [build_freshness_job(freshness_checks)] if freshness_checks is not None else []
    extra_checks = [c for c in (proof_checks, freshness_checks) if c is not None]
    record_checks = [rescue_succeeded]
    if freshness_checks is not None:  # sources with a freshness rule: incidents to show
        assets.append(incident_spec(source_keys(project).values()))
        record_checks.append(incident_is_resolved)
    return dg.Definitions(
        assets=assets,
        asset_checks=[*extra_checks, *record_checks],
        jobs=[
            build_daily_pipeline_job(extra_checks),
            rescue_status_job,
            *freshness_jobs,
            step_job,
            *proof_jobs,
            build_rescue_job(project, [daily_pipeline_schedule]),
            build_cancel_rescue_job(project),
        ],
        schedules=[daily_pipeline_schedule],
        sensors=[
            build_rescue_sensor(project, step_job, dbt_models, proof_jobs),
            *(
                [
                    build_source_outage_sensor(
                        project,
                        freshness_jobs[0],
                        [daily_pipeline_schedule],
                        loaded_by_dagster=bundled,
                    )
                ]
                if freshness_jobs
                else []
            ),
            build_merge_sensor(project, [daily_pipeline_schedule]),
            build_rescue_report_sensor(rescue_status_job, project),
        ],
        resources={
            # dbt dies with its run worker (dbt_child.py): no writer outlives a killed run
            "dbt": RescueDbtCliResource(project_dir=project, dbt_executable=dbt_child.executable()),
            "warehouse": DuckDBResource(database=str(warehouse)),
            "validation": ValidationResource(
                business_timezone=settings.get("RESCUE_BUSINESS_TIMEZONE"),
                warehouse_timezone=settings.get("RESCUE_WAREHOUSE_TIMEZONE"),
                today=settings.raw("RESCUE_TODAY"),
            ),
        },
        # One dbt step does the work of a run; separate processes per step only add start-up
        # time (4-7 s each here), so runs execute in one process.
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    # every RESCUE_* value checked before anything is built: one line naming each bad one
    # (`dagster definitions validate` fails on it), never a stack trace from deep inside
    settings.check()
    try:
        project = dbt_project()
    except ProjectNotReady as e:  # one line naming the dbt command that says why
        raise ProjectNotReady(str(e)) from None
    return build_definitions(project)
