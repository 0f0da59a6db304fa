"""Rows landed late for periods before an incremental model's window, for planning.

Two parts: what the model's builds already missed (carried in its `window_covers_late_rows`
check, read from the event log), and what landed since its last build that the next normal
run would miss (measured in the warehouse now, read-only). See `checks.coverage`.
"""

import dataclasses
from collections.abc import Mapping
from datetime import date, datetime

import dagster as dg

from rescue_defs.checks.coverage import (
    COVERAGE_CHECK,
    Late,
    combine,
    late_row,
    parse_watermarks,
    window_rules,
)
from rescue_defs.checks.history import previous_metadata
from rescue_defs.planning.manifest import DbtManifest

FAR_FUTURE = datetime(9999, 12, 31)


def late_rows(
    instance: dg.DagsterInstance,
    manifest: DbtManifest,
    keys: Mapping[str, dg.AssetKey],
    today: date,
    models: frozenset[str] | None = None,
    adapter=None,
) -> tuple[dict[str, Late] | None, str]:
    """(late rows per windowed model, "") or (None, why they could not be measured), read
    through `adapter` (an open dbt adapter, rescue_defs.warehouse_reader)."""
    windows = {
        uid: rule
        for uid, rule in window_rules(manifest.raw).items()
        if uid in keys and (models is None or uid in models)
    }
    if not windows:
        return {}, ""
    records = {
        uid: previous_metadata(instance, dg.AssetCheckKey(keys[uid], COVERAGE_CHECK))
        for uid in windows
    }
    if adapter is None:
        return None, "not measured: no warehouse connection"
    from rescue_defs.warehouse_reader import placeholder, query

    mark = placeholder(adapter)
    found: dict[str, Late] = {}
    try:
        for uid, rule in windows.items():
            record = records[uid]
            if record is None:
                continue  # never validated here: its first recorded build starts the tracking
            marks = parse_watermarks(record)
            # the next normal run restates from the window of the model's latest date
            latest = record.get("model_max_date")
            first = rule.window_start(date.fromisoformat(latest) if latest else today)
            pending = None
            for source in rule.sources:
                since = marks.get(source.unique_id)
                # the connection's own catalog: the file may not carry the manifest's name
                local = dataclasses.replace(
                    source, relation=dataclasses.replace(source.relation, database=None)
                )
                params = [p for p in (since, FAR_FUTURE, first) if p is not None]
                rows = query(adapter, local.late_sql(mark, since is not None), params)
                pending = combine(pending, late_row(tuple(rows[0]) if rows else ()))
            late = combine(Late.from_meta(record), pending)
            if late is not None:
                found[uid] = late
    except Exception as e:
        return None, f"query failed: {str(e).strip().splitlines()[0][:300]}"
    return found, ""
