"""Row-for-row equality of a rescued table and its from-scratch build, through the dbt adapter.

Any warehouse dbt reaches: identifiers are quoted by the adapter, relations rendered by its
Relation class, and the SQL is plain standard SQL. A relation's columns are those of a select
of none of its rows (as dbt's own `get_columns_in_query`: one round trip, no macro). The rows
are compared as multisets in one pass over both tables: each distinct row with its count on
either side (`group by` every compared column, so NULLs equal NULLs and duplicates count), in
the same query as the rescued table's row count. Build-time columns are left out and named; a
column present on one side only is a difference in itself. When the tables differ, the report
says which columns carry the difference (EXCEPT ALL where the warehouse has it; elsewhere rows
grouped with their multiplicity) and, by month of the model's date column, where.
"""

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from rescue_defs.warehouse_reader import first_line

EXCEPT_ALL = {"postgres", "duckdb"}
MAX_COLUMN_PROBES = 60  # per-column probes run only on a difference; bounded for wide tables


class Compared(dict):
    """rows, only_rescued, only_from_scratch, periods, columns, excluded, missing_columns."""


def _run(adapter, sql: str) -> list[tuple]:
    _, table = adapter.execute(sql, auto_begin=False, fetch=True)
    return [tuple(row) for row in table.rows]


def _count(adapter, sql: str) -> int:
    rows = _run(adapter, sql)
    return int(rows[0][0] or 0) if rows else 0


def _difference(adapter, left: str, right: str, columns: Sequence[str]) -> str:
    """SQL of the rows of `left` not in `right` (multiset), projected on `columns`."""
    cols = ", ".join(adapter.quote(c) for c in columns)
    if adapter.type() in EXCEPT_ALL:
        return f"select {cols} from {left} except all select {cols} from {right}"
    # no EXCEPT ALL (Snowflake, BigQuery, ...): compare (row, multiplicity) groups
    n = adapter.quote("rescue__n")
    return (
        f"select {cols}, count(*) as {n} from {left} group by {cols} except "
        f"select {cols}, count(*) as {n} from {right} group by {cols}"
    )


def _rows_of(adapter, difference: str) -> str:
    if adapter.type() in EXCEPT_ALL:
        return f"select count(*) from ({difference}) rescue_d"
    return f"select coalesce(sum({adapter.quote('rescue__n')}), 0) from ({difference}) rescue_d"


def columns_of(adapter, relation) -> list[str]:
    """The relation's column names, in order; RuntimeError (one line) when it cannot be read."""
    try:
        _, table = adapter.execute(
            f"select * from {relation} where 1 = 0", auto_begin=False, fetch=True
        )
    except Exception as e:
        raise RuntimeError(f"{relation} cannot be read: {first_line(e)}") from None
    if not table.column_names:
        raise RuntimeError(f"{relation} has no columns")
    return list(table.column_names)


def _unused(name: str, columns: Sequence[str]) -> str:
    taken = {c.lower() for c in columns}
    while name in taken:
        name += "_"
    return name


def _tally(adapter, a: str, b: str, columns: Sequence[str]) -> str:
    """SQL of (rows of `a`, rows of `a` not in `b`, rows of `b` not in `a`), multisets, in one
    pass: every distinct row, how many times on each side."""
    cols = ", ".join(adapter.quote(c) for c in columns)
    side, in_a, in_b = (adapter.quote(_unused(n, columns)) for n in ("rescue__a", "na", "nb"))
    groups = (
        f"select {cols}, sum({side}) as {in_a}, sum(1 - {side}) as {in_b} from ("
        f"select {cols}, 1 as {side} from {a} union all select {cols}, 0 as {side} from {b}"
        f") rescue_u group by {cols}"
    )
    return (
        f"select coalesce(sum({in_a}), 0), "
        f"coalesce(sum(case when {in_a} > {in_b} then {in_a} - {in_b} else 0 end), 0), "
        f"coalesce(sum(case when {in_b} > {in_a} then {in_b} - {in_a} else 0 end), 0) "
        f"from ({groups}) rescue_g"
    )


def _month(value: Any) -> str:
    if isinstance(value, (date, datetime)):
        return value.isoformat()[:7]
    return str(value)[:7]


