"""The `rescue_report` asset and its `rescue_succeeded` check, one partition per rescue.

The report is published without a run (when the rescue is registered and when it ends, see
rescues/report.py), so "Materialize all" never asks for a rescue's partition. Whether the rescue
succeeded is the check's, evaluated when the rescue ends by a run of rescue_status_job that
rescue_report_sensor launches: Dagster's storage keeps one runless evaluation per partition (a
second one, after a resume, is refused), and a checks-only job cannot take a dynamic partition.
The check's Partitions tab then shows succeeded rescues passed, failed and canceled ones failed
(with their status), and rescues still running as not evaluated."""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from rescue_defs import compat, rescues
from rescue_defs.assets import incidents

RESCUE_SUCCEEDED = "rescue_succeeded"
STATUS_JOB = "rescue_status_job"

REPORT_SPEC = dg.AssetSpec(
    rescues.REPORT_ASSET,
    group_name="rescue",
    partitions_def=rescues.REPORT_PARTITIONS,
    description="One partition per rescue (its id: UTC time, what it rescues, a random "
    "suffix), materialized when the rescue is registered (the plan) and again when it ends: the "
    "report (plan, runs, per-model rebuilt / validated / failed, failed checks with their "
    "numbers, what is left). Its check rescue_succeeded tells rescues apart per partition "
    "(Checks → rescue_succeeded → Partitions). `rescue status <id>` prints the same.",
)


def rescue_evaluation(
    instance: dg.DagsterInstance, record: Mapping[str, Any]
) -> dg.AssetCheckEvaluation:
    """The check's verdict on one rescue, against the report its end published (current)."""
    latest = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=rescues.REPORT_ASSET, asset_partitions=[record["id"]]),
        limit=1,
    ).records
    target = (
        AssetCheckEvaluationTargetMaterializationData(
            storage_id=latest[0].storage_id, run_id=latest[0].run_id, timestamp=latest[0].timestamp
        )
        if latest
        else None
    )
    return dg.AssetCheckEvaluation(
        asset_key=rescues.REPORT_ASSET,
        check_name=RESCUE_SUCCEEDED,
        passed=record["status"] == rescues.SUCCEEDED,
        **compat.evaluation_partition(record["id"]),
        description=f"{record['status']}: {record['message']}",
        metadata={
            "status": record["status"],
            "reason": record["reason"] or "",
            "report": dg.MetadataValue.url(
                f"/assets/rescue_report?view=partitions&partition={record['id']}"
            ),
        },
        target_materialization_data=target,
    )


@dg.asset_check(
    asset=rescues.REPORT_ASSET,
    name=RESCUE_SUCCEEDED,
    **compat.check_partitions(rescues.REPORT_PARTITIONS),
    description="Passes when the rescue of this partition ended succeeded; fails, with its "
    "status (failed, canceled, active) and why, otherwise. Evaluated when a rescue ends.",
)
def rescue_succeeded(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    # Dagster 1.12 has no partitioned checks (compat.py): there the latest rescue's verdict
    rescue_id = (
        context.partition_key
        if compat.PARTITIONED_CHECKS
        else ([""] + rescues.rescue_ids(context.instance))[-1]
    )
    if not rescue_id:
        return dg.AssetCheckResult(passed=False, description="no rescue was registered yet")
    evaluation = rescue_evaluation(context.instance, rescues.load(context.instance, rescue_id))
    return dg.AssetCheckResult(
        passed=evaluation.passed,
        description=evaluation.description,
        metadata=evaluation.metadata,
    )


class RescueStatusConfig(dg.Config):
    rescue_id: str = ""
    """The rescue (partition of rescue_report) whose check to evaluate."""
    incident_id: str = ""
    """An incident (partition of source_incidents) whose check to evaluate."""


@dg.op(name="evaluate_rescue_succeeded")
def evaluate_rescue_succeeded(context: dg.OpExecutionContext, config: RescueStatusConfig) -> None:
    """Records the rescue_succeeded check of one rescue, from its stored record; for an outage
    rescue, publishes its incident again and records incident_is_resolved."""
    instance = context.instance
    incident_id = config.incident_id
    if config.rescue_id:
        record = rescues.load(instance, config.rescue_id)
        context.log_event(rescue_evaluation(instance, record))
        trigger = record.get("trigger") or {}
        if trigger.get("kind") == "outage":
            incident_id = trigger["incident"]
            for event in incidents.after_rescue(
                instance, incident_id, record["id"], record["status"]
            ):
                context.log_event(event)
    found = incidents.evaluation(instance, incident_id) if incident_id else None
    if found is not None:
        context.log_event(found)


@dg.job(
    name=STATUS_JOB,
    description="Evaluates rescue_succeeded for one rescue (rescue_report_sensor runs it when a "
    "rescue ends) and incident_is_resolved for its incident (source_outage_sensor runs it when "
    "an incident opens).",
    tags={rescues.TAG_KIND: "status"},
    executor_def=dg.in_process_executor,
)
def rescue_status_job():
    evaluate_rescue_succeeded()
