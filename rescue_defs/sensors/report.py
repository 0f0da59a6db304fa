"""rescue_report_sensor: when a rescue ends, its rescue_succeeded check is evaluated in a run."""

import dagster as dg

from rescue_defs import rescues
from rescue_defs.rescues.store import TAG_REPORT_OF, UNREPORTED_ENDS


def build_rescue_report_sensor(status_job) -> dg.SensorDefinition:
    @dg.sensor(
        name="rescue_report_sensor",
        jobs=[status_job],
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="For each rescue that ended, evaluates its partition of the "
        "rescue_succeeded check (rescue_status_job): succeeded, failed and canceled rescues "
        "apart at a glance.",
    )
    def rescue_report_sensor(context: dg.SensorEvaluationContext):
        instance = context.instance
        ids = list(instance.get_dynamic_partitions(UNREPORTED_ENDS))
        if not ids:
            return dg.SkipReason("no rescue ended since the last tick")
        requests = [
            dg.RunRequest(
                # the version: a rescue resumed and failed again gets a run of its own
                run_key=f"report:{record['id']}:{record['version']}",
                job_name=status_job.name,
                run_config={
                    "ops": {"evaluate_rescue_succeeded": {"config": {"rescue_id": record["id"]}}}
                },
                tags={
                    TAG_REPORT_OF: record["id"],
                    rescues.TAG_KIND: "report",
                    "rescue/status": record["status"],
                },
            )
            for record in rescues.store.records(instance, ids)
            if record["status"] in rescues.ENDED
        ]
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[dg.DeleteDynamicPartitionsRequest(UNREPORTED_ENDS, ids)],
        )

    return rescue_report_sensor