def compare_relations(
    adapter,
    rescued,
    scratch,
    build_time: Iterable[str] = (),
    date_column: str | None = None,
    scratch_columns: Sequence[str] | None = None,
) -> Compared:
    """Compare two relations (the adapter's Relation objects) in an open connection.
    `scratch_columns`: the scratch relation's, when the caller has them already."""
    names_a = columns_of(adapter, rescued)
    names_b = list(scratch_columns) if scratch_columns is not None else columns_of(adapter, scratch)
    excluded_lower = {c.lower() for c in build_time}
    in_b = {c.lower() for c in names_b}
    in_a = {c.lower() for c in names_a}
    columns = [c for c in names_a if c.lower() in in_b and c.lower() not in excluded_lower]
    excluded = [c for c in names_a if c.lower() in excluded_lower]
    missing_columns = [c for c in names_a if c.lower() not in in_b] + [
        c for c in names_b if c.lower() not in in_a
    ]
    if not columns:
        raise RuntimeError("no column left to compare (every column is build-time or one-sided)")
    a, b = str(rescued), str(scratch)
    (found,) = _run(adapter, _tally(adapter, a, b, columns))
    rows, only_a, only_b = (int(n or 0) for n in found)
    differing: list[str] = []
    periods: list[dict[str, Any]] = []
    if only_a or only_b:
        for column in columns[:MAX_COLUMN_PROBES]:
            one = [column]
            if _count(adapter, _rows_of(adapter, _difference(adapter, a, b, one))) or _count(
                adapter, _rows_of(adapter, _difference(adapter, b, a, one))
            ):
                differing.append(column)
        by_name = {c.lower(): c for c in columns}
        if date_column and date_column.lower() in by_name and adapter.type() in EXCEPT_ALL:
            periods = _periods(adapter, a, b, columns, by_name[date_column.lower()])
    return Compared(
        rows=rows,
        only_rescued=only_a,
        only_from_scratch=only_b,
        columns=len(columns),
        differing_columns=differing,
        excluded=excluded,
        missing_columns=missing_columns,
        periods=periods,
    )


def _periods(adapter, a: str, b: str, columns: Sequence[str], date_column: str) -> list[dict]:
    """Differing rows per month of the date column (grouped by day in SQL, months here)."""
    day = f"cast({adapter.quote(date_column)} as date)"
    counts: dict[str, Counter] = {"r": Counter(), "s": Counter()}
    for side, (left, right) in (("r", (a, b)), ("s", (b, a))):
        sql = (
            f"select {day}, count(*) from ({_difference(adapter, left, right, columns)}) "
            f"rescue_d group by {day}"
        )
        for value, n in _run(adapter, sql):
            counts[side][_month(value) if value is not None else "no date"] += int(n)
    months = sorted(set(counts["r"]) | set(counts["s"]))
    return [
        {"period": m, "only_rescued": counts["r"][m], "only_from_scratch": counts["s"][m]}
        for m in months
    ]


def equal(diff: Compared) -> bool:
    return (
        not diff["only_rescued"] and not diff["only_from_scratch"] and not diff["missing_columns"]
    )


def verdict_text(name: str, diff: Compared) -> tuple[bool, str]:
    without = (
        f"; build-time column(s) {', '.join(diff['excluded'])} left out" if diff["excluded"] else ""
    )
    if equal(diff):
        return True, (
            f"{name}: equal to a from-scratch build ({diff['rows']} rows, {diff['columns']} "
            f"columns, row for row{without})"
        )
    parts = []
    if diff["missing_columns"]:
        parts.append("column(s) on one side only: " + ", ".join(diff["missing_columns"]))
    if diff["only_rescued"] or diff["only_from_scratch"]:
        parts.append(
            f"{diff['only_rescued']} row(s) only in the rescued table, "
            f"{diff['only_from_scratch']} only in the rebuild"
        )
    if diff["differing_columns"]:
        parts.append("differing column(s): " + ", ".join(diff["differing_columns"]))
    if diff["periods"]:
        parts.append(
            "; ".join(
                f"{p['period']}: {p['only_rescued']} rescued-only / {p['only_from_scratch']} "
                "from-scratch-only"
                for p in diff["periods"][:12]
            )
        )
    return False, f"{name}: differs from a from-scratch build: " + "; ".join(parts) + without
