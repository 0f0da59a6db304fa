"""dbt models, seeds and snapshots as Dagster assets; dbt tests as asset checks."""

import functools
from collections.abc import Iterator, Sequence
from pathlib import Path

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets
from dagster_dbt.asset_utils import get_manifest_and_translator_from_dbt_assets
from dagster_dbt.dbt_manifest import validate_manifest
from dagster_dbt.errors import DagsterDbtManifestNotFoundError

from rescue_defs.assets import keys as asset_keys
from rescue_defs.assets import twin
from rescue_defs.assets.dbt_build import Build
from rescue_defs.assets.dbt_stages import build_in_stages
from rescue_defs.assets.keys import model_asset_keys
from rescue_defs.assets.rescue_step import (
    RescueRun,
    models_of_run,
    rescue_run,
    stages_of,
    wait_for_warehouse,
)
from rescue_defs.assets.translators import DEFAULT_TRANSLATOR
from rescue_defs.checks.coverage import WindowRule, window_rules
from rescue_defs.checks.proof import PROOF_CHECK, rebuilt_from_scratch
from rescue_defs.checks.rules import ModelRule, Settings, model_rules
from rescue_defs.checks.validation import (
    ValidationResource,
    check_specs,
)
from rescue_defs.jobs import proof
from rescue_defs.jobs.scratch_build import ProofAhead
from rescue_defs.planning.manifest import DbtManifest, ManifestError
from rescue_defs.planning.selection import SelectionError, Selector
from rescue_defs.project import WAREHOUSE_POOL
from rescue_defs.rescues.liveness import while_running
from rescue_defs.rescues.store import RESCUE_RUN
from rescue_defs.sandbox import TARGET as SANDBOX_TARGET
from rescue_defs.warehouse_reader import WarehouseTarget

DBT_ASSETS_NAME = "dbt_models"


@functools.cache
def load_manifest(manifest_path: str, project_dir: str) -> DbtManifest:
    """The project's manifest over the very dict dagster-dbt read for `@dbt_assets` (its own
    cache, by resolved path): a process holds one copy of a large manifest, not two (~40 MB at
    3,000 models), and parses it once."""
    path = Path(manifest_path)
    if path.suffix != ".json" or path.is_dir():  # what only our reader reads, or refuses
        return DbtManifest.load(path, project_dir)
    try:
        data = validate_manifest(path)
    except DagsterDbtManifestNotFoundError:
        raise FileNotFoundError(f"no dbt manifest at {path}") from None
    except (OSError, ValueError) as e:  # orjson's JSONDecodeError is a ValueError
        raise ManifestError(f"{path} is not a readable dbt manifest ({e})") from None
    return DbtManifest.read_from(data, path, project_dir)


@functools.cache
def selector_for(manifest_path: str, project_dir: str) -> Selector:
    return Selector(load_manifest(manifest_path, project_dir))


@functools.cache
def rules_for(manifest_path: str, project_dir: str, settings: Settings) -> dict[str, ModelRule]:
    return model_rules(load_manifest(manifest_path, project_dir).raw, settings)


@functools.cache
def windows_for(manifest_path: str, project_dir: str) -> dict[str, WindowRule]:
    return window_rules(load_manifest(manifest_path, project_dir).raw)


def build_dbt_models(
    project: DbtProject, translator: DagsterDbtTranslator | None = None
) -> dg.AssetsDefinition:
    """A plain `@dbt_assets` over the project (what a team has), made rescuable."""
    return rescuable(plain_dbt_assets(project, translator), project)


def plain_dbt_assets(
    project: DbtProject, translator: DagsterDbtTranslator | None = None
) -> dg.AssetsDefinition:
    """`@dbt_assets` as dagster-dbt's docs write it: one `dbt build` of the selection."""

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=translator or DEFAULT_TRANSLATOR,
        name=DBT_ASSETS_NAME,
    )
    def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
        """Builds the selected dbt models and runs their tests."""
        yield from dbt.cli(["build"], context=context).stream()

    return dbt_models


