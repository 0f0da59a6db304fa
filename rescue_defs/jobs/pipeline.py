"""The scheduled production pipeline: the run a rescue must not collide with."""

import dagster as dg

daily_pipeline_job = dg.define_asset_job(
    "daily_pipeline_job",
    selection=dg.AssetSelection.all(),
    description="Loads the raw sources and builds every dbt model, as production does nightly.",
    tags={"pipeline": "daily"},
)

daily_pipeline_schedule = dg.ScheduleDefinition(
    name="daily_pipeline_schedule",
    job=daily_pipeline_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    description="Nightly at 02:00 UTC.",
)
