"""rescue_proof_job: a rescue's incremental models, rebuilt from scratch in a copy and compared
with the rescued tables (see checks/proof.py). rescue_sensor launches it after the stages."""

from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject

from rescue_defs.assets.dbt import load_manifest, model_asset_keys, rules_for
from rescue_defs.assets.dbt_build import remove_run_folders, with_target
from rescue_defs.checks.proof import (
    PROOF_CHECK,
    PROOF_TARGET,
    _env,
    compare,
    copy_warehouse,
    verdict_text,
)
from rescue_defs.checks.rules import Settings
from rescue_defs.planning.advice import is_incremental
from rescue_defs.planning.stages import group_selection
from rescue_defs.project import warehouse_path
from rescue_defs.warehouse_lock import holder

PROOF_JOB = "rescue_proof_job"


class ProofConfig(dg.Config):
    rescue_id: str = ""
    """The rescue being proven (shown in the logs)."""


def build_proof_checks(project: DbtProject) -> dg.AssetChecksDefinition | None:
    manifest_path, project_dir = str(project.manifest_path), str(project.project_dir)
    manifest = load_manifest(manifest_path, project_dir)
    keys = {
        uid: key
        for uid, key in model_asset_keys(manifest).items()
        if is_incremental(manifest.models[uid])
    }
    if not keys:
        return None

    @dg.multi_asset_check(
        name="rescue_proof",
        specs=[
            dg.AssetCheckSpec(
                PROOF_CHECK,
                asset=key,
                description="Equal, row for row, to a from-scratch (--full-refresh) build over "
                "the same upstream tables; run after each rescue that rebuilt this model.",
            )
            for key in keys.values()
        ],
        can_subset=True,
    )
    def rescue_proof(
        context: dg.AssetCheckExecutionContext, dbt: DbtCliResource, config: ProofConfig
    ):
        """Copies the warehouse, rebuilds the selected incremental models there with
        --full-refresh, and compares each with the rescued table."""
        if not config.rescue_id:
            # selected with its assets (a UI "Materialize", the implicit job): the proof only
            # means something after a rescue, and costs a full rebuild
            context.log.info("not a rescue's proof run (no rescue_id): nothing compared")
            return
        wanted = {
            uid
            for uid, key in keys.items()
            if dg.AssetCheckKey(key, PROOF_CHECK) in context.selected_asset_check_keys
        }
        prod = warehouse_path()
        held = holder(prod)
        if held is not None:
            raise dg.Failure(f"the warehouse {prod} is held by {held.describe()}: no proof copy")
        copy = Path(str(prod) + ".proof")
        copy_warehouse(prod, copy)
        invocations = []
        try:
            with _env("RESCUE_SANDBOX_DUCKDB_PATH", str(copy)):
                runner = with_target(dbt, PROOF_TARGET)
                selection = group_selection(manifest, tuple(manifest.topological(wanted)))
                invocation = runner.cli(
                    ["run", "--full-refresh", "--select", selection],
                    manifest=project.manifest_path,
                )
                invocations.append(invocation)
                invocation.wait()
            rules = rules_for(manifest_path, project_dir, Settings())
            for uid in manifest.topological(wanted):
                node = manifest.models[uid]
                relation = (node["schema"], node.get("alias") or node["name"])
                diff = compare(prod, copy, relation, rules.get(uid))
                passed, text = verdict_text(node["name"], diff)
                context.log.info(f"rescue {config.rescue_id}: {text}")
                yield dg.AssetCheckResult(
                    asset_key=keys[uid],
                    check_name=PROOF_CHECK,
                    passed=passed,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description=text,
                    metadata={
                        "rows": diff["rows"],
                        "only_rescued": diff["only_rescued"],
                        "only_from_scratch": diff["only_from_scratch"],
                        "differing_periods": diff["periods"],
                        "rescue_id": config.rescue_id,
                    },
                )
        finally:
            remove_run_folders(invocations, Path(project_dir))
            for suffix in ("", ".wal"):
                Path(str(copy) + suffix).unlink(missing_ok=True)

    return rescue_proof


def build_proof_job(checks: dg.AssetChecksDefinition):
    return dg.define_asset_job(
        PROOF_JOB,
        selection=dg.AssetSelection.checks(checks),
        description="The proof after a rescue: its incremental models rebuilt from scratch in a "
        "copy of the warehouse and compared row for row (launched by rescue_sensor).",
        executor_def=dg.in_process_executor,
    )
