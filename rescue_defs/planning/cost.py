"""Expected rebuild time per model, from the durations Dagster recorded, with honest defaults."""

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from rescue_defs.planning.manifest import DbtManifest

# Used only when a model has no history: what a model of that kind usually takes.
DEFAULT_SECONDS = {"view": 2.0, "ephemeral": 0.0, "table": 20.0, "incremental": 30.0}
DEFAULT_FULL_REFRESH_FACTOR = 10.0
# materialization metadata of a model a rescue built with --full-refresh: the history tells
# full refreshes from normal runs by it
FULL_REFRESH_KEY = "dbt_full_refresh"
# Per run of a rescue, besides the models, until the instance has a rescue run to learn from:
# the CLI planning (~2 s), the sensor's tick and the queue's dequeue (0.5-2.5 s, ~1 s), a run
# worker loading the code location and its dbt starting (3.5-4.5 s), the stages' validation and
# the proof's fixed part, the tick that ends the rescue. Measured with bench/launch_bench.py
# under `dagster dev` on 2 cores (2026-12-05): 10.5 s learned after one bundled rescue; the 45 s
# this was (measured when a run worker took 10-26 s to load) made a first rescue's estimate 3.4x
# what it took.
DEFAULT_RUN_OVERHEAD_SECONDS = 12.0
# Per model a run builds, besides the model's own dbt time (events stored, checks, dbt's own
# per-node work): 0.05 s (200 models) to 0.13 s (2,000, proof included) measured with
# bench/launch_bench.py under `dagster dev` on 2 cores (2026-12-05; 0.3 s was measured when each
# model's validation was its own queries).
DEFAULT_MODEL_OVERHEAD_SECONDS = 0.1
# What a run's own record does not show: the tick that requests it (rescue_sensor is evaluated
# on every 5 s daemon loop: 0.4-2.5 s measured, bench/launch_bench.py, 2026-12-05; none when
# `rescue launch` submits the first run through the webserver) and the end, noticed within
# 0.2-0.7 s.
TICK_SECONDS = 2.5
# A further stage inside one run: its dbt (started ahead while the stage before built,
# assets/dbt_ahead.py) taking the command, the stage's validation queries: 1.4-1.7 s from a
# stage's validation to the next one's in a bundled rescue's run log (2026-12-05; 4 s before
# dbt was started ahead).
STAGE_SECONDS = 1.5


@dataclass(frozen=True)
class CostSettings:
    heavy_seconds: float = 300.0
    """A model is heavy when its expected rebuild takes longer (the playbook: "more than a few
    minutes in its normal incremental run")."""
    full_refresh_factor: float | None = None
    """Full refresh vs incremental run; None: learned from history, else 10x."""
    default_seconds: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SECONDS))
    run_overhead_seconds: float | None = None
    """Seconds each run of a rescue adds besides its models; None: learned from history."""
    model_overhead_seconds: float | None = None
    """Seconds each model adds to its run besides its dbt time; None: learned from history."""


@dataclass(frozen=True)
class History:
    """Recent durations in seconds per model unique_id, split by how the model was built."""

    incremental: Mapping[str, list[float]] = field(default_factory=dict)
    full_refresh: Mapping[str, list[float]] = field(default_factory=dict)
    run_overhead: list[float] = field(default_factory=list)
    """Recent rescue runs: wall time from request to end minus their models' own time."""
    run_models: list[int] = field(default_factory=list)
    """How many models each of those runs built (same order), when known."""
    run_stages: list[int] = field(default_factory=list)
    """How many stages each of those runs built one after the other (same order), when known:
    their further stages' dbt starts are in its overhead, and the estimate counts them apart."""


@dataclass(frozen=True)
class ModelCost:
    seconds: float
    source: str
    """Where the number comes from: history, history x factor, or a default."""
    heavy: bool


