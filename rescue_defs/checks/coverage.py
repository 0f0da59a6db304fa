"""Late rows outside an incremental model's window: what its runs never restated.

An incremental model on a calendar window (`meta.rescue.cadence: monthly | weekly`) restates
only its window on each run. A row that lands after the window has moved past the row's date
(a return of a 50-day-old order) is never picked up: the period stays wrong, every count and
date check passes. So each build records, per upstream source, how far it had read
(`max(loaded_at_field)`, the watermark) and the rows it missed: rows landed since the previous
build's watermark, dated before this build's window. Missed rows carry forward from build to
build until a full refresh; planning adds the rows landed since the last build that the next
run's window would miss, and advises a full refresh (or a window backfill) when there are any.

Pure Python (no Dagster): the SQL, the records and their arithmetic.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from rescue_defs.checks.rules import (
    MAX_DATE_CHECK,
    ROW_COUNT_CHECK,
    Relation,
    _infer_date_column,
    quote,
)
from rescue_defs.checks.upstream import upstream_sources
from rescue_defs.planning.advice import rescue_meta, window_start

COVERAGE_CHECK = "window_covers_late_rows"
VALIDATION_CHECKS = (ROW_COUNT_CHECK, MAX_DATE_CHECK, COVERAGE_CHECK)
"""The checks this package computes (not dbt tests): rescue runs evaluate them unplanned."""


@dataclass(frozen=True)
class DatedSource:
    """An upstream source whose rows say when they landed and which business day they are."""

    unique_id: str
    name: str
    relation: Relation
    loaded_at_field: str
    date_column: str

    def watermark_sql(self) -> str:
        return f"select max({quote(self.loaded_at_field)}) from {self.relation.sql()}"

    def late_sql(self, placeholder: str, since: bool) -> str:
        """min/max business date and count of rows landed in (since, through], dated before a
        day; `since` False: everything landed through the watermark."""
        loaded, day = quote(self.loaded_at_field), f"cast({quote(self.date_column)} as date)"
        lower = f"{loaded} > {placeholder} and " if since else ""
        return (
            f"select min({day}), max({day}), count(*) from {self.relation.sql()} "
            f"where {lower}{loaded} <= {placeholder} and {day} < {placeholder}"
        )


@dataclass(frozen=True)
class WindowRule:
    unique_id: str
    name: str
    cadence: str
    sources: tuple[DatedSource, ...]
    undated: tuple[str, ...] = ()
    """Upstream sources with a loaded_at_field but no date column: their late rows cannot be
    dated (named in the check's description)."""

    def window_start(self, latest: date) -> date | None:
        """First day a normal run restates when the model's latest date is `latest`."""
        return window_start({"config": {"meta": {"rescue": {"cadence": self.cadence}}}}, latest)


@dataclass(frozen=True)
class Late:
    """Rows dated [first, last] that landed after the model's window had moved past them."""

    first: date
    last: date
    rows: int

    def __or__(self, other: "Late | None") -> "Late":
        if other is None:
            return self
        first, last = min(self.first, other.first), max(self.last, other.last)
        return Late(first, last, self.rows + other.rows)

    def describe(self) -> str:
        span = str(self.first) if self.first == self.last else f"{self.first}..{self.last}"
        return f"{self.rows} row(s) dated {span}"

    def to_meta(self) -> dict[str, Any]:
        return {"late_first": str(self.first), "late_last": str(self.last), "late_rows": self.rows}

    @staticmethod
    def from_meta(meta: Mapping[str, Any]) -> "Late | None":
        if not meta.get("late_rows"):
            return None
        return Late(
            date.fromisoformat(str(meta["late_first"])),
            date.fromisoformat(str(meta["late_last"])),
            int(meta["late_rows"]),
        )


def combine(*parts: "Late | None") -> Late | None:
    found = [p for p in parts if p is not None]
    if not found:
        return None
    out = found[0]
    for part in found[1:]:
        out = out | part
    return out


def _rescue_meta(source: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = (source.get("config") or {}).get("meta") or source.get("meta") or {}
    return meta.get("rescue") or {}


def _source_date_column(source: Mapping[str, Any]) -> str | None:
    """`meta.rescue.date_column` (null: the source has no business date), else the one
    column that looks like a date."""
    rescue = _rescue_meta(source)
    if "date_column" in rescue:
        return rescue["date_column"] or None
    return _infer_date_column(source)[0]


def window_rules(manifest: Mapping[str, Any]) -> dict[str, WindowRule]:
    """unique_id -> rule, for every incremental model on a calendar window."""
    from rescue_defs.checks.rules import _relation, default_database

    default_db = default_database(manifest)
    dated: dict[str, DatedSource | None] = {}
    for uid, source in manifest.get("sources", {}).items():
        loaded = source.get("loaded_at_field") or (source.get("config") or {}).get(
            "loaded_at_field"
        )
        column = _source_date_column(source) if loaded else None
        dated[uid] = (
            DatedSource(
                uid,
                f"{source['source_name']}.{source['name']}",
                _relation(source, default_db),
                loaded,
                column,
            )
            if loaded and column
            else None
        )
    rules = {}
    for uid, node in manifest["nodes"].items():
        config = node.get("config") or {}
        if node.get("resource_type") != "model" or config.get("materialized") != "incremental":
            continue
        cadence = rescue_meta(node).get("cadence")
        if cadence not in ("monthly", "weekly"):
            continue
        upstream = upstream_sources(manifest, uid)
        rules[uid] = WindowRule(
            uid,
            node["name"],
            cadence,
            tuple(d for s in upstream if (d := dated.get(s)) is not None),
            tuple(
                sorted(
                    f"{manifest['sources'][s]['source_name']}.{manifest['sources'][s]['name']}"
                    for s in upstream
                    if dated.get(s) is None
                    and "date_column" not in _rescue_meta(manifest["sources"][s])
                    and (
                        manifest["sources"][s].get("loaded_at_field")
                        or (manifest["sources"][s].get("config") or {}).get("loaded_at_field")
                    )
                )
            ),
        )
    return rules


def parse_watermarks(meta: Mapping[str, Any]) -> dict[str, datetime]:
    raw = meta.get("source_watermarks") or {}
    return {k: datetime.fromisoformat(v) for k, v in raw.items() if v}


def late_row(values: tuple) -> Late | None:
    """A (min, max, count) row of `late_sql` as Late, None when no row."""
    first, last, rows = (tuple(values) + (None, None, 0))[:3]
    if not rows or first is None:
        return None
    as_date = lambda v: v.date() if isinstance(v, datetime) else v  # noqa: E731
    return Late(as_date(first), as_date(last), int(rows))


def coverage_verdict(
    rule: WindowRule,
    query,
    previous: Mapping[str, Any] | None,
    full_refresh: bool,
    model_max: date | None,
    placeholder: str,
):
    """This build's record: watermarks now, and the late rows it (and the builds before it
    since the last full refresh) never restated. `query(sql, params) -> row tuple` runs on
    the warehouse right after the build; `previous` is the last build's check metadata;
    `model_max` the model's latest date now (the next build's window is counted from it, as
    the model's own `is_incremental()` filter does)."""
    from rescue_defs.checks.rules import Verdict

    marks: dict[str, datetime | None] = {}
    for source in rule.sources:
        (marks[source.unique_id],) = (tuple(query(source.watermark_sql(), [])) or (None,))[:1]
    # this build restated from the window of the model's latest date before it
    before_max = (previous or {}).get("model_max_date")
    window = rule.window_start(date.fromisoformat(before_max)) if before_max else None
    meta: dict[str, Any] = {
        "window_start": str(window) if window else "",
        "model_max_date": str(model_max) if model_max else "",
        "source_watermarks": {k: v.isoformat() if v else None for k, v in marks.items()},
    }
    late = None
    if full_refresh:
        basis = "full refresh: every period rebuilt"
    elif previous is None:
        basis = "first recorded build: late rows are tracked from here"
    else:
        basis = "incremental build"
        before = parse_watermarks(previous)
        missed = None
        for source in rule.sources:
            now = marks[source.unique_id]
            if now is None or window is None:
                continue
            since = before.get(source.unique_id)
            params = [p for p in (since, now, window) if p is not None]
            row = query(source.late_sql(placeholder, since is not None), params)
            missed = combine(missed, late_row(row))
        late = combine(Late.from_meta(previous), missed)
    undated = f"; not dated, so not covered: {', '.join(rule.undated)}" if rule.undated else ""
    meta["basis"] = basis
    if late is None:
        return Verdict(
            True,
            f"no row landed late for a period before its {rule.cadence} window"
            + (f" (from {window})" if window else "")
            + f" since the last full refresh ({basis}){undated}",
            meta,
            "passed",
        )
    meta.update(late.to_meta())
    sources = ", ".join(s.name for s in rule.sources)
    return Verdict(
        False,
        f"{late.describe()} landed in {sources} after its {rule.cadence} window had moved past "
        f"them (this run's window from {window}): those periods were never restated; rebuild "
        f"with a full refresh (or backfill {late.first}..{late.last}){undated}",
        meta,
        "failed",
    )
