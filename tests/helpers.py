"""What tests do again and again, written once."""

from pathlib import Path

import dagster as dg
import duckdb

from rescue_defs.assets.raw import raw_sources


def raw_config(through: str, down: tuple[str, ...] = (), late_returns: int = 0) -> dict:
    return {
        "ops": {
            raw_sources.op.name: {
                "config": {
                    "through_date": through,
                    "sources_down": list(down),
                    "late_returns": late_returns,
                }
            }
        }
    }


def materialize_all(
    defs: dg.Definitions, instance: dg.DagsterInstance, run_config: dict | None = None
) -> dg.ExecuteInProcessResult:
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(instance=instance, run_config=run_config or {})


def query(path: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute(sql, params or []).fetchall()


def failed_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    return [
        f"{e.asset_check_evaluation_data.asset_key.to_user_string()}:"
        f"{e.asset_check_evaluation_data.check_name}"
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        and not e.asset_check_evaluation_data.passed
    ]


def rows_differing(a: Path, b: Path, table: str) -> int:
    """Rows of `table` in one DuckDB file and not the other, duplicates counted."""
    with duckdb.connect(":memory:") as conn:
        conn.execute("attach ? as a (read_only)", [str(a)])
        conn.execute("attach ? as b (read_only)", [str(b)])
        return conn.execute(
            f"select count(*) from ((select * from a.{table} except all select * from b.{table})"
            f" union all (select * from b.{table} except all select * from a.{table}))"
        ).fetchone()[0]
