"""Row-count and max-date checks of dbt models, run inside the dbt step once dbt has exited.

Why inside the dbt step: DuckDB allows one writer process and refuses even readers while dbt
writes, so a separate check step or connection could race a running dbt; a separate step
would also cost a process start under the multiprocess executor. After dbt exits, the step
queries each rebuilt model once (count and max date together) through the dbt adapter that
dagster-dbt already built for the step (read-only on DuckDB), so any dbt adapter works.
"""

import sys
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from datetime import date

import dagster as dg

from rescue_defs.checks.coverage import COVERAGE_CHECK, WindowRule
from rescue_defs.checks.measure import Judge, result
from rescue_defs.checks.rules import (
    MAX_DATE_CHECK,
    ROW_COUNT_CHECK,
    ModelRule,
    Settings,
    Verdict,
)
from rescue_defs.checks.verdicts import emitted

RESCUE_TAG = "rescue/id"  # rescue_defs.rescues.TAG_ID (rescues imports this package's users)


class ValidationResource(dg.ConfigurableResource):
    """How rebuilt models are validated (defaults; each model's `meta.rescue` overrides)."""

    business_timezone: str = "UTC"
    warehouse_timezone: str = "UTC"
    today: str = ""
    """ISO date to use as today in the business timezone; empty for the clock."""
    expected_date: str = "sources"
    max_lag_days: int = 1
    max_drop: float = 0.5
    enabled: bool = True
    """False skips the queries (the checks then report that they were turned off)."""

    def settings(self) -> Settings:
        return Settings(
            business_timezone=self.business_timezone,
            warehouse_timezone=self.warehouse_timezone,
            today=date.fromisoformat(self.today) if self.today else None,
            expected_date=self.expected_date,
            max_lag_days=self.max_lag_days,
            max_drop=self.max_drop,
        )


def check_specs(
    rules: Mapping[str, ModelRule],
    keys: Mapping[str, dg.AssetKey],
    windows: Mapping[str, WindowRule] | None = None,
) -> list[dg.AssetCheckSpec]:
    # one string for each distinct description (interned), not one per check: thousands of
    # models share a handful of them, and every code server and run worker holds them all
    specs = []
    for uid, window in (windows or {}).items():
        if uid in keys and uid in rules:
            specs.append(
                dg.AssetCheckSpec(
                    COVERAGE_CHECK,
                    asset=keys[uid],
                    blocking=rules[uid].blocking,
                    description=sys.intern(
                        f"No row landed after its {window.cadence} window had moved past the "
                        "row's date since the last full refresh (such periods are never "
                        "restated by an incremental run)."
                    ),
                )
            )
    for uid, rule in rules.items():
        if uid not in keys:
            continue
        level = "blocking" if rule.blocking else "warning"
        specs.append(
            dg.AssetCheckSpec(
                ROW_COUNT_CHECK,
                asset=keys[uid],
                blocking=rule.blocking,
                description=sys.intern(
                    f"Not empty, no unexpected drop against the last passing check ({level})."
                ),
            )
        )
        if rule.date_column:
            date_part = (
                f"max({rule.date_column}) within {rule.max_lag_days} day(s) of the expected date"
            )
        elif rule.date_column_from == "inferred":
            date_part = (
                "the latest of its date-like columns, not behind the last validated build "
                "(a warning, 'not measured', when no such column has a value)"
            )
        else:
            date_part = "off (meta.rescue.date_column: null)"
        specs.append(
            dg.AssetCheckSpec(
                MAX_DATE_CHECK,
                asset=keys[uid],
                blocking=rule.blocking,
                description=sys.intern(f"{date_part} ({level})."),
            )
        )
    return specs


def release_adapter(adapter) -> None:
    adapter.cleanup_connections()
    # dbt-duckdb keeps its database open between connections (keep_open); a read-only handle
    # left in this process would stop the next dbt run from writing, so close it
    environment = getattr(type(adapter.connections), "_ENV", None)
    if environment is not None and hasattr(environment, "close"):
        environment.close()


