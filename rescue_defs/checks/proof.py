"""The proof a rescue ends with: its incremental models equal a from-scratch build.

Counts and dates cannot see a wrong value (a January revenue row off by ten returns passes
both). After a rescue's stages, `rescue_proof_job` copies the warehouse, rebuilds the rescue's
incremental models there with `--full-refresh` over the same upstream tables, and compares
each with the rescued table, row for row (EXCEPT ALL both ways). Differences are listed per
period of the model's date column, with the rows only in the rescued table and only in the
from-scratch one. The verdict is the asset check `equals_a_from_scratch_build`.

The copy is a DuckDB file beside the warehouse; other adapters have no proof (yet), and say so.
"""

import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from rescue_defs.checks.rules import ModelRule, quote

PROOF_CHECK = "equals_a_from_scratch_build"
PROOF_TARGET = "sandbox"  # the profile's sandbox target, pointed at the proof copy
DEFAULT_MAX_SECONDS = 600.0


def proof_settings(adapter: str | None, bundled: bool) -> dict[str, Any]:
    """{"on", "max_seconds", "why_off"}: RESCUE_PROOF=on|off (default: on for the bundled
    project), RESCUE_PROOF_MAX_SECONDS (default 600); DuckDB warehouses only."""
    setting = os.environ.get("RESCUE_PROOF", "").strip().lower()
    on = bundled if setting == "" else setting in ("1", "on", "true", "yes")
    why = "" if on else "turned off (RESCUE_PROOF=on turns it on)"
    if on and adapter != "duckdb":
        on, why = False, f"not available on the {adapter} adapter (DuckDB warehouses only)"
    return {
        "on": on,
        "max_seconds": float(os.environ.get("RESCUE_PROOF_MAX_SECONDS", DEFAULT_MAX_SECONDS)),
        "why_off": why,
    }


def proof_record(plan, settings: Mapping[str, Any], sandbox: bool) -> dict[str, Any] | None:
    """What the rescue will prove, decided when it is registered (None: no incremental model)."""
    models = sorted(plan.advice)  # the plan's incremental models
    if not models:
        return None
    factor = plan.full_refresh_factor
    expected = sum(plan.seconds[m] * (1 if m in plan.full_refresh else factor) for m in models)
    record: dict[str, Any] = {"models": models, "expected_seconds": round(expected, 1)}
    if sandbox:
        return {**record, "status": "skipped", "reason": "a sandbox rescue leaves prod as it was"}
    if not settings["on"]:
        return {**record, "status": "skipped", "reason": settings["why_off"]}
    if expected > settings["max_seconds"]:
        return {
            **record,
            "status": "skipped",
            "reason": f"a from-scratch build is expected to take ~{expected:.0f} s, over the "
            f"limit of {settings['max_seconds']:.0f} s (RESCUE_PROOF_MAX_SECONDS)",
        }
    return {**record, "status": "pending", "attempt": 0}


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def copy_warehouse(prod: Path, copy: Path) -> None:
    copy.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", ".wal"):
        target = Path(str(copy) + suffix)
        target.unlink(missing_ok=True)
        if Path(str(prod) + suffix).exists():
            shutil.copy2(Path(str(prod) + suffix), target)


def _period(rule: ModelRule | None) -> str | None:
    if rule is None or not rule.date_column:
        return None
    return f"cast(date_trunc('month', {quote(rule.date_column)}) as date)"


def compare(
    prod: Path, scratch: Path, relation: tuple[str, str], rule: ModelRule | None
) -> dict[str, Any]:
    """Rows only in the rescued table and only in the from-scratch one, overall and per month
    of the model's date column."""
    schema, table = relation
    name = f"{quote(schema)}.{quote(table)}"
    with duckdb.connect(":memory:") as conn:
        conn.execute("attach ? as rescued (read_only)", [str(prod)])
        conn.execute("attach ? as scratch (read_only)", [str(scratch)])
        conn.execute(
            f"create temp table only_rescued as select * from rescued.{name} "
            f"except all select * from scratch.{name}"
        )
        conn.execute(
            f"create temp table only_scratch as select * from scratch.{name} "
            f"except all select * from rescued.{name}"
        )
        (rescued_rows,) = conn.execute(f"select count(*) from rescued.{name}").fetchone()
        (a,) = conn.execute("select count(*) from only_rescued").fetchone()
        (b,) = conn.execute("select count(*) from only_scratch").fetchone()
        periods: list[dict[str, Any]] = []
        period = _period(rule)
        if (a or b) and period:
            rows = conn.execute(
                f"select p, sum(r), sum(s) from ("
                f"select {period} as p, 1 as r, 0 as s from only_rescued union all "
                f"select {period} as p, 0 as r, 1 as s from only_scratch) group by p order by p"
            ).fetchall()
            periods = [
                {"period": str(p)[:7], "only_rescued": int(r), "only_from_scratch": int(s)}
                for p, r, s in rows
            ]
    return {
        "rows": int(rescued_rows),
        "only_rescued": int(a),
        "only_from_scratch": int(b),
        "periods": periods,
    }


def verdict_text(name: str, diff: Mapping[str, Any]) -> tuple[bool, str]:
    if not diff["only_rescued"] and not diff["only_from_scratch"]:
        return True, f"{name}: equal to a from-scratch build ({diff['rows']} rows, row for row)"
    periods = "; ".join(
        f"{p['period']}: {p['only_rescued']} rescued-only / {p['only_from_scratch']} "
        "from-scratch-only"
        for p in diff["periods"][:12]
    )
    return False, (
        f"{name}: differs from a from-scratch build: {diff['only_rescued']} row(s) only in the "
        f"rescued table, {diff['only_from_scratch']} only in the rebuild"
        + (f" ({periods})" if periods else "")
        + ": rebuild it with --full-refresh"
    )