def rescuable(
    team: dg.AssetsDefinition,
    project: DbtProject | None = None,
    keyed_by: Sequence[dg.AssetsDefinition] = (),
) -> dg.AssetsDefinition:
    """The team's dbt assets definition with the same specs (keys, groups, owners, partitions,
    dbt tests as checks) and config, plus row-count and max-date checks: a plain run calls the
    team's own function, then validates what it built; a rescue's step run (RescueRun set)
    builds in stages and refresh layers, validating each stage before the next.

    keyed_by: every dbt assets definition of the project (it may be split over several), whose
    specs say which key each model has; default: this one."""
    translator = get_manifest_and_translator_from_dbt_assets([team])[1]
    project = project or twin.project_of(team)
    manifest_path, project_dir = str(project.manifest_path), str(Path(project.project_dir))
    asset_keys.use_definitions(project_dir, keyed_by or [team], translator)
    dbt_key = twin.dbt_resource_key(team)
    team_compute = twin.compute_of(team)

    manifest = load_manifest(manifest_path, project_dir)
    keys = model_asset_keys(manifest)
    # the keys the team selected (its @dbt_assets select=): checks only for those
    team_keys = set(team.keys)
    validation_specs = [
        spec
        for spec in check_specs(
            # made for the specs and dropped, not cached: a code server never validates, and
            # a run worker makes its own for validation's settings (~60 ms at 3,000 models)
            model_rules(manifest.raw, Settings()),
            keys,
            windows_for(manifest_path, project_dir),
        )
        if spec.asset_key in team_keys
    ]
    validation_specs += proof.proof_specs(manifest, keys, team_keys)

    @dg.multi_asset(
        name=team.op.name,
        specs=list(team.specs),
        check_specs=[*team.check_specs, *validation_specs],
        can_subset=True,
        op_tags=team.op.tags,
        allow_arbitrary_check_specs=True,
        pool=team.op.pool or WAREHOUSE_POOL,
        required_resource_keys={*team.op.required_resource_keys, "validation", RESCUE_RUN},
        config_schema=twin.config_fields(team),
        backfill_policy=team.backfill_policy,
        retry_policy=team.op.retry_policy,
        description=team.op.description,
    )
    def dbt_models(context: dg.AssetExecutionContext):
        manifest = load_manifest(manifest_path, project_dir)
        by_key = {k: uid for uid, k in model_asset_keys(manifest).items()}
        selected = frozenset(by_key[k] for k in context.selected_asset_keys if k in by_key)
        # a project split over several dbt assets definitions: the run's models span their
        # steps, and this step builds its share of the rescue's stages
        run_models = models_of_run(context, by_key, selected)
        config: RescueRun = getattr(context.resources, RESCUE_RUN)
        validation: ValidationResource = context.resources.validation
        dbt = getattr(context.resources, dbt_key) if dbt_key else own_dbt(project)
        if config.reason:
            context.log.info(f"reason: {config.reason}")
        if _proof_only(context) or (config.proof_of and not selected):
            yield from _prove(context, config, dbt, project, manifest)
            return
        if config.select:
            try:
                wanted = selector_for(manifest_path, project_dir).resolve(config.select).models
            except SelectionError as e:
                raise dg.Failure(f"config select: {e}") from None
            if wanted != run_models:
                raise dg.Failure(
                    f"config select {config.select!r} resolves to {len(wanted)} models but the "
                    f"run selects {len(run_models)}: launch with a matching asset selection "
                    "(or leave select empty)"
                )
        full_refresh = set()
        for name in config.full_refresh:
            ids = [name] if name in manifest.models else manifest.by_name.get(name, [])
            if not ids:
                raise dg.Failure(f"full_refresh names unknown model {name!r}")
            full_refresh.update(ids)
        stray = full_refresh - run_models
        if stray:
            raise dg.Failure(
                "full_refresh names models this run does not build: "
                + ", ".join(sorted(manifest.name(m) for m in stray))
            )
        full_refresh &= selected
        stages = stages_of(manifest, config, run_models, selected)
        keys = {uid: key for key, uid in by_key.items()}
        proven = (
            manifest.topological(proof.proven_models(context, keys, config.proof_models))
            if config.proof_of
            else []
        )
        # a model this run rebuilds with --full-refresh is its own from-scratch build
        # (checks/proof.py): only the others are built again in the scratch schema
        own = rebuilt_from_scratch(manifest.models, full_refresh)
        # ordered as the proof orders what it compares (jobs/proof.py): the same selection
        compared = manifest.topological(frozenset(proven) - own)
        # the proof's scratch parse reads no table: it runs while the stages build; its
        # scratch build starts once they are built and validated (jobs/scratch_build.py)
        ahead = ProofAhead(dbt, project, context.log) if compared else None
        try:
            # a rescue's run stamps signs of life: a worker killed with everything around it is
            # then failed, not left STARTED for ever (rescues/liveness.py)
            with while_running(context):
                where = WarehouseTarget.of_resource(dbt, SANDBOX_TARGET if config.sandbox else None)
                wait_for_warehouse(context, manifest, where)
                build = Build(
                    context,
                    dbt,
                    project,
                    manifest,
                    keys,
                    translator,
                    config.sandbox,
                    config.reason,
                    # a rescue builds with its own invocations (stages, refresh layers, dbt that
                    # dies with its worker); every other run is the team's own function
                    team_compute=None if rescue_run(context, config) else team_compute,
                )
                yield from build_in_stages(
                    build,
                    stages,
                    frozenset(full_refresh),
                    {
                        "rules": rules_for(manifest_path, project_dir, validation.settings()),
                        "resource": validation,
                        "windows": windows_for(manifest_path, project_dir),
                    },
                    built_cleanly=(lambda: ahead.start_build(manifest, compared))
                    if ahead
                    else None,
                    last_stage_starts=(lambda: ahead.start_ahead(manifest, compared))
                    if ahead
                    else None,
                )
            if config.proof_of:  # the rescue's last steps, built and validated: now the proof
                scratch = proof.FromScratch(planned=own & set(proven), built=build.refreshed)
                yield from _prove(context, config, dbt, project, manifest, ahead, scratch)
        finally:
            if ahead is not None:  # closed by the proof, or the run ends without one
                ahead.close(manifest, stop=True)

    return dbt_models


