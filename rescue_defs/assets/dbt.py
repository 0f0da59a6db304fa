"""dbt models, seeds and snapshots as Dagster assets; dbt tests as asset checks."""

import functools
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)
from dagster_dbt.errors import DagsterDbtCliRuntimeError

from rescue_defs.assets.dbt_cli import RescueDbtCliResource
from rescue_defs.checks.coverage import WindowRule, window_rules
from rescue_defs.checks.rules import ModelRule, Settings, model_rules
from rescue_defs.checks.validation import (
    ValidationResource,
    blocking_failures,
    check_specs,
    validate,
)
from rescue_defs.planning.manifest import DbtManifest
from rescue_defs.planning.selection import SelectionError, Selector
from rescue_defs.planning.stages import group_selection
from rescue_defs.project import sandbox_warehouse_path, warehouse_path
from rescue_defs.sandbox import TARGET as SANDBOX_TARGET
from rescue_defs.warehouse_lock import WarehouseHeld, require_free

# dbt exits 0 on a selection that matches nothing; a rescue must never silently do nothing
WARN_ERROR_ARGS = ["--warn-error-options", '{"error": ["NoNodesForSelectionCriteria"]}']
DBT_ASSETS_NAME = "dbt_models"


class RescueDbtTranslator(DagsterDbtTranslator):
    """Groups models by their top folder (staging / intermediate / marts)."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        if dbt_resource_props["resource_type"] in ("model", "seed", "snapshot") and len(fqn) > 2:
            return re.sub(r"\W", "_", fqn[1])
        return super().get_group_name(dbt_resource_props)


# dbt's source tests become checks of the source assets (raw/*): otherwise every run that
# builds models runs them anyway and dagster-dbt logs a warning for each
TRANSLATOR = RescueDbtTranslator(
    settings=DagsterDbtTranslatorSettings(enable_source_tests_as_checks=True)
)


class DbtRunConfig(dg.Config):
    """How to build the selected models (set by rescues; optional from the launchpad)."""

    full_refresh: list[str] = []
    """Models (names or unique_ids) to build with --full-refresh; the others build normally.
    dbt applies --full-refresh to a whole invocation, so the run splits into invocations."""
    select: str = ""
    """Optional dbt selection; when set it must resolve to exactly the assets of this run, so a
    config and an asset selection that disagree fail before dbt runs."""
    reason: str = ""
    """Why this run (audit trail; shown in the logs)."""
    sandbox: bool = False
    """Build against the dbt target `sandbox` (a copy of prod): models are reported as
    observations with `sandbox: true`, never as prod materializations or check results."""


@functools.cache
def load_manifest(manifest_path: str, project_dir: str) -> DbtManifest:
    return DbtManifest.load(manifest_path, project_dir)


@functools.cache
def selector_for(manifest_path: str, project_dir: str) -> Selector:
    return Selector(load_manifest(manifest_path, project_dir))


def model_asset_keys(manifest: DbtManifest) -> dict[str, dg.AssetKey]:
    """unique_id -> asset key, as dagster-dbt names it (never rebuilt by hand); ephemeral
    models are no assets (dbt compiles them into their consumers)."""
    return {
        uid: TRANSLATOR.get_asset_key(node)
        for uid, node in manifest.models.items()
        if uid not in manifest.ephemeral
    }


def refresh_layers(
    manifest: DbtManifest, models: frozenset[str], full_refresh: frozenset[str]
) -> list[tuple[bool, list[str]]]:
    """Consecutive dbt invocations, each all-full-refresh or all-normal, in dependency order:
    a model goes in the first layer after every parent of another refresh kind."""
    layer: dict[str, int] = {}
    graph = manifest.model_graph
    for m in manifest.topological(models):
        kind = m in full_refresh
        at = 0 if kind else 1  # full refreshes first where nothing forces otherwise
        for p in graph.predecessors(m):
            if p in layer:
                same = (p in full_refresh) == kind
                at = max(at, layer[p] if same else layer[p] + 1)
        if (at % 2 == 0) != kind:
            at += 1
        layer[m] = at
    out: list[tuple[bool, list[str]]] = []
    for index in sorted(set(layer.values())):
        members = [m for m in manifest.topological(models) if layer[m] == index]
        out.append((index % 2 == 0, members))
    return out


def _split_events(events, checks: dict) -> Iterator:
    """Model events pass through; test results are kept in `checks`, the last one per check.

    Without `context`, dagster-dbt reports tests as evaluations where the step expects results;
    and a test whose parents sit in two invocations runs in both, where only the later run (both
    parents rebuilt) counts."""
    for event in events:
        if isinstance(event, dg.AssetCheckEvaluation):
            checks[(event.asset_key, event.check_name)] = dg.AssetCheckResult(
                asset_key=event.asset_key,
                check_name=event.check_name,
                passed=event.passed,
                severity=event.severity,
                metadata=event.metadata,
            )
        else:
            yield event


@functools.cache
def rules_for(manifest_path: str, project_dir: str, settings: Settings) -> dict[str, ModelRule]:
    return model_rules(load_manifest(manifest_path, project_dir).raw, settings)


@functools.cache
def windows_for(manifest_path: str, project_dir: str) -> dict[str, WindowRule]:
    return window_rules(load_manifest(manifest_path, project_dir).raw)


def _built_keys(context: dg.AssetExecutionContext, event) -> dg.AssetKey | None:
    if isinstance(event, dg.Output):
        return context.assets_def.keys_by_output_name.get(event.output_name)
    if isinstance(event, (dg.AssetMaterialization, dg.MaterializeResult)):
        return event.asset_key
    return None


def build_dbt_models(project: DbtProject) -> dg.AssetsDefinition:
    manifest_path, project_dir = str(project.manifest_path), str(Path(project.project_dir))

    # dagster-dbt makes the specs (asset keys, lineage, dbt tests as checks, the metadata that
    # lets dbt.cli(context=...) find the manifest); the op adds row-count and max-date checks
    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=TRANSLATOR,
        name=DBT_ASSETS_NAME,
    )
    def _specs_only(): ...

    manifest = load_manifest(manifest_path, project_dir)
    keys = model_asset_keys(manifest)
    validation_specs = check_specs(
        rules_for(manifest_path, project_dir, Settings()),
        keys,
        windows_for(manifest_path, project_dir),
    )

    @dg.multi_asset(
        name=DBT_ASSETS_NAME,
        specs=list(_specs_only.specs),
        check_specs=[*_specs_only.check_specs, *validation_specs],
        can_subset=True,
        op_tags=_specs_only.op.tags,
        allow_arbitrary_check_specs=True,
    )
    def dbt_models(
        context: dg.AssetExecutionContext,
        dbt: DbtCliResource,
        validation: ValidationResource,
        config: DbtRunConfig,
    ):
        """Builds the selected dbt models, runs their tests, then checks each rebuilt model's
        row count and max date."""
        manifest = load_manifest(manifest_path, project_dir)
        by_key = {k: uid for uid, k in model_asset_keys(manifest).items()}
        selected = frozenset(by_key[k] for k in context.selected_asset_keys if k in by_key)
        if config.reason:
            context.log.info(f"reason: {config.reason}")
        if config.select:
            try:
                wanted = selector_for(manifest_path, project_dir).resolve(config.select).models
            except SelectionError as e:
                raise dg.Failure(f"config select: {e}") from None
            if wanted != selected:
                raise dg.Failure(
                    f"config select {config.select!r} resolves to {len(wanted)} models but the "
                    f"run selects {len(selected)}: launch with a matching asset selection "
                    "(or leave select empty)"
                )
        full_refresh = set()
        for name in config.full_refresh:
            ids = [name] if name in manifest.models else manifest.by_name.get(name, [])
            if not ids:
                raise dg.Failure(f"full_refresh names unknown model {name!r}")
            full_refresh.update(ids)
        stray = full_refresh - selected
        if stray:
            raise dg.Failure(
                "full_refresh names models this run does not build: "
                + ", ".join(sorted(manifest.name(m) for m in stray))
            )
        wait_for_warehouse(context, manifest, config.sandbox)
        rules = rules_for(manifest_path, project_dir, validation.settings())
        built: list[str] = []
        adapters: list = []  # the dbt adapter dagster-dbt built for the (last) invocation
        invocations: list = []
        error: DagsterDbtCliRuntimeError | None = None
        sandbox_tests: list[dg.AssetCheckResult] = []
        try:
            if not full_refresh and not config.sandbox:
                invocation = dbt.cli(["build", *WARN_ERROR_ARGS], context=context)
                invocations.append(invocation)
                adapters.append(invocation.adapter)
                for event in invocation.stream():
                    if (key := _built_keys(context, event)) in by_key:
                        built.append(by_key[key])
                    yield event
            else:
                # a resource for the sandbox target: dagster-dbt builds the adapter (which the
                # checks query through) from the resource's target, not from a --target arg
                runner = with_target(dbt, SANDBOX_TARGET) if config.sandbox else dbt
                for event in _split_build(
                    context,
                    runner,
                    project,
                    manifest,
                    selected,
                    full_refresh,
                    by_key,
                    built,
                    adapters,
                    invocations,
                ):
                    if not config.sandbox:
                        yield event
                    elif isinstance(event, dg.AssetCheckResult):
                        sandbox_tests.append(event)
        except DagsterDbtCliRuntimeError as e:
            error = e  # validate what did get built, then fail the step
        adapter = adapters[-1] if adapters else None
        keys = {uid: key for key, uid in by_key.items()}
        results = []
        try:
            for result in validate(
                context,
                adapter,
                rules,
                keys,
                built,
                validation,
                windows_for(manifest_path, project_dir),
                frozenset(full_refresh),
            ):
                results.append(result)
                if not config.sandbox:
                    yield result
        finally:
            remove_run_folders(invocations, Path(project_dir))
        if config.sandbox:
            yield from _sandbox_observations(built, keys, results, sandbox_tests, config.reason)
        if error is not None:
            raise error
        blocked = blocking_failures(results) + [
            f"{t.asset_key.to_user_string()}: dbt test {t.check_name} failed in the sandbox"
            for t in sandbox_tests
            if not t.passed and t.severity == dg.AssetCheckSeverity.ERROR
        ]
        if blocked:
            # what AssetCheckSpec(blocking=True) does for check outputs: the step fails
            raise dg.Failure(
                f"{len(blocked)} blocking check(s) failed:\n" + "\n".join(blocked),
                metadata={"failed_checks": len(blocked)},
            )

    return dbt_models


def wait_for_warehouse(context, manifest: DbtManifest, sandbox: bool) -> None:
    """An open DuckDB connection elsewhere (a notebook) makes dbt fail at its first connection
    with a lock error: wait for it, then fail naming it, before any dbt command."""
    if manifest.raw.get("metadata", {}).get("adapter_type") != "duckdb":
        return
    path = sandbox_warehouse_path() if sandbox else warehouse_path()
    try:
        require_free(path, "resume; nothing was built", context.log.warning)
    except WarehouseHeld as e:
        raise dg.Failure(str(e)) from None


def _sandbox_observations(built, keys, results, tests, reason: str) -> Iterator:
    """What a sandbox run built, as observations: prod's history stays untouched."""
    for uid in built:
        key = keys[uid]
        metadata: dict[str, Any] = {"sandbox": True, "dbt_target": SANDBOX_TARGET}
        if reason:
            metadata["reason"] = reason
        for r in (*results, *tests):
            if r.asset_key == key:
                verdict = "passed" if r.passed else "FAILED"
                text = getattr(r, "description", None) or ""
                metadata[r.check_name] = f"{verdict}: {text}".rstrip(": ")
        yield dg.AssetObservation(
            asset_key=key, description="built in the sandbox, not in prod", metadata=metadata
        )


