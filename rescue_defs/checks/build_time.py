"""Build-time columns: values a model computes from the clock (`now()`, `current_date`, ages and
durations), which differ between any two builds, so equality with a from-scratch build can
only be asked of the other columns. Declared in `meta.rescue.build_time_columns`, or found in
the model's compiled SQL with sqlglot (which dagster-dbt already uses): a column whose
expression, anywhere in the query (CTEs included), reads the clock. The proof names them."""

from collections.abc import Iterable, Mapping
from typing import Any

from sqlglot import exp, parse_one

CLOCK_TYPES = (exp.CurrentTimestamp, exp.CurrentDate, exp.CurrentTime, exp.CurrentDatetime)
CLOCK_NAMES = {"now", "getdate", "sysdate", "systimestamp", "localtimestamp", "sysdatetime"}
DIALECTS = {"postgres": "postgres", "redshift": "redshift", "duckdb": "duckdb"}


def declared(node: Mapping[str, Any]) -> list[str]:
    meta = (node.get("config") or {}).get("meta") or node.get("meta") or {}
    value = (meta.get("rescue") or {}).get("build_time_columns") or []
    if isinstance(value, str):
        value = [value]
    return [str(v) for v in value]


def _reads_clock(expression: exp.Expression) -> bool:
    if any(True for _ in expression.find_all(*CLOCK_TYPES)):
        return True
    return any(f.name.lower() in CLOCK_NAMES for f in expression.find_all(exp.Anonymous, exp.Func))


def clock_columns(compiled_sql: str, columns: Iterable[str], adapter_type: str) -> list[str]:
    """The columns of `columns` computed from the clock somewhere in the query. A query
    sqlglot cannot read yields none (the comparison then includes every column)."""
    try:
        tree = parse_one(compiled_sql, dialect=DIALECTS.get(adapter_type))
    except Exception:
        return []
    if tree is None:
        return []
    clocked: set[str] = set()
    for select in tree.find_all(exp.Select):
        for projection in select.selects:
            name = projection.alias_or_name
            if name and _reads_clock(projection):
                clocked.add(name.lower())
    return [c for c in columns if c.lower() in clocked]
