"""What a dbt_models step knows of the rescue run it is in: the run's config (set by
rescue_sensor), the stages it goes through, and the warehouse it waits for before any dbt."""

import dagster as dg

from rescue_defs.checks.validation import RESCUE_TAG
from rescue_defs.planning.manifest import DbtManifest
from rescue_defs.warehouse_lock import WarehouseHeld, require_free
from rescue_defs.warehouse_reader import WarehouseTarget, duckdb_file


class RescueRun(dg.ConfigurableResource):
    """How a rescue's step run builds the selected models (set by rescue_sensor; all empty for
    any other run, which runs the team's own dbt assets function unchanged). A resource, not op
    config, so that the op keeps the team's own config schema."""

    full_refresh: list[str] = []
    """Models (names or unique_ids) to build with --full-refresh; the others build normally.
    dbt applies --full-refresh to a whole invocation, so the run splits into invocations."""
    select: str = ""
    """Optional dbt selection; when set it must resolve to exactly the assets of this run, so a
    config and an asset selection that disagree fail before dbt runs."""
    reason: str = ""
    """Why this run (audit trail; shown in the logs)."""
    stages: list[list[str]] = []
    """Set by rescues: the run's models as consecutive stages (unique ids), each built and
    validated before the next starts; a failed stage ends the run. Empty: one stage."""
    stage_names: list[str] = []
    sandbox: bool = False
    """Build against the dbt target `sandbox` (a copy of prod): models are reported as
    observations with `sandbox: true`, never as prod materializations or check results."""
    proof_of: str = ""
    """Set by rescues on the run that proves: the rescue whose incremental models (proof_models,
    else the selected proof checks) are compared with a from-scratch build (nothing of it is
    built in prod): after the run's stages when it builds the rescue's last steps, alone in a
    proof run."""
    proof_models: list[str] = []
    """Set by rescues with proof_of on the run of their last steps: the models it proves
    (unique ids). Their checks are not planned in the run: each verdict is one stored event
    instead of three (checks/verdicts.py). Empty: the selected proof checks."""

    def is_set(self) -> bool:
        return bool(
            self.full_refresh or self.select or self.stages or self.sandbox or self.proof_of
        )


def rescue_run(context: dg.AssetExecutionContext, config: RescueRun) -> bool:
    return config.is_set() or RESCUE_TAG in context.run.tags


def models_of_run(context, by_key, selected: frozenset[str]) -> frozenset[str]:
    """The models of the whole run (all its dbt assets steps), `selected` this step's."""
    keys = context.run.asset_selection
    if not keys:
        return selected
    return frozenset(by_key[k] for k in keys if k in by_key) | selected


def stages_of(
    manifest: DbtManifest, config: RescueRun, run_models: frozenset[str], selected: frozenset[str]
):
    """(name, models) per stage of this step: the stages must cover exactly the run's models,
    and this step builds the selected ones of each."""
    if not config.stages:
        return [("all", selected)]
    stages = [frozenset(ids) for ids in config.stages]
    names = list(config.stage_names) + [
        f"stage {i + 1}" for i in range(len(config.stage_names), len(stages))
    ]
    covered = frozenset().union(*stages)
    unknown = sorted(covered - frozenset(manifest.models))
    if unknown:
        raise dg.Failure(f"stages name unknown models: {', '.join(unknown[:5])}")
    if covered != run_models or sum(len(s) for s in stages) != len(covered):
        raise dg.Failure(
            f"stages cover {len(covered)} models but the run selects {len(run_models)} (each "
            "selected model in exactly one stage): launch with a matching asset selection"
        )
    return [
        (name, stage & selected)
        for name, stage in zip(names, stages, strict=True)
        if stage & selected
    ]


def wait_for_warehouse(context, manifest: DbtManifest, where: WarehouseTarget) -> None:
    """An open DuckDB connection elsewhere (a notebook) makes dbt fail at its first connection
    with a lock error: wait for it, then fail naming it, before any dbt command. The file is
    the one the profile's target names (`where`), whichever project it is."""
    if manifest.raw.get("metadata", {}).get("adapter_type") != "duckdb":
        return
    path = duckdb_file(where)
    if path is None:
        return
    try:
        require_free(path, "resume; nothing was built", context.log.warning)
    except WarehouseHeld as e:
        raise dg.Failure(str(e)) from None
