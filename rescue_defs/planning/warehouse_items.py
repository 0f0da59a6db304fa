"""What the warehouse itself says, as the checklist words it: other sessions and locks on the
rescue's tables (the playbook's queue and overlap questions), and what the selection reads
from outside itself that the warehouse does not hold (its scope question). The Dagster side
reads the warehouse (rescue_defs.warehouse_reader); tests build a WarehouseLoad by hand."""

from collections.abc import Callable
from dataclasses import dataclass

OK, WARN, BLOCK = "ok", "warn", "block"
LIMIT = 5  # names listed in a line before "and N more"

WRITE_LOCKS = {
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
}


@dataclass(frozen=True)
class WarehouseLoad:
    """What the warehouse itself says (rescue_defs.warehouse_reader): other sessions at work
    (pid, application, seconds running, query), locks on the rescue's relations (pid,
    application, relation, mode); `note` says why nothing was measured."""

    sessions: tuple[tuple[int, str, float, str], ...] = ()
    locks: tuple[tuple[int, str, str, str], ...] = ()
    note: str = ""
    long_seconds: float = 60
    unavailable: str = ""
    """The warehouse did not answer (why): every dbt run would fail."""
    missing: tuple[str, ...] | None = None
    """What dbt builds (models, seeds, snapshots) that the selection reads from outside itself
    and the warehouse does not hold (names; a seed or snapshot named with its kind); None: not
    asked."""
    unasked: tuple[str, ...] = ()
    """What it reads that was not asked (materialized views, other databases): names."""
    inputs_note: str = ""
    """Why that was not asked ("" when it was)."""
    missing_sources: tuple[str, ...] = ()
    """Source tables the selection reads that the warehouse does not hold (source.table)."""
    sources_asked: int = 0
    """How many source tables the selection reads were asked for."""


def _listed(names: tuple[str, ...], limit: int = LIMIT) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def inputs_gaps(load: WarehouseLoad | None) -> list[str]:
    """The scope item's warnings: inputs dbt would not find (it fails at the first model
    reading one)."""
    if load is None:
        return []
    gaps = []
    if load.missing:
        gaps.append(
            f"{len(load.missing)} model(s) the selection reads are neither in it nor in the "
            f"warehouse: {_listed(load.missing)}; dbt fails at the first model reading one "
            "(add them, or `+` before the models reading them)"
        )
    if load.missing_sources:
        gaps.append(
            f"{len(load.missing_sources)} source table(s) the selection reads are not in the "
            f"warehouse: {_listed(load.missing_sources)}; dbt fails at the first model reading "
            "one (has the connector landed them? are the source's schema and identifier right?)"
        )
    return gaps


def inputs_checked(load: WarehouseLoad | None) -> str:
    """The scope item's ok line, on what the selection reads: only what was asked is claimed."""
    if load is None:
        return ""
    if load.missing is None:
        return f"; whether what it reads is built: {load.inputs_note}" if load.inputs_note else ""
    if load.unasked:
        said = (
            f"; what it reads is built, but not checked: {_listed(load.unasked)}"
            " (materialized views, other databases)"
        )
    else:
        said = "; every model it reads is built"
    if load.sources_asked:
        said += f"; its {load.sources_asked} source table(s) asked for are in the warehouse"
    return said


def warehouse_load_item(load: WarehouseLoad | None, known: bool, add: Callable) -> None:
    """The playbook's queue and overlap questions as the warehouse answers them."""
    q = "Is the warehouse itself busy, or is another session on the rescue's tables?"
    if load is None:
        if known:
            add("warehouse_load", q, WARN, "not measured: no warehouse connection was made")
        return
    if load.unavailable:
        add(
            "warehouse_load",
            q,
            BLOCK,
            f"the warehouse does not answer ({load.unavailable}): every dbt run would fail",
        )
        return
    if load.note:
        add("warehouse_load", q, WARN, load.note)
        return

    def who(pid: int, app: str) -> str:
        return f"PID {pid}" + (f" ({app})" if app else "")

    writers = [lock for lock in load.locks if lock[3] in WRITE_LOCKS]
    if writers:
        add(
            "warehouse_load",
            q,
            BLOCK,
            "; ".join(f"{who(p, a)} holds {m} on {r}" for p, a, r, m in writers[:3])
            + ": another session writes the rescue's tables, both would contend for their locks",
        )
        return
    long = [s for s in load.sessions if s[2] >= load.long_seconds]
    if load.locks or long:
        parts = [f"{who(p, a)} holds {m} on {r}" for p, a, r, m in load.locks[:3]]
        parts += [
            f"{who(p, a)} running for {sec:.0f} s: {text[:60]}" for p, a, sec, text in long[:3]
        ]
        add("warehouse_load", q, WARN, "; ".join(parts) + " (the rescue may wait for them)")
        return
    add(
        "warehouse_load",
        q,
        OK,
        f"{len(load.sessions)} other active session(s), none running over "
        f"{load.long_seconds:.0f} s; no lock on the rescue's tables",
    )
