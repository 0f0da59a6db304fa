"""A rescue plan: pure, explainable, computed without touching the warehouse."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from rescue_defs.planning import advice as advice_mod
from rescue_defs.planning.advice import Advice, ChangeContext, advise, is_incremental
from rescue_defs.planning.checklist import BLOCK, Environment, Item, PlanFacts, evaluate
from rescue_defs.planning.cost import STAGE_SECONDS, CostModel, CostSettings, History
from rescue_defs.planning.lineage import reached
from rescue_defs.planning.manifest import DbtManifest
from rescue_defs.planning.selection import SelectionError, Selector
from rescue_defs.planning.stages import (
    StageRule,
    group_selection,
    lineage_groups,
    plan_stages,
    split_layers,
)


@dataclass(frozen=True)
class PlanRequest:
    select: str
    exclude: str = ""
    full_refresh: bool | tuple[str, ...] | None = None
    """None: follow the refresh advice; True: every incremental model in scope; False: none;
    model names: exactly those."""
    layered: bool | None = None
    """None: decide by the stage rule."""
    reason: str = "manual"
    separate_runs: bool = False
    """One Dagster run per step even when nothing else writes the rescue's models (by default
    the steps then run stage after stage in one run, each validated before the next)."""
    changed_window: tuple[date, date] | None = None
    today: date | None = None


@dataclass(frozen=True)
class PlanSettings:
    stages: StageRule = field(default_factory=StageRule)
    cost: CostSettings = field(default_factory=CostSettings)
    group_max_models: int = 40
    """A run (group) holds at most this many models; bigger stages split by lineage."""
    group_max_seconds: float | None = None


@dataclass(frozen=True)
class Step:
    """One Dagster run of the rescue: a group of models of one stage."""

    index: int
    stage: str
    models: tuple[str, ...]
    selection: str
    """A dbt selection that resolves to exactly `models`."""
    full_refresh: tuple[str, ...]
    after: tuple[int, ...]
    seconds: float


@dataclass(frozen=True)
class Plan:
    request: PlanRequest
    models: tuple[str, ...]
    targets: frozenset[str]
    names: Mapping[str, str]
    stage_reason: str
    steps: tuple[Step, ...]
    seconds: Mapping[str, float]
    heavy: frozenset[str]
    full_refresh_factor: float
    advice: Mapping[str, Advice]
    full_refresh: frozenset[str]
    checklist: tuple[Item, ...]
    tests: tuple[str, ...]
    run_overhead_seconds: float = 0.0
    """What each run adds besides its models (start-up, waits), learned from history."""
    model_overhead_seconds: float = 0.0
    """What each model adds to its run besides its dbt time, learned from history."""
    inlined: tuple[str, ...] = ()
    """Ephemeral models in the selection: compiled into the planned models that use them,
    never built (nor run) on their own."""
    scratch_seconds: Mapping[str, float] = field(default_factory=dict)
    """Each incremental model's from-scratch (--full-refresh) build: what its proof costs."""
    project: str = ""
    """The dbt project's name (dbt_project.yml): whose sensor runs it where a code location
    holds several projects."""

    @property
    def stages(self) -> list[tuple[str, tuple[str, ...]]]:
        seen: dict[str, list[str]] = {}
        for step in self.steps:
            seen.setdefault(step.stage, []).extend(step.models)
        return [(stage, tuple(models)) for stage, models in seen.items()]

    @property
    def blocks(self) -> list[Item]:
        return [item for item in self.checklist if item.status == BLOCK]

    @property
    def runs(self) -> int:
        """Dagster runs expected: one for every step when asked, else one (the steps stage
        after stage) unless another run writing the same models makes them wait apart."""
        return len(self.steps) if self.request.separate_runs else 1

    @property
    def total_seconds(self) -> float:
        """Launch to end: the models one after the other, each run's start-up and waits, and
        each further stage's dbt start inside a run."""
        # in one run, the steps of one stage (lineage groups) share one dbt invocation
        stages_inside = 0 if self.request.separate_runs else len(self.stages) - 1
        return (
            sum(self.seconds[m] for m in self.models)
            + len(self.models) * self.model_overhead_seconds
            + self.runs * self.run_overhead_seconds
            + stages_inside * STAGE_SECONDS
        )

    def name(self, unique_id: str) -> str:
        return self.names.get(unique_id, unique_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "select": self.request.select,
            "exclude": self.request.exclude,
            "reason": self.request.reason,
            "models": list(self.models),
            "targets": sorted(self.targets),
            "stage_reason": self.stage_reason,
            "stages": [{"name": stage, "models": list(models)} for stage, models in self.stages],
            "groups": [
                {
                    "index": s.index,
                    "stage": s.stage,
                    "models": list(s.models),
                    "selection": s.selection,
                    "full_refresh": list(s.full_refresh),
                    "after": list(s.after),
                    "expected_seconds": round(s.seconds, 1),
                }
                for s in self.steps
            ],
            "expected_seconds": round(self.total_seconds, 1),
            "run_overhead_seconds": self.run_overhead_seconds,
            "model_overhead_seconds": self.model_overhead_seconds,
            "heavy": sorted(self.heavy),
            "full_refresh_factor": self.full_refresh_factor,
            "advice": {
                m: {
                    "advice": a.kind,
                    "reasons": list(a.reasons),
                    "window": [str(d) for d in a.window] if a.window else None,
                }
                for m, a in sorted(self.advice.items())
            },
            "full_refresh": sorted(self.full_refresh),
            "checklist": [
                {"item": i.key, "question": i.question, "status": i.status, "reason": i.reason}
                for i in self.checklist
            ],
            "blocked": bool(self.blocks),
            "tests": list(self.tests),
            "inlined": list(self.inlined),
        }