def with_target(dbt: DbtCliResource, target: str) -> DbtCliResource:
    return RescueDbtCliResource(
        project_dir=dbt.project_dir,
        profiles_dir=dbt.profiles_dir,
        profile=dbt.profile,
        target=target,
        dbt_executable=dbt.dbt_executable,
        global_config_flags=dbt.global_config_flags,
    )


def remove_run_folders(invocations, project_dir: Path) -> None:
    """Each dagster-dbt invocation leaves a 4-5 MB folder in target/ (and, past 200 selected
    resources, a whole copy of the project in a temp dir): 45 runs left 173 MB. The events
    have been read and the checks have run: nothing needs them any more."""
    target = (project_dir / "target").resolve()
    temp = Path(tempfile.gettempdir()).resolve()
    for invocation in invocations:
        path = Path(invocation.target_path).resolve()
        if path.parent == target:
            shutil.rmtree(path, ignore_errors=True)
        copy = Path(invocation.project_dir).resolve()
        if copy != project_dir.resolve() and copy.parent == temp:
            shutil.rmtree(copy, ignore_errors=True)


def _split_build(
    context, dbt, project, manifest, selected, full_refresh, by_key, built, adapters, invocations
):
    # dagster-dbt adds its own selection to every invocation made with `context`, so the
    # split invocations pass their own exact selection (model names) and the manifest
    checks: dict = {}
    for refresh, models in refresh_layers(manifest, selected, frozenset(full_refresh)):
        args = ["build", *(["--full-refresh"] if refresh else []), *WARN_ERROR_ARGS]
        args += ["--select", group_selection(manifest, tuple(models))]
        invocation = dbt.cli(
            args, manifest=project.manifest_path, dagster_dbt_translator=TRANSLATOR
        )
        invocations.append(invocation)
        adapters.append(invocation.adapter)
        for event in _split_events(invocation.stream(), checks):
            if (key := _built_keys(context, event)) in by_key:
                built.append(by_key[key])
            yield event
    selected_checks = context.selected_asset_check_keys
    for (key, name), result in checks.items():
        if dg.AssetCheckKey(key, name) in selected_checks:
            yield result
