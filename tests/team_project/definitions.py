"""A team's own Dagster project, written as dagster-dbt's docs write one: its `@dbt_assets` with
its translator (keys under `analytics/`, its own group) and config, its nightly job and
schedule, its dbt resource. Rescue is added by the last statement and nothing else changes.

The dbt project comes from TEAM_DBT_PROJECT_DIR (profiles: TEAM_DBT_PROFILES_DIR), parsed
before the code loads, as a deploy does (`dbt deps && dbt parse`)."""

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from rescue_defs.api import with_rescue

analytics_project = DbtProject(
    project_dir=os.environ["TEAM_DBT_PROJECT_DIR"],
    profiles_dir=os.environ.get("TEAM_DBT_PROFILES_DIR"),
)


class AnalyticsTranslator(DagsterDbtTranslator):
    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        return super().get_asset_key(dbt_resource_props).with_prefix("analytics")

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "analytics"


class NightlyConfig(dg.Config):
    full_refresh: bool = False


@dbt_assets(
    manifest=analytics_project.manifest_path,
    project=analytics_project,
    dagster_dbt_translator=AnalyticsTranslator(),
)
def analytics_dbt_assets(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, config: NightlyConfig
):
    """The analytics models, built nightly."""
    context.log.info(f"analytics build (full_refresh={config.full_refresh})")
    args = ["build", "--full-refresh"] if config.full_refresh else ["build"]
    yield from dbt.cli(args, context=context).stream()


nightly_analytics_job = dg.define_asset_job(
    "nightly_analytics_job", selection=dg.AssetSelection.assets(analytics_dbt_assets)
)
nightly_analytics_schedule = dg.ScheduleDefinition(
    name="nightly_analytics_schedule", job=nightly_analytics_job, cron_schedule="0 5 * * *"
)

defs = with_rescue(
    dg.Definitions(
        assets=[analytics_dbt_assets],
        jobs=[nightly_analytics_job],
        schedules=[nightly_analytics_schedule],
        resources={"dbt": DbtCliResource(project_dir=analytics_project)},
    )
)