class CostModel:
    def __init__(
        self,
        manifest: DbtManifest,
        history: History | None = None,
        settings: CostSettings | None = None,
    ):
        self.manifest = manifest
        self.history = history or History()
        self.settings = settings or CostSettings()
        self.full_refresh_factor = (
            self.settings.full_refresh_factor
            if self.settings.full_refresh_factor is not None
            else learn_full_refresh_factor(self.history)
        )
        runs = self.history.run_overhead
        if len(self.history.run_stages) == len(runs):
            # each further stage is counted apart (STAGE_SECONDS): not in the run's overhead too
            runs = [
                max(0.0, o - max(0, stages - 1) * STAGE_SECONDS)
                for o, stages in zip(runs, self.history.run_stages, strict=True)
            ]
        sized = (
            list(zip(runs, self.history.run_models, strict=True))
            if len(self.history.run_models) == len(runs)
            else []
        )
        if self.settings.model_overhead_seconds is not None:
            self.model_overhead = self.settings.model_overhead_seconds
        else:
            learned = per_model_slope(sized)
            if learned is None:
                learned = DEFAULT_MODEL_OVERHEAD_SECONDS
                if sized and all(n for _, n in sized):
                    # one run size seen: what it cost cannot be split by fitting, so a run's
                    # usual fixed part (queue, run worker, dbt start) comes first and only the
                    # rest is per model: a first build of 200 models that cost 7 s besides them
                    # leaves a 10-model rescue its 7 s, not 0.35 s
                    rest = statistics.median(o for o, _ in sized) - DEFAULT_RUN_OVERHEAD_SECONDS
                    n = statistics.median(n for _, n in sized)
                    learned = min(learned, max(0.0, rest) / n)
            self.model_overhead = round(learned, 3)
        if self.settings.run_overhead_seconds is not None:
            self.run_overhead = self.settings.run_overhead_seconds
        elif runs:
            # a run's own overhead less what its models cost it, plus the ticks around it
            fixed = [o - self.model_overhead * n for o, n in sized] if sized else runs
            self.run_overhead = round(max(0.0, statistics.median(fixed)) + TICK_SECONDS, 1)
        else:
            self.run_overhead = DEFAULT_RUN_OVERHEAD_SECONDS

    def model(self, unique_id: str, full_refresh: bool = False) -> ModelCost:
        node = self.manifest.models[unique_id]
        materialized = node.get("config", {}).get("materialized", "table")
        incremental = materialized == "incremental"
        full = self.history.full_refresh.get(unique_id)
        normal = self.history.incremental.get(unique_id)
        if not incremental:
            # --full-refresh changes nothing for a table or a view: every build of it counts
            normal = [*(normal or []), *(full or [])]
        if full_refresh and incremental and full:
            seconds, source = statistics.median(full), "history (full refresh)"
        elif normal:
            seconds, source = statistics.median(normal), "history"
            if full_refresh and incremental:
                seconds *= self.full_refresh_factor
                source = f"history x {self.full_refresh_factor:g} (full refresh)"
        elif full:
            # only full refreshes seen yet (a project's first build is one)
            seconds = statistics.median(full) / self.full_refresh_factor
            source = f"history (full refresh) / {self.full_refresh_factor:g}"
        else:
            seconds = self.settings.default_seconds.get(materialized, 20.0)
            source = f"default for {materialized}"
            if full_refresh and incremental:
                seconds *= self.full_refresh_factor
        return ModelCost(seconds, source, seconds >= self.settings.heavy_seconds)

    def total(self, models: Iterable[str], full_refresh: frozenset[str] = frozenset()) -> float:
        """Serial upper bound: dbt threads may overlap independent models."""
        return sum(self.model(m, m in full_refresh).seconds for m in models)


def besides_models(
    requested: float, ended: float, built: Sequence[tuple[float, float]], proved: bool
) -> float:
    """What a run cost besides building its models: request to end less the time its models
    took, `built` being (when each ended, its own seconds). Models dbt built side by side (its
    threads) took the span from the first one's start to the last one's end, less than their
    seconds added up; one at a time, their seconds. A run that proved spent its time after
    its last model on the proof, which an estimate counts apart (checks/proof.py)."""
    if not built:
        return max(0.0, ended - requested)
    start = min(at - seconds for at, seconds in built)
    last = max(at for at, _ in built)
    took = min(sum(seconds for _, seconds in built), last - start)
    after = ended - last if proved else 0.0
    return max(0.0, ended - requested - took - after)


def learn_full_refresh_factor(history: History) -> float:
    """Median ratio of full-refresh to incremental duration over models that have both."""
    ratios = [
        statistics.median(history.full_refresh[m]) / statistics.median(history.incremental[m])
        for m in history.full_refresh.keys() & history.incremental.keys()
        if history.full_refresh[m]
        and history.incremental[m]
        and statistics.median(history.incremental[m]) > 0
    ]
    return round(statistics.median(ratios), 2) if ratios else DEFAULT_FULL_REFRESH_FACTOR


def per_model_slope(runs: list[tuple[float, int]]) -> float | None:
    """Least-squares seconds per model over recent runs (overhead, models built); None
    without at least two run sizes to tell the per-run part from the per-model part."""
    if len({n for _, n in runs}) < 2:
        return None
    mean_n = statistics.fmean(n for _, n in runs)
    mean_o = statistics.fmean(o for o, _ in runs)
    spread = sum((n - mean_n) ** 2 for _, n in runs)
    slope = sum((n - mean_n) * (o - mean_o) for o, n in runs) / spread
    return min(max(slope, 0.0), 5.0)
