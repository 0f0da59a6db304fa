"""Refresh advice for incremental models: incremental, window backfill or full refresh, and why.

From the playbook: full refresh when the change invalidates history (logic, unique_key, a bug,
a new column backfilled from data that already exists upstream); not when only future rows
change, when the model's cadence will pick the change up, or when a targeted window backfill
of a large model is enough.
"""

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from rescue_defs.planning.manifest import DbtManifest

INCREMENTAL, WINDOW, FULL = "incremental", "window backfill", "full refresh"


@dataclass(frozen=True)
class Advice:
    kind: str
    reasons: tuple[str, ...]
    window: tuple[date, date] | None = None
    unseen: bool = False
    """Incremental on no evidence: what the model's filter reads is not visible here (no
    `meta.rescue` cadence, late rows not measured). Only the proof after the rescue can tell."""

    @property
    def full_refresh(self) -> bool:
        return self.kind == FULL


@dataclass(frozen=True)
class ChangeContext:
    """What else is known about the incident."""

    previous: DbtManifest | None = None
    """The manifest before the change (e.g. main before the merge); None: no code change."""
    changed_window: tuple[date, date] | None = None
    """The dates whose data changed (an outage's days, a bug's range), when known."""
    today: date | None = None
    heavy: frozenset[str] = field(default_factory=frozenset)
    late: Mapping[str, Any] | None = None
    """Per windowed model, the rows that landed after its window had moved past their date
    (`checks.coverage.Late`: first, last, rows), as measured; None: not measured."""


