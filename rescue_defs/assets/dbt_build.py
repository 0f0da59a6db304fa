"""How the dbt_models step invokes dbt: each stage's exact selection in refresh layers, each
next invocation started ahead, the events and dbt test results it streams (the stages
themselves, each validated before the next: dbt_stages.py)."""

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource
from dagster_dbt.asset_utils import (
    DAGSTER_DBT_UNIQUE_ID_METADATA_KEY,
    get_dbt_test_names_for_check_keys,
)

from rescue_defs import dbt_child
from rescue_defs.assets.dbt_ahead import Lineup
from rescue_defs.assets.dbt_cli import (
    RescueDbtCliResource,
    can_wait,
    handed_over_pid,
    invocations_of,
    invocations_so_far,
    keep_parse_state,
)
from rescue_defs.planning.advice import is_incremental
from rescue_defs.planning.cost import FULL_REFRESH_KEY
from rescue_defs.planning.manifest import DbtManifest
from rescue_defs.planning.stages import group_selection
from rescue_defs.sandbox import TARGET as SANDBOX_TARGET

# dbt exits 0 on a selection that matches nothing; a rescue must never silently do nothing
WARN_ERROR_ARGS = ["--warn-error-options", '{"error": ["NoNodesForSelectionCriteria"]}']
# a step's builds write no manifest.json nor run_results.json: nobody reads them (the events
# come on dbt's stdout, the folder is removed after the step) and dbt writes the manifest twice
# per invocation (~0.13 s on the bundled project, seconds on thousands of models); the parse
# state it keeps (partial_parse.msgpack) is written either way
NO_ARTIFACTS = "--no-write-json"


def refresh_layers(
    manifest: DbtManifest, models: frozenset[str], full_refresh: frozenset[str]
) -> list[tuple[bool, list[str]]]:
    """Consecutive dbt invocations, each all-full-refresh or all-normal, in dependency order:
    a model goes in the first layer after every parent of another refresh kind. When every
    incremental model is to be refreshed, one `--full-refresh` invocation does it all, as the
    engineer would type it (--full-refresh changes nothing for table and view models)."""
    incremental = {m for m in models if is_incremental(manifest.models[m])}
    if incremental and incremental <= full_refresh:
        return [(True, manifest.topological(models))]
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


def _built_key(context: dg.AssetExecutionContext, event) -> dg.AssetKey | None:
    if isinstance(event, dg.Output):
        return context.assets_def.keys_by_output_name.get(event.output_name)
    if isinstance(event, (dg.AssetMaterialization, dg.MaterializeResult)):
        return event.asset_key
    return None


def as_rescue(dbt: DbtCliResource, target: str | None = None) -> RescueDbtCliResource:
    """The team's dbt resource as the rescue builds with it: same project, profile and flags;
    this environment's dbt through rescue-dbt (it dies with its run worker, dbt_child.py);
    `target` for the sandbox (dagster-dbt builds the adapter the checks query through from the
    resource's target, not from a --target arg)."""
    if isinstance(dbt, RescueDbtCliResource) and target is None:
        return dbt
    fields = {name: getattr(dbt, name) for name in type(dbt).model_fields if hasattr(dbt, name)}
    if Path(str(fields.get("dbt_executable", "dbt"))).name == "dbt":
        fields["dbt_executable"] = dbt_child.executable()
    if target is not None:
        fields["target"] = target
    return RescueDbtCliResource(
        **{k: v for k, v in fields.items() if k in RescueDbtCliResource.model_fields}
    )


def remove_run_folders(invocations, project_dir: Path) -> None:
    """Each dagster-dbt invocation leaves a 4-5 MB folder in target/ (and, past 200 selected
    resources, a whole copy of the project in a temp dir): 45 runs left 173 MB. The events
    have been read and the checks have run: nothing needs them any more."""
    target = (project_dir / "target").resolve()
    temp = Path(tempfile.gettempdir()).resolve()
    for invocation in invocations:
        path = Path(invocation.target_path).resolve()
        copy = Path(invocation.project_dir).resolve()
        if copy == project_dir.resolve():
            # not a state parsed in a temp copy: it would name the copy's files (seeds are
            # read from there at run time), deleted below
            keep_parse_state(path)
        if path.parent == target:
            shutil.rmtree(path, ignore_errors=True)
        if copy != project_dir.resolve() and copy.parent == temp:
            shutil.rmtree(copy, ignore_errors=True)


