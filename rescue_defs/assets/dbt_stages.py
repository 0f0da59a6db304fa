"""How the dbt_models step goes through a rescue's stages: each stage's dbt (dbt_build.py),
then its validation; a stage that failed in dbt or in a blocking check ends the step before
the next starts (the playbook's upstream -> target -> downstream, gated in one run)."""

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt.errors import DagsterDbtCliRuntimeError

from rescue_defs.assets.dbt_build import Build, remove_run_folders
from rescue_defs.checks.alongside import Alongside
from rescue_defs.checks.proof import PROOF_CHECK
from rescue_defs.checks.validation import blocking_failures, validate
from rescue_defs.sandbox import TARGET as SANDBOX_TARGET


def build_in_stages(
    build: Build,
    stages: Sequence[tuple[str, frozenset[str]]],
    full_refresh: frozenset[str],
    validation_args: Mapping[str, Any],
    built_cleanly: Callable[[], None] | None = None,
    last_stage_starts: Callable[[], None] | None = None,
) -> Iterator:
    """Each stage's dbt, then its validation; a stage whose dbt failed or whose blocking checks
    failed ends the step before the next stage starts. Yields what the step reports; returns
    (by StopIteration) nothing: failures are raised. `last_stage_starts` is called once the
    last stage has built something (the proof's scratch build starts its dbt ahead there),
    `built_cleanly` once the last stage is built and validated with no blocking failure,
    before its results are stored (the proof's scratch build runs from there)."""
    whole = len(stages) == 1 and not full_refresh and not build.sandbox
    if not whole:  # each stage's and layer's dbt starts while the one before it runs
        build.line_up([a for _, m in stages for _, a in build.commands(m, full_refresh)])
    try:
        yield from _stages(
            build, stages, full_refresh, validation_args, built_cleanly, last_stage_starts
        )
    finally:
        if build.lineup is not None:
            remove_run_folders(build.lineup.close(), Path(build.project.project_dir))


def _stages(build, stages, full_refresh, validation_args, built_cleanly, last_stage_starts):
    context = build.context
    whole = len(stages) == 1 and not full_refresh and not build.sandbox
    # dagster-dbt's own selection names every selected check as a dbt test: a run with the
    # proof's checks selected builds the same with its own
    exact = any(c.name == PROOF_CHECK for c in context.selected_asset_check_keys)
    project_dir = Path(build.project.project_dir)
    observations: list = []
    for number, (name, models) in enumerate(stages, 1):
        last = number == len(stages)
        later = [n for n, _ in stages[number:]]
        if len(stages) > 1:
            context.log.info(
                f"stage {number}/{len(stages)} ({name}): {len(models)} model(s)"
                + (f"; then {', '.join(later)}" if later else "")
            )
        built: list[str] = []
        invocations: list = []
        error: DagsterDbtCliRuntimeError | None = None
        beside: Alongside | None | bool = None  # False: validated after dbt exits
        if last and last_stage_starts is not None and build.lineup and build.lineup.waiting:
            # once its dbt, started ahead, is under way (it imports nothing), the proof's may
            # import itself
            build.lineup.then, last_stage_starts = last_stage_starts, None
        try:
            if whole and exact:
                events = build.exact(models, built, invocations)
            elif whole:
                events = build.whole_selection(built, invocations)
            else:
                events = build.models(models, full_refresh, built, invocations)
            for event in events:
                if last and last_stage_starts is not None:
                    last_stage_starts()  # once it has built something (dbt_ahead.py)
                    last_stage_starts = None
                if not build.sandbox:
                    yield event
                    if beside is None and built and invocations:
                        # where the warehouse can be read while dbt writes, each model is
                        # validated as dbt reports it built (checks/alongside.py)
                        beside = (
                            Alongside.start(
                                context,
                                invocations[-1].adapter,
                                models,
                                keys=build.keys,
                                full_refresh=full_refresh,
                                **validation_args,
                            )
                            or False
                        )
                    if beside:
                        yield from beside.take(built)
        except DagsterDbtCliRuntimeError as e:
            error = e  # validate what did get built, then fail the step
        except BaseException:
            if beside:
                beside.close()  # the step stops here: so does the thread
            raise
        adapter = build.adapter(invocations) if (built or invocations) else None
        try:
            # the queries first (the warehouse is released after them), then the results
            pending, left = beside.finish(built) if beside else ([], built)
            after = list(
                validate(
                    context,
                    adapter,
                    keys=build.keys,
                    built=left,
                    full_refresh=full_refresh,
                    **validation_args,
                )
            )
            results = (beside.results if beside else []) + after
        finally:
            remove_run_folders(invocations, project_dir)
        if last and built_cleanly and error is None and not blocking_failures(results):
            built_cleanly()
        if not build.sandbox:
            yield from pending + after
        if build.sandbox:
            observations += list(_sandbox_observations(build, built, results))
        not_started = f" (not started: {', '.join(later)})" if later else ""
        if error is not None:
            yield from _end(build, observations)
            if later:
                context.log.error(f"stage {name} failed in dbt{not_started}")
            raise error
        blocked = blocking_failures(results)
        if build.sandbox:
            blocked += [
                f"{t.asset_key.to_user_string()}: dbt test {t.check_name} failed in the sandbox"
                for t in build.test_results()
                if not t.passed and t.severity == dg.AssetCheckSeverity.ERROR
            ]
        if blocked:
            yield from _end(build, observations)
            # what AssetCheckSpec(blocking=True) does for check outputs: the step fails
            where = f" in stage {name}{not_started}" if len(stages) > 1 else ""
            raise dg.Failure(
                f"{len(blocked)} blocking check(s) failed{where}:\n" + "\n".join(blocked),
                metadata={"failed_checks": len(blocked), "stage": name},
            )
    yield from _end(build, observations)


def _end(build: Build, observations: list) -> Iterator:
    """The dbt test results (once each, the last run of each) and, for a sandbox run, what it
    built as observations."""
    if build.sandbox:
        yield from observations
        return
    yield from build.test_results()
    build.tests.clear()


def _sandbox_observations(build: Build, built, results) -> Iterator:
    """What a sandbox run built, as observations: prod's history stays untouched."""
    reason = build.reason
    for uid in built:
        key = build.keys[uid]
        metadata: dict[str, Any] = {"sandbox": True, "dbt_target": SANDBOX_TARGET}
        if reason:
            metadata["reason"] = reason
        for r in (*results, *build.test_results()):
            if r.asset_key == key:
                verdict = "passed" if r.passed else "FAILED"
                text = getattr(r, "description", None) or ""
                metadata[r.check_name] = f"{verdict}: {text}".rstrip(": ")
        yield dg.AssetObservation(
            asset_key=key, description="built in the sandbox, not in prod", metadata=metadata
        )