def rescue_meta(node: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = node.get("config", {}).get("meta") or node.get("meta") or {}
    return meta.get("rescue") or {}


def is_incremental(node: Mapping[str, Any]) -> bool:
    return node.get("config", {}).get("materialized") == "incremental"


def _norm_key(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else list(value)
    return tuple(sorted(v.strip().lower() for v in values))


def _code_lines(code: str) -> list[str]:
    lines = []
    for line in code.splitlines():
        line = re.sub(r"--.*$", "", line).strip().rstrip(",").strip()
        if line:
            lines.append(line.lower())
    return lines


def _sql_diff(old: str, new: str) -> tuple[list[str], list[str]]:
    """(removed lines, added lines), ignoring comments, blank lines and trailing commas."""
    a, b = _code_lines(old), _code_lines(new)
    removed, added = [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag in ("replace", "delete"):
            removed += a[i1:i2]
        if tag in ("replace", "insert"):
            added += b[j1:j2]
    return removed, added


def _elided(code: str | None) -> bool:
    return not code or code.startswith("-- code elided")


def _upstream_columns(manifest: DbtManifest, node: Mapping[str, Any]) -> dict[str, str]:
    """Column name -> the parent (model or source) that already has it."""
    found: dict[str, str] = {}
    for parent in node.get("depends_on", {}).get("nodes", []):
        parent_node = manifest.nodes.get(parent) or manifest.raw.get("sources", {}).get(parent)
        if parent_node:
            for column in parent_node.get("columns", {}):
                found.setdefault(column.lower(), parent_node["name"])
            # undocumented columns: a parent whose SQL produces the name has it
            code = parent_node.get("raw_code") or ""
            if not _elided(code):
                for word in set(re.findall(r"[a-z_][a-z0-9_]*", code.lower())):
                    found.setdefault(word, parent_node["name"])
    return found


def _added_columns(old: Mapping[str, Any], new: Mapping[str, Any], added_lines: list[str]):
    documented = set(new.get("columns", {})) - set(old.get("columns", {}))
    if documented:
        return sorted(c.lower() for c in documented)
    # undocumented: the last word of each added select line (`expr as col`, `col`)
    cols = []
    for line in added_lines:
        match = re.search(r"(?:\bas\s+)?\"?([a-z_][a-z0-9_]*)\"?$", line)
        if match:
            cols.append(match.group(1))
    return cols


def window_start(node: Mapping[str, Any], today: date) -> date | None:
    """First day a normal incremental run restates, for models on a calendar window."""
    cadence = rescue_meta(node).get("cadence")
    if cadence == "monthly":
        first_of_month = today.replace(day=1)
        return (first_of_month - timedelta(days=1)).replace(day=1)
    if cadence == "weekly":
        return today - timedelta(days=today.weekday() + 7)
    return None


def advise(manifest: DbtManifest, unique_id: str, ctx: ChangeContext) -> Advice:
    node = manifest.models[unique_id]
    config = node.get("config", {})
    heavy = unique_id in ctx.heavy
    date_column = rescue_meta(node).get("date_column")
    old = ctx.previous.models.get(unique_id) if ctx.previous else None

    if ctx.previous is not None and old is None:
        return Advice(INCREMENTAL, ("new model: its first run builds the whole table",))
    if old is not None:
        old_config = old.get("config", {})
        if _norm_key(old_config.get("unique_key")) != _norm_key(config.get("unique_key")):
            return Advice(
                FULL,
                (
                    f"unique_key changed ({old_config.get('unique_key')!r} -> "
                    f"{config.get('unique_key')!r}): rows merged under the old key would stay "
                    "duplicated or stale",
                ),
            )
        old_strategy = old_config.get("incremental_strategy") or "default"
        new_strategy = config.get("incremental_strategy") or "default"
        if old_strategy != new_strategy:
            return Advice(
                FULL,
                (
                    f"incremental_strategy changed ({old_strategy} -> {new_strategy}): history was "
                    "written under the old strategy",
                ),
            )
        if not is_incremental(old):
            return Advice(
                FULL,
                (
                    f"materialization changed ({old_config.get('materialized')} -> incremental): "
                    "the table must be rebuilt once",
                ),
            )
        if old.get("checksum", {}).get("checksum") != node.get("checksum", {}).get("checksum"):
            return _advise_code_change(manifest, node, old, ctx, heavy, date_column)

    window_first = window_start(node, ctx.today) if ctx.today else None
    late = (ctx.late or {}).get(unique_id)
    if late is not None and rescue_meta(node).get("cadence"):
        cadence = rescue_meta(node)["cadence"]
        why = (
            f"{late.describe()} landed after its {cadence} window had moved past them: a "
            "normal run never restates them"
        )
        if heavy and date_column:
            return Advice(
                WINDOW,
                (f"{why}; large model: backfill {date_column} in [{late.first}, {late.last}]",),
                (late.first, late.last),
            )
        return Advice(FULL, (why,))
    if ctx.changed_window:
        start, end = ctx.changed_window
        if window_first and start < window_first:
            if heavy and date_column:
                return Advice(
                    WINDOW,
                    (
                        f"data changed from {start}, before the {rescue_meta(node)['cadence']} "
                        f"refresh window (from {window_first}); large model: backfill "
                        f"{date_column} in [{start}, {end}] rather than rebuild",
                    ),
                    (start, end),
                )
            return Advice(
                FULL,
                (
                    f"data changed from {start}, before the {rescue_meta(node)['cadence']} refresh "
                    f"window (from {window_first}): a normal run would never restate it",
                ),
            )
        if heavy and date_column:
            return Advice(
                WINDOW,
                (
                    f"large model and the change is confined to {start}..{end}: backfill "
                    f"{date_column} in that window",
                ),
                (start, end),
            )
    if window_first:
        cadence = rescue_meta(node)["cadence"]
        if ctx.late is None:
            return Advice(
                INCREMENTAL,
                (
                    f"no definition change; the {cadence} window (from {window_first}) is "
                    "restated, rows landed late for older periods were not measured: "
                    "unverified until the proof compares it with a from-scratch build",
                ),
                unseen=True,
            )
        return Advice(
            INCREMENTAL,
            (
                f"no definition change, and no row landed late for a period before the "
                f"{cadence} window (from {window_first}): the window covers what changed",
            ),
        )
    return Advice(
        INCREMENTAL,
        (
            "no definition change; its incremental filter is not visible to the planner (no "
            "meta.rescue cadence), so rows landed for periods it does not restate (an outage's "
            "backlog, resynced corrections) cannot be ruled out: unverified until the proof "
            "compares it with a from-scratch build (the rescue rebuilds it with --full-refresh "
            "if it differs)",
        ),
        unseen=True,
    )


def _advise_code_change(
    manifest, node, old, ctx: ChangeContext, heavy: bool, date_column: str | None
) -> Advice:
    new_code, old_code = node.get("raw_code"), old.get("raw_code")
    if _elided(new_code) or _elided(old_code):
        return Advice(
            FULL,
            (
                "SQL changed (the manifest has no code to inspect): existing rows were computed by "
                "the old logic",
            ),
        )
    removed, added = _sql_diff(old_code, new_code)
    if not removed and added:
        columns = _added_columns(old, node, added)
        upstream = _upstream_columns(manifest, node)
        backfillable = {c: upstream[c] for c in columns if c in upstream}
        if columns and not backfillable:
            return Advice(
                INCREMENTAL,
                (
                    f"only new column(s) {', '.join(columns)} with no history upstream: existing "
                    "rows keep NULL, future rows get values",
                ),
            )
        if backfillable:
            where = ", ".join(f"{c} (in {p})" for c, p in sorted(backfillable.items()))
            if heavy and date_column and ctx.changed_window:
                return Advice(
                    WINDOW,
                    (
                        f"new column(s) {where} already exist upstream; large model: backfill "
                        f"{date_column} in the window",
                    ),
                    ctx.changed_window,
                )
            return Advice(
                FULL, (f"new column(s) {where} already exist upstream: history must be backfilled",)
            )
    window_first = window_start(node, ctx.today) if ctx.today else None
    if window_first and ctx.changed_window and ctx.changed_window[0] >= window_first:
        return Advice(
            INCREMENTAL,
            (
                f"SQL changed but only {ctx.changed_window[0]}..{ctx.changed_window[1]} "
                "must change, "
                f"inside the {rescue_meta(node)['cadence']} window: the next run restates it",
            ),
        )
    return Advice(FULL, ("SQL logic changed: existing rows were computed by the old logic",))
