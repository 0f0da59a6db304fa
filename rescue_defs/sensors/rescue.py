"""rescue_sensor: launches each rescue's runs in order, never over a run writing its models."""

import dagster as dg
from dagster_dbt import DbtProject

from rescue_defs import rescues
from rescue_defs.assets.dbt import load_manifest, model_asset_keys


def build_rescue_sensor(
    project: DbtProject, step_job, dbt_models: dg.AssetsDefinition | None = None
) -> dg.SensorDefinition:
    manifest_path, project_dir = str(project.manifest_path), str(project.project_dir)
    by_asset: dict[dg.AssetKey, list[dg.AssetCheckKey]] = {}
    for check_key in dbt_models.check_keys if dbt_models is not None else ():
        by_asset.setdefault(check_key.asset_key, []).append(check_key)

    def checks_of(asset_keys) -> list[dg.AssetCheckKey]:
        return [c for key in asset_keys for c in by_asset.get(key, [])]

    @dg.sensor(
        name="rescue_sensor",
        job=step_job,
        minimum_interval_seconds=10,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Advances active rescues: launches a stage when the stages before it "
        "succeeded with passing blocking checks and no other run writes its models; stops a "
        "rescue whose run failed.",
    )
    def rescue_sensor(context: dg.SensorEvaluationContext):
        manifest = load_manifest(manifest_path, project_dir)
        keys = model_asset_keys(manifest)
        requests, messages = [], []
        for rescue_id in rescues.rescue_ids(context.instance):
            record = rescues.load(context.instance, rescue_id)
            if record["status"] != rescues.ACTIVE:
                continue
            tick = rescues.advance(
                context.instance,
                record,
                keys,
                manifest,
                checks_of if dbt_models is not None else None,
            )
            requests += tick.requests
            messages += tick.messages
        for message in messages:
            context.log.info(message)
        if requests:
            return dg.SensorResult(run_requests=requests)
        return dg.SkipReason("; ".join(messages) or "no active rescue has a run ready")

    return rescue_sensor
