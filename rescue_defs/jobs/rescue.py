"""Rescue jobs: the form that starts a rescue, and the job its stage runs are runs of."""

from collections.abc import Sequence

import dagster as dg
from dagster_dbt import DbtProject

from rescue_defs import rescues
from rescue_defs.assets.dbt import load_manifest, model_asset_keys, selector_for
from rescue_defs.assets.projects import LocationProjects
from rescue_defs.checks.proof import proof_settings
from rescue_defs.planning.plan import Planner, PlanRequest
from rescue_defs.planning.selection import SelectionError
from rescue_defs.rescues import kickoff
from rescue_defs.scope import ONE_PROJECT, Scope
from rescue_defs.settings import SettingError, reason_problem
from rescue_defs.warehouse_reader import WarehouseTarget


def build_rescue_step_job(dbt_assets: Sequence[dg.AssetsDefinition]):
    # the models and their checks, the proof's too: the run of a rescue's last steps proves
    # right after them (a step run selects the proof's checks only then), and a proof that
    # runs again is a run of the proof's checks alone
    return dg.define_asset_job(
        rescues.STEP_JOB,
        selection=dg.AssetSelection.assets(*dbt_assets),
        description="One stage (or lineage group) of a rescue, or its proof run again (the "
        "proof's checks alone, tagged rescue/kind=proof); launched by rescue_sensor with the "
        "stage's models as the run's asset selection. Select dbt assets and materialize to use "
        "it by hand.",
        executor_def=dg.in_process_executor,
    )


class StartRescueConfig(dg.Config):
    select: str
    """dbt selection, e.g. `int_orders_enriched+ +mart_marketing_attribution+`."""
    exclude: str = ""
    full_refresh: bool | None = None
    """Empty: as advised per model; true: every incremental model in scope; false: none."""
    full_refresh_models: list[str] = []
    """Exactly these models with --full-refresh (overrides full_refresh)."""
    layered: bool | None = None
    """Empty: by the stage rule; true/false forces upstream -> target -> downstream or one
    stage."""
    separate_runs: bool = False
    """One run per stage or group; by default the stages run one after the other in one run
    (each validated before the next) when no other run writes the rescue's models."""
    dry_run: bool = False
    """Plan and record only; nothing is launched."""
    reason: str = "manual"
    force: bool = False
    """Launch even when the pre-run checklist blocks (recorded in the rescue)."""
    sandbox: bool = False
    """Run the plan against the dbt target `sandbox` (a fresh copy of prod) instead of prod."""
    now: bool = False
    """Start at once even when the plan is heavy and it is peak hours (recorded)."""
    max_runtime: int | None = None
    """Seconds a stage run may take before run monitoring fails it (tag dagster/max_runtime);
    `rescue resume` then rebuilds what is missing."""


