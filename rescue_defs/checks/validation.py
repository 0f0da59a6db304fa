"""Row-count and max-date checks of dbt models, run inside the dbt step once dbt has exited.

Why inside the dbt step: DuckDB allows one writer process and refuses even readers while dbt
writes, so a separate check step or connection could race a running dbt; a separate step
would also cost a process start under the multiprocess executor. After dbt exits, the step
queries each rebuilt model once (count and max date together) through the dbt adapter that
dagster-dbt already built for the step (read-only on DuckDB), so any dbt adapter works.
"""

import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime
from typing import Any

import dagster as dg

from rescue_defs.checks.coverage import COVERAGE_CHECK, WindowRule, coverage_verdict
from rescue_defs.checks.history import previous_metadata, previous_passing, previous_row_counts
from rescue_defs.checks.judgement import (
    Expected,
    expected_date,
    inferred_date_verdict,
    max_date_verdict,
    row_count_verdict,
)
from rescue_defs.checks.rules import (
    MAX_DATE_CHECK,
    ROW_COUNT_CHECK,
    ModelRule,
    Settings,
    Verdict,
    columns_looking_like_dates,
    source_sql,
    stats_sql,
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


def _query(adapter, sql: str) -> tuple:
    _, cursor = adapter.connections.add_query(sql, auto_begin=False)
    return tuple(cursor.fetchone() or ())


def _result(
    key: dg.AssetKey, name: str, rule: ModelRule, verdict: Verdict
) -> dg.AssetCheckEvaluation:
    # an evaluation, reported as an output only where the run planned the check (verdicts.py)
    # a check that measured nothing is a warning, never green and never blocking
    blocking = rule.blocking and verdict.status != "not configured"
    severity = dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN
    metadata: dict[str, Any] = {**verdict.metadata, "status": verdict.status}
    return dg.AssetCheckEvaluation(
        asset_key=key,
        check_name=name,
        passed=verdict.passed,
        severity=severity,
        description=verdict.description,
        metadata=metadata,
    )


def blocking_failures(results: Iterable[dg.AssetCheckEvaluation]) -> list[str]:
    return [
        f"{r.asset_key.to_user_string()}: {r.check_name}: {r.description}"
        for r in results
        if not r.passed and r.severity == dg.AssetCheckSeverity.ERROR
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
    """A row-count and a max-date result for each built model whose checks are selected.
    The caller fails the step when a blocking one failed (see `blocking_failures`)."""
    # Rescue stage runs validate every model they build without planning these checks: a
    # planned check is one more stored event each, and storing events is most of what checks
    # cost a large rescue (bench/check_overhead_bench.py). Other runs follow their selection.
    always = RESCUE_TAG in context.run.tags
    selected = context.selected_asset_check_keys
    if always:
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
    if not todo:
        return
    started = time.perf_counter()
    settings = resource.settings()
    results: list[dg.AssetCheckEvaluation] = []
    # a source query per upstream source, then one query per model (count and max together)
    if not resource.enabled or adapter is None:
        why = "validation turned off" if not resource.enabled else "no dbt adapter in this step"
        for uid in todo:
            off = Verdict(True, f"not run: {why}", {}, "not configured")
            for name in (ROW_COUNT_CHECK, MAX_DATE_CHECK, COVERAGE_CHECK):
                if name != COVERAGE_CHECK or uid in (windows or {}):
                    results.append(_result(keys[uid], name, rules[uid], off))
    else:
        try:
            results = list(
                _query_and_judge(
                    context, adapter, rules, keys, todo, settings, windows or {}, full_refresh
                )
            )
        finally:
            release_adapter(adapter)
    elapsed = time.perf_counter() - started
    failed = sum(not r.passed for r in results)
    context.log.info(f"validated {len(todo)} model(s) in {elapsed:.2f} s: {failed} check(s) failed")
    planned = context.selected_asset_check_keys
    for result in results:
        if dg.AssetCheckKey(result.asset_key, result.check_name) in selected:
            yield emitted(result, planned)


def _query_and_judge(
    context, adapter, rules, keys, todo, settings, windows, full_refresh
) -> Iterator[dg.AssetCheckEvaluation]:
    source_latest: dict[str, Any] = {}
    with adapter.connection_named("rescue_validation"):
        for source in {s for uid in todo for s in rules[uid].sources}:
            try:
                source_latest[source.unique_id] = _query(adapter, source_sql(source))[0]
            except Exception as e:  # a missing source table must not hide the model checks
                context.log.warning(f"latest load of {source.name}: {e}")
        previous_counts = previous_row_counts(
            context.instance, [dg.AssetCheckKey(keys[uid], ROW_COUNT_CHECK) for uid in todo]
        )
        inferred = [uid for uid in todo if rules[uid].date_column_from == "inferred"]
        previous_dates = previous_passing(
            context.instance,
            [dg.AssetCheckKey(keys[uid], MAX_DATE_CHECK) for uid in inferred],
            "max_date",
        )
        for uid in todo:
            rule = rules[uid]
            key = keys[uid]
            try:
                if uid in inferred:
                    candidates = rule.date_candidates or _warehouse_dates(adapter, rule)
                    count, *values = _query(adapter, stats_sql(rule, candidates))
                    dates = dict(zip(candidates, values, strict=True))
                else:
                    count, latest = _query(adapter, stats_sql(rule))
            except Exception as e:
                failed = Verdict(False, f"{rule.name}: query failed: {e}", {}, "failed")
                yield _result(key, ROW_COUNT_CHECK, rule, failed)
                yield _result(key, MAX_DATE_CHECK, rule, failed)
                continue
            previous = previous_counts[dg.AssetCheckKey(key, ROW_COUNT_CHECK)]
            yield _result(key, ROW_COUNT_CHECK, rule, row_count_verdict(rule, count, previous))
            if uid in inferred:
                before = previous_dates[dg.AssetCheckKey(key, MAX_DATE_CHECK)]
                verdict = inferred_date_verdict(rule, count, dates, before, settings)
                chosen = verdict.metadata.get("date_column")
                latest = dates.get(chosen) if chosen else None
            else:
                expected: Expected | None = (
                    expected_date(rule, settings, source_latest) if rule.date_column else None
                )
                verdict = max_date_verdict(rule, count, latest, expected, settings)
            yield _result(key, MAX_DATE_CHECK, rule, verdict)
            if uid in windows:
                yield _coverage(context, adapter, rule, key, windows[uid], latest, full_refresh)


# DB-API drivers name types differently: psycopg gives type OIDs, DuckDB type names
_TYPE_OIDS = {1082: "date", 1114: "timestamp", 1184: "timestamptz"}


def _warehouse_dates(adapter, rule: ModelRule) -> tuple[str, ...]:
    """Undocumented columns: the relation's own, from the driver's cursor description of an
    empty select (any DB-API driver has one; no catalog macro, no extra connection)."""
    _, cursor = adapter.connections.add_query(
        f"select * from {rule.relation.sql()} where 1 = 0", auto_begin=False
    )
    cursor.fetchall()
    columns = [
        (d[0], _TYPE_OIDS.get(d[1], str(d[1])) if d[1] is not None else "")
        for d in cursor.description or ()
    ]
    return columns_looking_like_dates(columns)


def _coverage(context, adapter, rule, key, window, latest, full_refresh):
    # bound parameters in the adapter's own style (DuckDB `?`, psycopg `%s`)
    from rescue_defs.warehouse_reader import placeholder as bound

    placeholder = bound(adapter)

    def query(sql: str, params: list) -> tuple:
        _, cursor = adapter.connections.add_query(sql, auto_begin=False, bindings=params or None)
        return tuple(cursor.fetchone() or ())

    previous = previous_metadata(context.instance, dg.AssetCheckKey(key, COVERAGE_CHECK))
    try:
        verdict = coverage_verdict(
            window,
            query,
            previous,
            rule.unique_id in full_refresh,
            latest.date() if isinstance(latest, datetime) else latest,
            placeholder,
        )
    except Exception as e:
        verdict = Verdict(False, f"{rule.name}: late-row query failed: {e}", {}, "failed")
    return _result(key, COVERAGE_CHECK, rule, verdict)