class Planner:
    """Plans rescues over one manifest; the selector and graphs are built once."""

    def __init__(self, manifest: DbtManifest, settings: PlanSettings | None = None):
        self.manifest = manifest
        self.settings = settings or PlanSettings()
        self.selector = Selector(manifest)

    def plan(
        self,
        request: PlanRequest,
        previous: DbtManifest | None = None,
        history: History | None = None,
        env: Environment | None = None,
        late: Mapping[str, Any] | None = None,
        late_note: str = "",
    ) -> Plan:
        """`late`: rows landed late per windowed model (None: not measured, `late_note`
        says why)."""
        manifest, settings = self.manifest, self.settings
        resolution = self.selector.resolve(request.select, request.exclude)
        inlined = resolution.models & manifest.ephemeral
        models = resolution.models - inlined
        if not models:
            raise SelectionError(
                request.select,
                "selects only ephemeral models, which dbt compiles into the models that use "
                "them: select those instead (e.g. add `+` after the model)",
            )
        targets = (resolution.targets - inlined) or models
        costs = CostModel(manifest, history, settings.cost)

        # advice first (it uses the incremental cost); then full refresh changes the cost
        heavy_normal = frozenset(m for m in models if costs.model(m).heavy)
        ctx = ChangeContext(previous, request.changed_window, request.today, heavy_normal, late)
        incremental = sorted(m for m in models if is_incremental(manifest.models[m]))
        advice = {m: advise(manifest, m, ctx) for m in incremental}
        full_refresh = self._full_refresh(request, models, incremental, advice)
        seconds = {m: costs.model(m, m in full_refresh).seconds for m in models}
        heavy = frozenset(m for m in models if costs.model(m, m in full_refresh).heavy)

        stages, stage_reason = plan_stages(
            manifest,
            models,
            targets,
            sum(seconds.values()),
            settings.stages,
            request.layered,
        )
        per_model = costs.model_overhead
        steps = self._steps(
            stages, {m: s + per_model for m, s in seconds.items()}, full_refresh, costs.run_overhead
        )

        upstream, middle, downstream = split_layers(manifest, models, targets)
        # consumers of the target and downstream parts left out of the rescue stay stale
        outside = reached(manifest.model_graph, models - upstream) - models
        tested = {m for m in models if manifest.tests_of({m})}
        facts = PlanFacts(
            models=models,
            names={m: manifest.name(m) for m in models | outside},
            seconds=sum(seconds.values())
            + len(models) * costs.model_overhead
            + (len(steps) if request.separate_runs else 1) * costs.run_overhead
            + (0 if request.separate_runs else len(stages) - 1) * STAGE_SECONDS,
            heavy=heavy,
            full_refresh=full_refresh,
            advised_full=frozenset(m for m, a in advice.items() if a.full_refresh),
            advised_not_full=frozenset(m for m, a in advice.items() if not a.full_refresh),
            monthly_noop=frozenset(
                m
                for m in incremental
                if advice_mod.rescue_meta(manifest.models[m]).get("cadence")
                and m not in full_refresh
            ),
            stale_consumers=frozenset(outside),
            untested=frozenset(models - tested),
            late_note=late_note if late is None else "",
            unseen=frozenset(m for m, a in advice.items() if a.unseen and m not in full_refresh),
            counts={
                "upstream": len(upstream),
                "target": len(middle),
                "downstream": len(downstream),
            },
        )
        return Plan(
            request=request,
            models=tuple(manifest.topological(models)),
            targets=targets,
            names={m: manifest.name(m) for m in models | inlined},
            stage_reason=stage_reason,
            steps=tuple(steps),
            seconds=seconds,
            heavy=heavy,
            full_refresh_factor=costs.full_refresh_factor,
            advice=advice,
            full_refresh=full_refresh,
            checklist=tuple(evaluate(facts, env or Environment())),
            tests=tuple(manifest.tests_of(models)),
            inlined=tuple(sorted(inlined, key=manifest.name)),
            run_overhead_seconds=costs.run_overhead,
            model_overhead_seconds=costs.model_overhead,
            scratch_seconds={m: costs.model(m, full_refresh=True).seconds for m in incremental},
            project=manifest.project_name,
        )

    def _full_refresh(self, request, models, incremental, advice) -> frozenset[str]:
        choice = request.full_refresh
        if choice is None:
            return frozenset(m for m, a in advice.items() if a.full_refresh)
        if choice is True:
            return frozenset(incremental)
        if choice is False:
            return frozenset()
        chosen = set()
        for name in choice:
            ids = [m for m in self.manifest.by_name.get(name, []) if m in models]
            if not ids:
                raise SelectionError(name, "--full-refresh names a model that is not in the rescue")
            chosen.update(ids)
        return frozenset(chosen)

    def _steps(self, stages, seconds, full_refresh, overhead: float) -> list[Step]:
        steps: list[Step] = []
        previous_stage: tuple[int, ...] = ()
        for stage in stages:
            members = frozenset(stage.models)
            if len(members) > self.settings.group_max_models or (
                self.settings.group_max_seconds is not None
                and sum(seconds[m] for m in members) > self.settings.group_max_seconds
            ):
                groups = lineage_groups(
                    self.manifest,
                    members,
                    self.settings.group_max_models,
                    seconds.get,
                    self.settings.group_max_seconds,
                )
            else:
                groups = None
            first = len(steps)
            parts = (
                [(tuple(stage.models), ()) for _ in [0]]
                if groups is None
                else [(g.models, g.after) for g in groups]
            )
            for models, after in parts:
                steps.append(
                    Step(
                        index=len(steps),
                        stage=stage.name,
                        models=models,
                        selection=group_selection(self.manifest, models),
                        full_refresh=tuple(m for m in models if m in full_refresh),
                        after=tuple(sorted({*previous_stage, *(first + a for a in after)})),
                        seconds=overhead + sum(seconds[m] for m in models),
                    )
                )
            previous_stage = tuple(range(first, len(steps)))
        return steps
