"""What differs between the Dagster versions the package supports (pyproject.toml's ranges:
the current minor and the previous one), in one place."""

import inspect
from collections.abc import Callable, Iterator
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


def resource_params(op: dg.OpDefinition) -> dict[str, Any]:
    """Name -> annotation of the resource parameters of a decorated op's function."""
    compute = op.compute_fn
    if not hasattr(compute, "get_resource_args"):
        return {}
    return {param.name: param.annotation for param in compute.get_resource_args()}


def op_compute(op: dg.OpDefinition) -> Callable[[Any], Iterator]:
    """Calls a decorated op's function as Dagster does (its context, resources and config
    from the given context). Dagster has no public way to run one op's function inside
    another's step; this is how its own executor does it, on 1.12 and 1.13 alike."""
    from dagster._core.execution.plan.compute_generator import create_op_compute_wrapper

    wrapped = create_op_compute_wrapper(op)

    def call(context) -> Iterator:
        result = wrapped(context, {})
        if not hasattr(result, "__iter__"):
            raise TypeError(f"op {op.name!r}: async dbt assets functions are not supported")
        yield from result

    return call


def swap_cursor_value(
    instance: dg.DagsterInstance, key: str, old: str | None, new: str
) -> bool | None:
    """Set the instance's key-value `key` to `new` only if it holds `old` (None: absent), in one
    statement: True when set, False when it held something else (another process wrote it
    meanwhile), None when the run storage is not Dagster's SQL storage (SQLite, PostgreSQL,
    MySQL), which is the only one it can be asked of. Dagster's public `set_cursor_values`
    writes whatever is there; the kvs table and `connect()` are its SQL storage's own."""
    from dagster._core.storage.runs.schema import KeyValueStoreTable as kvs
    from dagster._core.storage.runs.sql_run_storage import SqlRunStorage
    from sqlalchemy.exc import IntegrityError

    storage = instance.run_storage
    if not isinstance(storage, SqlRunStorage):
        return None
    if old is None:
        try:  # the key is unique: of two first writes, one is refused
            with storage.connect() as conn:
                conn.execute(kvs.insert().values(key=key, value=new))
        except IntegrityError:
            return False
        return True
    with storage.connect() as conn:
        changed = conn.execute(
            kvs.update().where(kvs.c.key == key, kvs.c.value == old).values(value=new)
        )
        return changed.rowcount == 1
