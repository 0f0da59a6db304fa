"""The sandbox: the same rescue against a copy of prod, to validate rebuild logic first.

A sandbox rescue runs its stages with the dbt target `sandbox`. For the bundled DuckDB
warehouse that target is a copy of the prod file, refreshed when the rescue is registered (the
copy keeps the file name, so DuckDB's catalog name and the views built in prod still resolve).
For another warehouse, point the project's `sandbox` target at a schema or database that
mirrors prod; nothing is copied then.

Sandbox runs never record materializations or check results of the prod assets: each model
they build is reported as an asset observation with `sandbox: true` and its validation
verdicts, so the prod lineage, freshness and check history stay as they were.
"""

import shutil
from pathlib import Path

from rescue_defs.project import sandbox_warehouse_path, warehouse_path

TARGET = "sandbox"


class SandboxError(Exception):
    """The sandbox could not be prepared; the message says why."""


def refresh_sandbox() -> Path | None:
    """Copy the prod DuckDB file over the sandbox one. None when prod is not a DuckDB file
    here (another adapter: the sandbox target is the user's to mirror)."""
    prod, sandbox = warehouse_path(), sandbox_warehouse_path()
    if not prod.exists():
        return None
    if prod == sandbox:
        raise SandboxError(f"the sandbox path is the prod warehouse itself ({prod})")
    import duckdb  # here: every code location imports TARGET, few warehouses are DuckDB files

    try:
        # DuckDB refuses a reader while a process writes: this proves no run is writing prod
        with duckdb.connect(str(prod), read_only=True) as conn:
            conn.execute("select 1").fetchall()
    except duckdb.Error as e:
        raise SandboxError(
            f"cannot copy prod for the sandbox while it is being written: {e}"
        ) from None
    sandbox.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", ".wal"):
        source = Path(str(prod) + suffix)
        target = Path(str(sandbox) + suffix)
        target.unlink(missing_ok=True)
        if source.exists():
            shutil.copy2(source, target)
    return sandbox
