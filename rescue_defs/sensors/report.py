"""rescue_report_sensor: when a rescue ends, its rescue_succeeded check is evaluated in a run;
once the next run after a succeeded rescue has ended, its verdict is added to the report."""

import dagster as dg

from rescue_defs import rescues
from rescue_defs.assets import incidents
from rescue_defs.assets.projects import LocationProjects
from rescue_defs.automation.launch import TAG_INCIDENT
from rescue_defs.rescues.confirm import UNCONFIRMED, next_run_outcome
from rescue_defs.rescues.store import TAG_REPORT_OF, UNREPORTED_ENDS


def build_rescue_report_sensor(status_job, projects: LocationProjects) -> dg.SensorDefinition:

    @dg.sensor(
        name="rescue_report_sensor",
        jobs=[status_job],
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="For each rescue that ended, evaluates its partition of the "
        "rescue_succeeded check (rescue_status_job): succeeded, failed and canceled rescues "
        "apart at a glance. After a succeeded rescue, adds the verdict of the next run that "
        "builds its models (the scheduled pipeline) to its report.",
    )
    def rescue_report_sensor(context: dg.SensorEvaluationContext):
        instance = context.instance
        messages = _confirm(instance, projects)
        ids = list(instance.get_dynamic_partitions(UNREPORTED_ENDS))
        published = list(instance.get_dynamic_partitions(incidents.UNEVALUATED))
        if not ids and not published:
            return dg.SkipReason(
                "; ".join(messages) or "no rescue ended and no incident changed since the last tick"
            )
        requests = [
            dg.RunRequest(
                # the version: a rescue resumed and ended again gets a run of its own
                run_key=f"report:{record['id']}:{record['version']}",
                job_name=status_job.name,
                run_config={
                    "ops": {"evaluate_rescue_succeeded": {"config": {"rescue_id": record["id"]}}}
                },
                tags={
                    TAG_REPORT_OF: record["id"],
                    rescues.TAG_KIND: "status",
                    "rescue/status": record["status"],
                },
            )
            for record in rescues.store.records(instance, ids)
            if record["status"] in rescues.ENDED
        ]
        requests += [_incident_request(instance, status_job, i) for i in published]
        return dg.SensorResult(
            run_requests=[r for r in requests if r is not None],
            dynamic_partitions_requests=[
                dg.DeleteDynamicPartitionsRequest(name, keys)
                for name, keys in ((UNREPORTED_ENDS, ids), (incidents.UNEVALUATED, published))
                if keys
            ],
        )

    return rescue_report_sensor


def _incident_request(instance, status_job, incident_id: str) -> dg.RunRequest | None:
    latest = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=incidents.INCIDENT_ASSET, asset_partitions=[incident_id]),
        limit=1,
    ).records
    if not latest:
        return None
    return dg.RunRequest(
        # one evaluation per publication of the incident
        run_key=f"incident:{incident_id}:{latest[0].storage_id}",
        job_name=status_job.name,
        run_config={"ops": {"evaluate_rescue_succeeded": {"config": {"incident_id": incident_id}}}},
        tags={TAG_INCIDENT: incident_id, rescues.TAG_KIND: "status"},
    )


def _confirm(instance: dg.DagsterInstance, projects: LocationProjects) -> list[str]:
    """Succeeded rescues whose next run ended: the verdict into the record and the report; the
    report's new materialization needs the check evaluated again (UNREPORTED_ENDS)."""
    ids = list(instance.get_dynamic_partitions(UNCONFIRMED))
    if not ids:
        return []
    messages = []
    for record in rescues.store.records(instance, ids):
        keys = projects.keys_of(record)
        if record["status"] != rescues.SUCCEEDED:
            instance.delete_dynamic_partition(UNCONFIRMED, record["id"])
            continue
        found = next_run_outcome(instance, record, keys)
        if found is None:
            continue
        record["confirmation"] = found
        try:
            rescues.save(instance, record)
        except rescues.ConcurrentUpdate:
            continue  # next tick
        rescues.publish(instance, record, keys)
        rescues.store.add_partition(instance, UNREPORTED_ENDS, record["id"])
        instance.delete_dynamic_partition(UNCONFIRMED, record["id"])
        messages.append(f"rescue {record['id']}: next run {found['verdict']}")
    return messages