def blocking_failures(results: Iterable[dg.AssetCheckEvaluation]) -> list[str]:
    return [
        f"{r.asset_key.to_user_string()}: {r.check_name}: {r.description}"
        for r in results
        if not r.passed and r.severity == dg.AssetCheckSeverity.ERROR
    ]


def checks_to_run(
    context: dg.AssetExecutionContext,
    rules: Mapping[str, ModelRule],
    keys: Mapping[str, dg.AssetKey],
    built: Iterable[str],
    windows: Mapping[str, WindowRule] | None = None,
) -> tuple[list[str], AbstractSet[dg.AssetCheckKey]]:
    """The built models to validate, and the checks to report: the run's selection, and in a
    rescue's stage runs every check of every model they build. Rescue stage runs do not plan
    these checks: a planned check is one more stored event each, and storing events is most
    of what checks cost a large rescue (bench/check_overhead_bench.py)."""
    selected = context.selected_asset_check_keys
    if RESCUE_TAG in context.run.tags:
        selected = selected | {
            dg.AssetCheckKey(keys[uid], name)
            for uid in built
            if uid in rules
            for name in (ROW_COUNT_CHECK, MAX_DATE_CHECK, COVERAGE_CHECK)
            if name != COVERAGE_CHECK or uid in (windows or {})
        }
    todo = [
        uid
        for uid in built
        if uid in rules
        and (
            dg.AssetCheckKey(keys[uid], ROW_COUNT_CHECK) in selected
            or dg.AssetCheckKey(keys[uid], MAX_DATE_CHECK) in selected
        )
    ]
    return todo, selected


def reported(
    context: dg.AssetExecutionContext,
    results: Iterable[dg.AssetCheckEvaluation],
    selected: Collection[dg.AssetCheckKey],
) -> Iterator:
    """What the step yields of these results: the selected checks, each as verdicts.py says."""
    planned = context.selected_asset_check_keys
    for r in results:
        if dg.AssetCheckKey(r.asset_key, r.check_name) in selected:
            yield emitted(r, planned)


def turned_off(
    rules: Mapping[str, ModelRule],
    keys: Mapping[str, dg.AssetKey],
    todo: Iterable[str],
    why: str,
    windows: Mapping[str, WindowRule] | None = None,
) -> list[dg.AssetCheckEvaluation]:
    off = Verdict(True, f"not run: {why}", {}, "not configured")
    return [
        result(keys[uid], name, rules[uid], off)
        for uid in todo
        for name in (ROW_COUNT_CHECK, MAX_DATE_CHECK, COVERAGE_CHECK)
        if name != COVERAGE_CHECK or uid in (windows or {})
    ]


def validate(
    context: dg.AssetExecutionContext,
    adapter,
    rules: Mapping[str, ModelRule],
    keys: Mapping[str, dg.AssetKey],
    built: Iterable[str],
    resource: ValidationResource,
    windows: Mapping[str, WindowRule] | None = None,
    full_refresh: frozenset[str] = frozenset(),
) -> Iterator[dg.AssetCheckEvaluation]:
    """A row-count and a max-date result for each built model whose checks are selected,
    measured once dbt has exited. The caller fails the step when a blocking one failed (see
    `blocking_failures`)."""
    todo, selected = checks_to_run(context, rules, keys, built, windows)
    if not todo:
        return
    started = time.perf_counter()
    if not resource.enabled or adapter is None:
        why = "validation turned off" if not resource.enabled else "no dbt adapter in this step"
        results = turned_off(rules, keys, todo, why, windows)
    else:
        # a source query per upstream source, then one query per model (count and max together)
        judge = Judge(adapter, rules, keys, resource.settings(), windows or {}, full_refresh)
        judge.recall(context.instance, todo)
        try:
            with adapter.connection_named("rescue_validation"):
                results = [r for uid in todo for r in judge.judge(uid)]
        finally:
            release_adapter(adapter)
        for warning in judge.warnings:
            context.log.warning(warning)
    elapsed = time.perf_counter() - started
    failed = sum(not r.passed for r in results)
    context.log.info(f"validated {len(todo)} model(s) in {elapsed:.2f} s: {failed} check(s) failed")
    yield from reported(context, results, selected)
