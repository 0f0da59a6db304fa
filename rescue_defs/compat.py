"""What differs between the Dagster versions the package supports (pyproject.toml's ranges:
the current minor and the previous one), in one place."""

import inspect
from typing import Any

import dagster as dg

# Dagster 1.13 partitions asset checks: one verdict per rescue / incident, in the check's
# Partitions list. On 1.12 a check has one verdict, the latest; the report and incident assets
# stay partitioned on both.
PARTITIONED_CHECKS = "partitions_def" in inspect.signature(dg.asset_check).parameters


def check_partitions(partitions_def: dg.PartitionsDefinition) -> dict[str, Any]:
    """Keyword arguments of @asset_check for a check partitioned like its asset."""
    return {"partitions_def": partitions_def} if PARTITIONED_CHECKS else {}


def evaluation_partition(partition_key: str) -> dict[str, Any]:
    """Keyword arguments of AssetCheckEvaluation for the verdict of one partition."""
    return {"partition": partition_key} if PARTITIONED_CHECKS else {}


def materialized_keys(instance: dg.DagsterInstance, run_id: str) -> set[dg.AssetKey]:
    """The assets a run materialized: one distinct-keys query on 1.13, the events on 1.12."""
    if hasattr(instance, "get_asset_keys_for_run"):
        return set(
            instance.get_asset_keys_for_run(
                run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
            )
        )
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    return {r.event_log_entry.dagster_event.asset_key for r in records}