class Build:
    """One step's dbt work: what it needs, and what it found (models built, test results)."""

    def __init__(
        self,
        context,
        dbt,
        project,
        manifest: DbtManifest,
        keys,
        translator,
        sandbox: bool,
        reason,
        team_compute=None,
    ):
        self.context, self.project, self.manifest = context, project, manifest
        self.team_dbt, self.team_compute = dbt, team_compute
        self.translator, self.reason = translator, reason
        self.keys = keys  # unique_id -> asset key
        self.by_key = {k: uid for uid, k in keys.items()}
        self.sandbox = sandbox
        # a resource for the sandbox target: dagster-dbt builds the adapter (which the checks
        # query through) from the resource's target, not from a --target arg
        self.dbt = as_rescue(dbt, SANDBOX_TARGET if sandbox else None)
        self.tests: dict = {}  # (asset key, check name) -> the last result of a dbt test
        # models materialized by a --full-refresh invocation of this step (the proof's own)
        self.refreshed: set[str] = set()
        self.lineup: Lineup | None = None
        # the fusion engine (2.x) is left as it is
        self.no_artifacts = [NO_ARTIFACTS] if self.dbt._cli_version.major < 2 else []
        self._commands: dict[tuple, list[tuple[bool, list[str]]]] = {}

    def whole_selection(self, built: list[str], invocations: list) -> Iterator:
        """The run's own asset selection as the team builds it: their dbt assets function,
        unchanged (their flags, vars, row counts); else one `dbt build` (dagster-dbt selects)."""
        if self.team_compute is None:
            args = ["build", *WARN_ERROR_ARGS, *self.no_artifacts]
            invocation = self.dbt.cli(args, context=self.context)
            invocations.append(invocation)
            events = invocation.stream()
        else:
            events = self.team_compute(self.context)
        try:
            for event in events:
                if not invocations:  # the team's function has started its dbt (its adapter)
                    invocations += invocations_so_far(self.context.run.run_id)
                if (key := _built_key(self.context, event)) in self.by_key:
                    built.append(self.by_key[key])
                yield event
        finally:
            # what the team's function invoked (with a RescueDbtCliResource: the demo's), for
            # the adapter and the clean-up; forgotten either way
            made = invocations_of(self.context.run.run_id)
            invocations += [i for i in made if not any(i is j for j in invocations)]

    def exact(self, models: frozenset[str], built: list[str], invocations: list) -> Iterator:
        """What dagster-dbt's selection builds for a rescue's step run (its models and the
        dbt tests the run selected, no singular test: indirect selection `empty`), for a run
        whose selection holds the proof's checks too, which are no dbt tests."""
        assets_def = self.context.assets_def
        tests = [
            c
            for c in self.context.selected_asset_check_keys
            if DAGSTER_DBT_UNIQUE_ID_METADATA_KEY
            in (assets_def.get_spec_for_check_key(c).metadata or {})
        ]
        names = get_dbt_test_names_for_check_keys(
            self.translator, self.manifest.raw, assets_def, tests
        )
        selection = " ".join([group_selection(self.manifest, tuple(sorted(models))), *names])
        args = ["build", *WARN_ERROR_ARGS, *self.no_artifacts, "--indirect-selection", "empty"]
        args += ["--select", selection]
        yield from self._invoke(args, built, invocations)

    def adapter(self, invocations: list):
        """The adapter the validation queries go through: the last invocation's, else one
        for the team's resource (their function's invocations are not ours to see)."""
        if invocations:
            return invocations[-1].adapter
        return self.dbt._initialize_dbt_core_adapter([])

    def commands(
        self, models: frozenset[str], full_refresh: frozenset[str]
    ) -> list[tuple[bool, list[str]]]:
        """Exactly `models`, in refresh layers (dbt applies --full-refresh per invocation):
        (refresh, args) of each invocation; made once per stage (the lineup reads them first)."""
        made = self._commands.get((models, full_refresh))
        if made is None:
            made = self._commands[(models, full_refresh)] = []
            for refresh, layer in refresh_layers(self.manifest, models, full_refresh & models):
                args = ["build", *(["--full-refresh"] if refresh else []), *WARN_ERROR_ARGS]
                args += self.no_artifacts
                args += ["--select", group_selection(self.manifest, tuple(layer))]
                made.append((refresh, args))
        return made

    def line_up(self, commands: Sequence[list[str]]) -> None:
        """The step's invocations, in order: each next one's dbt starts ahead (dbt_ahead.py)."""
        if can_wait(self.dbt) and len(commands) > 1:
            self.lineup = Lineup(self.start, commands, self.context.log)

    def start(self, args: list[str], waiting: bool = False):
        """One dbt invocation with its own exact selection and the manifest (dagster-dbt adds
        its own selection to every invocation made with `context`)."""
        return self.dbt.cli(
            args,
            manifest=self.project.manifest_path,
            dagster_dbt_translator=self.translator,
            waiting=waiting,
        )

    def models(
        self, models: frozenset[str], full_refresh: frozenset[str], built, invocations
    ) -> Iterator:
        for refresh, args in self.commands(models, full_refresh):
            yield from self._invoke(args, built, invocations, refresh=refresh)

    def _invoke(self, args: list[str], built: list[str], invocations: list, refresh=False):
        invocation = self.lineup.take(args) if self.lineup else self.start(args)
        invocations.append(invocation)
        for event in _split_events(invocation.stream(), self.tests):
            if self.lineup is not None:  # it has built something: the next one's dbt starts
                self.lineup.ahead()
            if (key := _built_key(self.context, event)) in self.by_key:
                built.append(self.by_key[key])
                if refresh and isinstance(event, (dg.Output, dg.AssetMaterialization)):
                    # the history learns what a full refresh costs from these (cost.py)
                    event = event.with_metadata({**event.metadata, FULL_REFRESH_KEY: True})
                    self.refreshed.add(self.by_key[key])
            yield event
        if (pid := handed_over_pid(invocation)) is not None:
            # what a run worker's head start bought, in the run's log (dbt_warm.py)
            self.context.log.info(
                f"dbt {args[0]} ran in the dbt this run worker imported while it loaded "
                f"(pid {pid}): no dbt import before its first model"
            )

    def test_results(self) -> list[dg.AssetCheckResult]:
        selected = self.context.selected_asset_check_keys
        return [
            result
            for (key, name), result in self.tests.items()
            if dg.AssetCheckKey(key, name) in selected
        ]
