"""The one Definitions of the code location."""

import os

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject
from dagster_duckdb import DuckDBResource

from rescue_defs import rescues
from rescue_defs.assets.dbt import build_dbt_models
from rescue_defs.assets.raw import raw_sources
from rescue_defs.checks.validation import ValidationResource
from rescue_defs.jobs.pipeline import build_daily_pipeline_job, daily_pipeline_schedule
from rescue_defs.jobs.proof import build_proof_checks, build_proof_job
from rescue_defs.jobs.rescue import (
    build_cancel_rescue_job,
    build_rescue_job,
    build_rescue_step_job,
)
from rescue_defs.project import configure_warehouse_env, dbt_project, is_bundled
from rescue_defs.sensors.rescue import build_rescue_sensor


def build_definitions(project: DbtProject) -> dg.Definitions:
    warehouse = configure_warehouse_env()
    dbt_models = build_dbt_models(project)
    report = dg.AssetSpec(
        rescues.REPORT_ASSET,
        group_name="rescue",
        partitions_def=rescues.REPORT_PARTITIONS,
        description="One partition per rescue (its id), materialized when the rescue is "
        "registered (the plan) and again when it ends: the report (plan, runs, per-model "
        "rebuilt / validated / failed, failed checks with their numbers, what is left). "
        "`rescue status <id>` prints the same.",
    )
    assets: list = [dbt_models, report]
    if is_bundled(project):
        # the simulated shop systems only feed the bundled warehouse
        assets.insert(0, raw_sources)
    step_job = build_rescue_step_job(dbt_models)
    proof_checks = build_proof_checks(project)
    proof_jobs = [build_proof_job(proof_checks)] if proof_checks is not None else []
    return dg.Definitions(
        assets=assets,
        asset_checks=[proof_checks] if proof_checks is not None else [],
        jobs=[
            build_daily_pipeline_job(proof_checks),
            step_job,
            *proof_jobs,
            build_rescue_job(project, [daily_pipeline_schedule]),
            build_cancel_rescue_job(project),
        ],
        schedules=[daily_pipeline_schedule],
        sensors=[build_rescue_sensor(project, step_job, dbt_models, proof_jobs)],
        resources={
            "dbt": DbtCliResource(project_dir=project),
            "warehouse": DuckDBResource(database=str(warehouse)),
            "validation": ValidationResource(
                business_timezone=os.environ.get("RESCUE_BUSINESS_TIMEZONE", "UTC"),
                warehouse_timezone=os.environ.get("RESCUE_WAREHOUSE_TIMEZONE", "UTC"),
                today=os.environ.get("RESCUE_TODAY", ""),
            ),
        },
        # One dbt step does the work of a run; separate processes per step only add start-up
        # time (4-7 s each here), so runs execute in one process.
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(dbt_project())
