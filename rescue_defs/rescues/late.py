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
from rescue_defs.checks.validation import previous_metadata
from rescue_defs.planning.manifest import DbtManifest

FAR_FUTURE = datetime(9999, 12, 31)


def _duckdb_reader(manifest: DbtManifest):
    """A read-only connection to the bundled DuckDB warehouse, or (None, why not)."""
    import duckdb

    from rescue_defs.project import warehouse_path

    adapter = manifest.raw.get("metadata", {}).get("adapter_type")
    if adapter != "duckdb":
        return None, f"not measured on {adapter or 'this'} adapter before launch"
    path = warehouse_path()
    if not path.exists():
        return None, f"warehouse {path} does not exist yet"
    try:
        return duckdb.connect(str(path), read_only=True), ""
    except duckdb.Error as e:
        # DuckDB names the process holding the file: say who, not just "locked"
        return None, "warehouse busy: " + str(e).splitlines()[0][:300]


def late_rows(
    instance: dg.DagsterInstance,
    manifest: DbtManifest,
    keys: Mapping[str, dg.AssetKey],
    today: date,
    models: frozenset[str] | None = None,
) -> tuple[dict[str, Late] | None, str]:
    """(late rows per windowed model, "") or (None, why they could not be measured)."""
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
    conn, why = _duckdb_reader(manifest)
    if conn is None:
        return None, why
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
                row = conn.execute(local.late_sql("?", since is not None), params).fetchone()
                pending = combine(pending, late_row(tuple(row or ())))
            late = combine(Late.from_meta(record), pending)
            if late is not None:
                found[uid] = late
    except Exception as e:
        return None, f"query failed: {str(e).splitlines()[0][:300]}"
    finally:
        conn.close()
    return found, ""
