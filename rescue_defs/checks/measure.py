"""Measuring rebuilt models in the warehouse and judging them: one query per model (count and
max date together) through dbt's adapter, any adapter dbt supports, judged against the model's
rule and what the instance remembers of its last checks.

A Judge asks the instance before it queries (`recall`), so that its queries may run on a
thread of their own (checks/alongside.py) while the step's thread stores events."""

from collections.abc import Iterable, Mapping
from datetime import datetime
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

# DB-API drivers name types differently: psycopg gives type OIDs, DuckDB type names
_TYPE_OIDS = {1082: "date", 1114: "timestamp", 1184: "timestamptz"}


def result(
    key: dg.AssetKey, name: str, rule: ModelRule, verdict: Verdict
) -> dg.AssetCheckEvaluation:
    """A verdict as an evaluation, reported as an output only where the run planned the check
    (verdicts.py); a check that measured nothing is a warning, never green and never
    blocking."""
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


def end_transaction(adapter) -> None:
    """End the driver's own transaction on this thread's connection. psycopg2 opens one at the
    first statement though dbt's connection says none is open: after a failed statement
    PostgreSQL refuses every next one ("current transaction is aborted": one unreadable
    source failed every model's checks), and a reader's open transaction keeps its locks
    while dbt builds. A driver without transactions has nothing to end."""
    connection = adapter.connections.get_if_exists()
    try:
        connection.handle.rollback()
    except Exception:
        pass


def _query(adapter, sql: str, params: list | None = None) -> tuple:
    try:
        _, cursor = adapter.connections.add_query(sql, auto_begin=False, bindings=params or None)
        return tuple(cursor.fetchone() or ())
    except Exception:
        end_transaction(adapter)
        raise


class Judge:
    """Measures and judges models one by one on the adapter's connection of the calling thread
    (open one with `adapter.connection_named`)."""

    def __init__(
        self,
        adapter,
        rules: Mapping[str, ModelRule],
        keys: Mapping[str, dg.AssetKey],
        settings: Settings,
        windows: Mapping[str, WindowRule],
        full_refresh: frozenset[str],
    ):
        self.adapter, self.rules, self.keys = adapter, rules, keys
        self.settings, self.windows, self.full_refresh = settings, windows, full_refresh
        self.source_latest: dict[str, Any] = {}
        self.asked_sources: set[str] = set()
        self.warnings: list[str] = []  # for the step's log, from the step's thread
        self.previous_counts: dict[dg.AssetCheckKey, int | None] = {}
        self.previous_dates: dict[dg.AssetCheckKey, Any] = {}
        self.previous_coverage: dict[dg.AssetCheckKey, dict | None] = {}
        self.recalled: set[str] = set()

    def recall(self, instance: dg.DagsterInstance, uids: Iterable[str]) -> None:
        """What the instance remembers of these models' checks, read before they are judged
        (one query for the row counts of all of them, as before any rebuild)."""
        uids = [u for u in uids if u in self.rules and u not in self.recalled]
        self.recalled.update(uids)
        keys = self.keys
        self.previous_counts.update(
            previous_row_counts(
                instance, [dg.AssetCheckKey(keys[u], ROW_COUNT_CHECK) for u in uids]
            )
        )
        inferred = [u for u in uids if self.rules[u].date_column_from == "inferred"]
        self.previous_dates.update(
            previous_passing(
                instance, [dg.AssetCheckKey(keys[u], MAX_DATE_CHECK) for u in inferred], "max_date"
            )
        )
        for uid in uids:
            if uid in self.windows:
                key = dg.AssetCheckKey(keys[uid], COVERAGE_CHECK)
                self.previous_coverage[key] = previous_metadata(instance, key)

    def judge(self, uid: str) -> list[dg.AssetCheckEvaluation]:
        """The model's row-count and max-date evaluations (and its late-row one when it has a
        window); a query that fails is a failed check, never a pass."""
        rule, key = self.rules[uid], self.keys[uid]
        self._ask_sources(rule)
        inferred = rule.date_column_from == "inferred"
        try:
            if inferred:
                candidates = rule.date_candidates or self._warehouse_dates(rule)
                count, *values = _query(self.adapter, stats_sql(rule, candidates))
                dates = dict(zip(candidates, values, strict=True))
            else:
                count, latest = _query(self.adapter, stats_sql(rule))
        except Exception as e:
            failed = Verdict(False, f"{rule.name}: query failed: {e}", {}, "failed")
            return [
                result(key, ROW_COUNT_CHECK, rule, failed),
                result(key, MAX_DATE_CHECK, rule, failed),
            ]
        previous = self.previous_counts.get(dg.AssetCheckKey(key, ROW_COUNT_CHECK))
        out = [result(key, ROW_COUNT_CHECK, rule, row_count_verdict(rule, count, previous))]
        if inferred:
            before = self.previous_dates.get(dg.AssetCheckKey(key, MAX_DATE_CHECK))
            verdict = inferred_date_verdict(rule, count, dates, before, self.settings)
            chosen = verdict.metadata.get("date_column")
            latest = dates.get(chosen) if chosen else None
        else:
            expected: Expected | None = (
                expected_date(rule, self.settings, self.source_latest) if rule.date_column else None
            )
            verdict = max_date_verdict(rule, count, latest, expected, self.settings)
        out.append(result(key, MAX_DATE_CHECK, rule, verdict))
        if uid in self.windows:
            out.append(self._coverage(rule, key, self.windows[uid], latest))
        return out

    def _ask_sources(self, rule: ModelRule) -> None:
        """The latest load of each upstream source, asked once (the expected date)."""
        for source in rule.sources:
            if source.unique_id in self.asked_sources:
                continue
            self.asked_sources.add(source.unique_id)
            try:
                self.source_latest[source.unique_id] = _query(self.adapter, source_sql(source))[0]
            except Exception as e:  # a missing source table must not hide the model checks
                self.warnings.append(f"latest load of {source.name}: {e}")

    def _warehouse_dates(self, rule: ModelRule) -> tuple[str, ...]:
        """Undocumented columns: the relation's own, from the driver's cursor description of an
        empty select (any DB-API driver has one; no catalog macro, no extra connection)."""
        try:
            _, cursor = self.adapter.connections.add_query(
                f"select * from {rule.relation.sql()} where 1 = 0", auto_begin=False
            )
            cursor.fetchall()
        except Exception:
            end_transaction(self.adapter)
            raise
        columns = [
            (d[0], _TYPE_OIDS.get(d[1], str(d[1])) if d[1] is not None else "")
            for d in cursor.description or ()
        ]
        return columns_looking_like_dates(columns)

    def _coverage(self, rule, key, window, latest) -> dg.AssetCheckEvaluation:
        # bound parameters in the adapter's own style (DuckDB `?`, psycopg `%s`)
        from rescue_defs.warehouse_reader import placeholder as bound

        adapter = self.adapter

        def query(sql: str, params: list) -> tuple:
            return _query(adapter, sql, params)

        previous = self.previous_coverage.get(dg.AssetCheckKey(key, COVERAGE_CHECK))
        try:
            verdict = coverage_verdict(
                window,
                query,
                previous,
                rule.unique_id in self.full_refresh,
                latest.date() if isinstance(latest, datetime) else latest,
                bound(adapter),
            )
        except Exception as e:
            verdict = Verdict(False, f"{rule.name}: late-row query failed: {e}", {}, "failed")
        return result(key, COVERAGE_CHECK, rule, verdict)