def _proof_only(context: dg.AssetExecutionContext) -> bool:
    checks = context.selected_asset_check_keys
    return (
        not context.selected_asset_keys
        and bool(checks)
        and all(c.name == PROOF_CHECK for c in checks)
    )


def _prove(
    context, config: RescueRun, dbt, project, manifest, ahead=None, scratch=None
) -> Iterator:
    """The proof run's step: the selected proof checks, nothing built in prod."""
    if not config.proof_of:
        # the proof alone, by hand ("Execute checks"): it only means something after a
        # rescue (whose proof run names it), and costs a full rebuild
        context.log.info("not a rescue's proof run (no proof_of): nothing compared")
        return
    rules = rules_for(str(project.manifest_path), str(project.project_dir), Settings())
    keys = model_asset_keys(manifest)
    with while_running(context):  # signs of life (rescues/liveness.py)
        yield from proof.prove(
            context,
            dbt,
            project,
            manifest,
            rules,
            keys,
            config.proof_of,
            ahead,
            config.proof_models,
            scratch,
        )


def own_dbt(project: DbtProject) -> DbtCliResource:
    """For dbt assets whose function makes its own resource (dagster-dbt's component)."""
    from rescue_defs import dbt_child
    from rescue_defs.assets.dbt_cli import RescueDbtCliResource

    return RescueDbtCliResource(project_dir=project, dbt_executable=dbt_child.executable())
