"""rescue_sensor: launches each rescue's runs in order, never over a run writing its models."""

from collections.abc import Sequence

import dagster as dg
from dagster_dbt import DbtProject

from rescue_defs import rescues
from rescue_defs.assets import keys as asset_keys
from rescue_defs.assets.dbt import load_manifest, model_asset_keys
from rescue_defs.checks.proof import PROOF_CHECK
from rescue_defs.published import publish_schedules
from rescue_defs.rescues.kickoff import BY_SENSOR, remember_ui_url
from rescue_defs.rescues.requests import in_check_order
from rescue_defs.scope import ONE_PROJECT, Scope


def build_rescue_sensor(
    project: DbtProject,
    step_job,
    dbt_models: Sequence[dg.AssetsDefinition] | None = None,
    schedules=(),
    scope: Scope = ONE_PROJECT,
) -> dg.SensorDefinition:
    """`schedules`: the scheduled pipeline, published for the CLI to plan around. `scope`: the
    project's, where the location holds several (it advances only that project's rescues)."""
    manifest_path, project_dir = str(project.manifest_path), str(project.project_dir)

    def checks_of(asset_keys) -> list[dg.AssetCheckKey]:
        # read from the definitions when a run is requested (a few ms at thousands of
        # checks), not kept beside them in every process that loads the location
        wanted = set(asset_keys)
        return in_check_order(
            c
            for d in dbt_models or ()
            for c in d.check_keys
            # the proof's run selects those, not a step's
            if c.asset_key in wanted and c.name != PROOF_CHECK
        )

    @dg.sensor(
        name=scope.named("rescue_sensor"),
        jobs=[step_job],
        # the sensor daemon loops every 5 s; an interval of 5 s skipped every other loop (the
        # elapsed time since the last tick measured 4.99 s about half the time: ticks 10 s
        # apart, seen in B1), 1 s lets every loop evaluate it (a tick costs ~0.2 s)
        minimum_interval_seconds=1,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Advances active rescues: launches a stage when the stages before it "
        "succeeded with passing blocking checks and no other run writes its models; stops a "
        "rescue whose run failed.",
    )
    def rescue_sensor(context: dg.SensorEvaluationContext):
        manifest = load_manifest(manifest_path, project_dir)
        keys = model_asset_keys(manifest)
        instance = context.instance
        # what the CLI, wherever it runs, needs of this code location: the UI's address,
        # the asset keys it gives the project's models, the scheduled pipeline
        remember_ui_url(instance)
        asset_keys.publish(instance, manifest)
        publish_schedules(instance, manifest.project_name, schedules)
        requests, messages = [], []
        claimed: set[str] = set()  # models requested earlier in this tick, by any rescue
        active = rescues.active_ids(instance)
        heavy_busy = _heavy_started(instance, active)
        for rescue_id in active:
            try:
                record = rescues.load(instance, rescue_id)
                if record["status"] != rescues.ACTIVE:
                    rescues.store.forget_inactive(instance, rescue_id)
                    continue
                if not scope.owns(record):
                    continue  # another dbt project's: its own sensor advances it
                tick = rescues.advance(
                    instance,
                    record,
                    keys,
                    manifest,
                    checks_of if dbt_models is not None else None,
                    claimed,
                    heavy_busy,
                    launcher=BY_SENSOR,
                )
            except rescues.ConcurrentUpdate as e:
                messages.append(f"rescue {rescue_id}: {e}; next tick")
                continue
            except Exception as e:  # one broken rescue must never stop the others
                messages.append(_fail(instance, rescue_id, keys, e))
                continue
            requests += tick.requests
            messages += tick.messages
        for message in messages:
            context.log.info(message)
        if requests:
            return dg.SensorResult(run_requests=requests)
        return dg.SkipReason("; ".join(messages) or "no active rescue has a run ready")

    return rescue_sensor


def _heavy_started(instance: dg.DagsterInstance, active: list[str]) -> set[str]:
    """Active heavy rescues that have launched a run: another heavy one waits for them."""
    started = set()
    for record in rescues.store.records(instance, active):
        if record.get("heavy") and record["status"] == rescues.ACTIVE:
            if any(rescues.TAG_STEP in r.tags for r in rescues.step_runs(instance, record["id"])):
                started.add(record["id"])
    return started


def _fail(instance: dg.DagsterInstance, rescue_id: str, keys, error: Exception) -> str:
    """Mark a rescue that cannot advance as failed, with the reason, and report it."""
    reason = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}"
    message = f"failed: rescue_sensor cannot advance this rescue ({reason})"
    try:
        record = rescues.load(instance, rescue_id)
        if record["status"] in rescues.ENDED:
            # it ended (this tick, or another process) before the error: how it ended stands
            rescues.store.forget_inactive(instance, rescue_id)
            return f"rescue {rescue_id}: already {record['status']}; after that: {reason}"
        rescues.stop(instance, record, keys, rescues.FAILED, message)
    except Exception as e:  # a record that cannot even be read: take it out of the active set
        rescues.store.forget_inactive(instance, rescue_id)
        return f"rescue {rescue_id}: unreadable ({e}); removed from the active rescues"
    return f"rescue {rescue_id}: {message}"