def build_rescue_job(
    project: DbtProject, schedules, scope: Scope = ONE_PROJECT
) -> dg.JobDefinition:
    manifest_path, project_dir = str(project.manifest_path), str(project.project_dir)

    @dg.op(name=scope.named("start_rescue"))
    def start_rescue(context: dg.OpExecutionContext, config: StartRescueConfig) -> dg.Output:
        """Plans the rescue (dbt's selector, stages, groups, advice, checklist) and records it;
        rescue_sensor then launches its runs in order. Bad input fails here, before any dbt."""
        problem = reason_problem(config.reason)
        if problem:
            raise dg.Failure(description=f"reason: {problem}")
        if config.max_runtime is not None and not 0 < config.max_runtime <= 7 * 24 * 3600:
            raise dg.Failure(
                description="max_runtime must be a positive number of seconds, at most a week "
                f"(or empty: no limit), not {config.max_runtime}"
            )
        manifest = load_manifest(manifest_path, project_dir)
        planner = Planner(manifest)
        planner.selector = selector_for(manifest_path, project_dir)
        full_refresh = (
            tuple(config.full_refresh_models) if config.full_refresh_models else config.full_refresh
        )
        request = PlanRequest(
            select=config.select,
            exclude=config.exclude,
            full_refresh=full_refresh,
            layered=config.layered,
            separate_runs=config.separate_runs,
            reason=config.reason.strip(),
        )
        keys = model_asset_keys(manifest)
        rescue_id = rescues.new_rescue_id(request.select)
        try:
            plan = rescues.plan_for(
                planner,
                context.instance,
                request,
                keys,
                schedules=rescues.next_ticks(schedules),
                warehouse=WarehouseTarget.of(project),
            )
            record = rescues.register(
                context.instance,
                plan,
                keys,
                rescue_id=rescue_id,
                force=config.force,
                dry_run=config.dry_run,
                sandbox=config.sandbox,
                max_runtime=config.max_runtime,
                start_now=config.now,
                reserve=kickoff.BY_JOB,
                proof=proof_settings(),
            )
        except (SelectionError, rescues.RescueError, SettingError) as e:
            raise dg.Failure(description=str(e)) from None
        # the starting run carries the rescue's id (once there is one), so the rescue's runs
        # filter shows it too
        context.instance.add_run_tags(
            context.run_id, {rescues.TAG_ID: rescue_id, rescues.TAG_REASON: request.reason}
        )
        context.log.info(
            f"rescue {record['id']}: {len(plan.models)} models in "
            f"{len(plan.steps)} step(s); {record['status']}"
        )
        if not config.dry_run:
            context.log.info(_start_first_runs(context.instance, record["id"], keys, manifest))
        return dg.Output(
            record["id"],
            metadata={
                "rescue_id": record["id"],
                "plan": dg.MetadataValue.md(record["plan_markdown"]),
                "runs": len(plan.steps),
                "models": len(plan.models),
            },
        )

    @dg.job(
        name=scope.named("rescue_job"),
        description=(f"dbt project {scope.project}. " if scope.project else "")
        + "Start a rescue: fill `select` (and optionally exclude, full_refresh, "
        "layered, dry_run, reason) in the launchpad. The plan shows in this run's logs; the "
        "stage runs follow, tagged rescue/id.",
        tags={rescues.TAG_KIND: "start"},
        executor_def=dg.in_process_executor,
    )
    def rescue_job():
        start_rescue()

    return rescue_job


def _start_first_runs(instance: dg.DagsterInstance, rescue_id: str, keys, manifest) -> str:
    """Submit the rescue's first run(s) through the UI's webserver now, as `rescue launch`
    does, instead of leaving them to rescue_sensor's next tick (up to 5 s, and the tick's own
    evaluation). Anything in the way leaves them to the sensor, as before."""
    said = kickoff.launch_next_runs(
        instance, rescue_id, keys, manifest, kickoff.ui_url(instance), by=kickoff.BY_JOB
    )
    return said or "rescue_sensor launches the runs."


class CancelRescueConfig(dg.Config):
    rescue_id: str
    """The rescue to cancel (the `rescue/id` tag of its runs)."""


def build_cancel_rescue_job(projects: LocationProjects) -> dg.JobDefinition:

    @dg.op(name="cancel_rescue")
    def cancel_rescue(context: dg.OpExecutionContext, config: CancelRescueConfig) -> None:
        """Cancels a rescue: no further run starts, its runs in flight are terminated, and
        its report says what is left (`rescue resume` picks it up again)."""
        try:
            rescue_id = config.rescue_id.strip()
            keys = projects.keys_of(rescues.load(context.instance, rescue_id))
            record = rescues.cancel(context.instance, rescue_id, keys, who="UI")
        except rescues.RescueError as e:
            raise dg.Failure(description=str(e)) from None
        context.log.info(f"rescue {record['id']}: {record['message']}")

    @dg.job(
        name="cancel_rescue_job",
        description="Cancel a rescue: fill `rescue_id`. Its runs in flight are terminated; the "
        "rescue_report partition says what is left. Terminating a rescue's run in the UI "
        "cancels the rescue too.",
        tags={rescues.TAG_KIND: "cancel"},
        executor_def=dg.in_process_executor,
    )
    def cancel_rescue_job():
        cancel_rescue()

    return cancel_rescue_job
