"""Validating each model as dbt reports it built, where the warehouse can be read while dbt
writes (every adapter but DuckDB, whose file is dbt's alone while it builds).

Storing a verdict is Dagster's work on the step's thread (~13 ms an event on SQLite: 54 s for
the 4,000 verdicts of a 2,000-model rescue, bench/README.md). Stored after dbt has exited,
they add to the step; stored between dbt's events, they take the time the step's thread
spends waiting for dbt. So the queries run on a thread of their own, on a connection of its
own (dbt's adapters keep one per thread), each model once dbt has reported it built; the
step's thread hands models over and yields the verdicts that are ready, between events."""

import queue
import threading
from collections.abc import Iterator, Mapping, Sequence

import dagster as dg

from rescue_defs.checks.coverage import WindowRule
from rescue_defs.checks.measure import Judge, end_transaction
from rescue_defs.checks.rules import ModelRule
from rescue_defs.checks.validation import (
    ValidationResource,
    checks_to_run,
    release_adapter,
    reported,
)

DONE = None  # what the step's thread hands over last
# The step's thread stores dbt's events too: past a few hundred models it is busy all through
# the build, and verdicts stored in between only push dbt's events back (bench/README.md,
# alongside_bench.py on PostgreSQL: 200 models 33.3 -> 28.5 s; 1,000 models 149.4 -> 155.3 s;
# 2,000 models 535 -> 598 s): larger stages are validated after dbt, as on DuckDB.
MOST_MODELS = 500


class Alongside:
    """One stage's validation while its dbt builds."""

    def __init__(self, context, adapter, stage: frozenset[str], judge: Judge, windows):
        self.context, self.adapter, self.judge, self.windows = context, adapter, judge, windows
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.handed = 0  # how many of the stage's built models were handed over
        self.models: list[str] = []  # handed to the thread, in order
        self.judged: set[str] = set()
        self.selected: set[dg.AssetCheckKey] = set()
        self.results: list = []  # what the step reported, for the stage's gate
        self.failure: BaseException | None = None
        self.closed = False
        judge.recall(context.instance, stage)  # one history query for the stage, up front
        self.thread = threading.Thread(target=self._work, name="rescue-validation", daemon=True)
        self.thread.start()

    @classmethod
    def start(
        cls,
        context: dg.AssetExecutionContext,
        adapter,
        stage: frozenset[str],
        rules: Mapping[str, ModelRule],
        keys: Mapping[str, dg.AssetKey],
        resource: ValidationResource,
        windows: Mapping[str, WindowRule] | None = None,
        full_refresh: frozenset[str] = frozenset(),
    ) -> "Alongside | None":
        """None where validation waits for dbt to exit: DuckDB, no adapter, checks off, a
        stage of more than MOST_MODELS models."""
        if adapter is None or not resource.enabled or len(stage) > MOST_MODELS:
            return None
        if adapter.type() == "duckdb":
            return None
        judge = Judge(adapter, rules, keys, resource.settings(), windows or {}, full_refresh)
        return cls(context, adapter, stage, judge, windows or {})

    def take(self, built: Sequence[str]) -> Iterator:
        """Hand over what dbt has built since the last call; yield the verdicts ready."""
        fresh = list(built[self.handed :])
        self.handed = len(built)
        if fresh:
            todo, selected = checks_to_run(
                self.context, self.judge.rules, self.judge.keys, fresh, self.windows
            )
            self.selected |= selected
            self.judge.recall(self.context.instance, todo)  # any not recalled up front
            for uid in todo:
                self.models.append(uid)
                self.inbox.put(uid)
        yield from self._ready(block=False)

    def finish(self, built: Sequence[str]) -> tuple[list, list[str]]:
        """Once dbt has exited: the verdicts not yet yielded (as the step reports them), and
        the built models left to validate the usual way (the thread failed before them)."""
        pending = list(self.take(built)) if not self.closed else []
        self.close()
        self.thread.join()
        pending += list(self._ready(block=False))
        release_adapter(self.adapter)
        for warning in self.judge.warnings:
            self.context.log.warning(warning)
        if self.failure is not None:
            self.context.log.warning(f"validation beside dbt stopped: {self.failure}")
        left = [uid for uid in self.models if uid not in self.judged]
        failed = sum(not r.passed for r in self.results)
        self.context.log.info(
            f"validated {len(self.judged)} model(s) while dbt built them: {failed} check(s) failed"
        )
        return pending, left

    def close(self) -> None:
        """The thread ends after what it was handed (the step stopped early, or dbt is done);
        `finish` may follow."""
        if not self.closed:
            self.closed = True
            self.inbox.put(DONE)

    def _ready(self, block: bool) -> Iterator:
        while True:
            try:
                uid, evaluations = self.outbox.get(block=block)
            except queue.Empty:
                return
            self.judged.add(uid)
            out = list(reported(self.context, evaluations, self.selected))
            self.results += out
            yield from out

    def _work(self) -> None:
        try:
            with self.adapter.connection_named("rescue_validation_alongside"):
                while (uid := self.inbox.get()) is not DONE:
                    try:
                        self.outbox.put((uid, self.judge.judge(uid)))
                    finally:
                        # nothing kept open between models: no lock held while dbt builds
                        end_transaction(self.adapter)
        except BaseException as e:  # the models not judged are validated after dbt
            self.failure = e
