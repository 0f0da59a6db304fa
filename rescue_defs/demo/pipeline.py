"""The scheduled production pipeline: the run a rescue must not collide with."""

import dagster as dg

from rescue_defs.assets.incidents import INCIDENT_ASSET
from rescue_defs.rescues.report import REPORT_ASSET

DAILY_PIPELINE_JOB = "daily_pipeline_job"


RECORD_ASSETS = (REPORT_ASSET, INCIDENT_ASSET)


def build_daily_pipeline_job(excluded_checks=(), records=RECORD_ASSETS):
    # every asset and its checks, except the rescue proof (a from-scratch rebuild in a scratch
    # schema, run by a rescue's own runs, never nightly), source freshness
    # (measured by its own queued runs, which source_outage_sensor requests); the rescues' own
    # records (`records`: those the location has; no incidents without freshness rules) are
    # external assets, in no run of the pipeline
    selection = dg.AssetSelection.all()
    if records:
        selection = selection - dg.AssetSelection.assets(*records)
    for checks in excluded_checks:
        selection = selection - dg.AssetSelection.checks(checks)
    return dg.define_asset_job(
        DAILY_PIPELINE_JOB,
        selection=selection,
        description="Loads the raw sources and builds every dbt model, as production does nightly.",
        tags={"pipeline": "daily"},
    )


daily_pipeline_schedule = dg.ScheduleDefinition(
    name="daily_pipeline_schedule",
    job_name=DAILY_PIPELINE_JOB,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    description="Nightly at 02:00 UTC.",
)
