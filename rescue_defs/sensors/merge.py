"""merge_sensor (the playbook's post-merge rebuild): when the code location comes up with a
manifest whose code differs from the last deployed one (kept in the instance's storage,
automation/deployed.py), rescue the changed models and everything downstream, with the refresh
advice the change calls for (a unique_key or strategy change: full refresh). A change of
comments or formatting launches nothing, and says so. While the scheduled pipeline runs, it
waits for it to end."""

import json
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtProject

from rescue_defs import rescues, settings
from rescue_defs.assets.dbt import load_manifest
from rescue_defs.automation import deployed as kept
from rescue_defs.automation.changes import changes, code_checksum
from rescue_defs.automation.launch import TAG_MANIFEST, launch
from rescue_defs.planning.manifest import DbtManifest
from rescue_defs.planning.plan import PlanRequest
from rescue_defs.planning.selection import SelectionError
from rescue_defs.rescues.facts import runs_in_flight
from rescue_defs.scope import ONE_PROJECT, Scope


def build_merge_sensor(
    project: DbtProject, schedule_defs=(), scope: Scope = ONE_PROJECT
) -> dg.SensorDefinition:
    """`schedule_defs`: the scheduled pipeline(s); a merge waits for their jobs' runs to end."""
    pipeline_jobs = {s.job_name for s in schedule_defs}
    manifest_path, project_dir = str(project.manifest_path), str(project.project_dir)
    target = Path(project.target_path).name  # the target's own folder (project.py)
    if scope.project:  # two projects' deployed manifests apart
        target = f"{scope.project}/{target}"

    @dg.sensor(
        name=scope.named("merge_sensor"),
        minimum_interval_seconds=settings.get("RESCUE_MERGE_SENSOR_SECONDS"),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Compares the deployed dbt manifest with the last one (dbt's state:modified, "
        "comments and formatting ignored) and registers a rescue of changed+ with the refresh "
        "advice (rescue/reason=merge), after the running pipeline, if any, has ended.",
    )
    def merge_sensor(context: dg.SensorEvaluationContext):
        instance = context.instance
        manifest = load_manifest(manifest_path, project_dir)
        checksum = code_checksum(manifest.raw)
        cursor = json.loads(context.cursor) if context.cursor else {}
        deployed = cursor.get("deployed")
        # the deployment's number is in the rescue id: code reverted and merged again is a new
        # merge (a new rescue), while a tick replayed from an old cursor finds the same id
        number = cursor.get("number", 0) + 1
        if deployed == checksum:
            return dg.SkipReason(f"deployed code {checksum[:12]} unchanged")
        if not deployed or not kept.is_kept(instance, deployed, target):
            kept.keep(instance, manifest_path, checksum, target)
            return dg.SensorResult(
                skip_reason=f"first deployment recorded ({checksum[:12]}): later merges are "
                "compared with it",
                cursor=json.dumps({"deployed": checksum, "number": number}),
            )
        pipeline = [r for r in runs_in_flight(instance) if r.job_name in pipeline_jobs]
        if pipeline:
            return dg.SkipReason(
                f"code changed ({deployed[:12]} -> {checksum[:12]}): waiting for "
                f"{pipeline[0].job_name} run {pipeline[0].run_id[:8]} to end (merge after the "
                "cycle)"
            )
        with kept.state_dir(instance, deployed, target) as previous_dir:
            change = changes(manifest, Path(manifest_path), previous_dir)
            previous = DbtManifest.load(previous_dir / "manifest.json")
        names = sorted(manifest.name(m) for m in change.changed)
        same = sorted(manifest.name(m) for m in change.same_logic)
        done = json.dumps({"deployed": checksum, "number": number})
        if not names:
            kept.keep(instance, manifest_path, checksum, target)
            return dg.SensorResult(
                skip_reason=f"code changed ({deployed[:12]} -> {checksum[:12]}) but no model's "
                "logic did"
                + (f" (comments or formatting only: {', '.join(same[:10])})" if same else "")
                + ": nothing to rescue",
                cursor=done,
            )
        trigger = {
            "kind": "merge",
            "checksum": checksum,
            "previous": deployed,
            "changed": names,
            "aspects": {manifest.name(m): list(a) for m, a in change.changed.items()},
            "same_logic": same,
        }
        try:
            record, created = launch(
                instance,
                project,
                PlanRequest(select=" ".join(f"{n}+" for n in names), reason="merge"),
                f"merge-{number}-{checksum[:12]}",
                trigger,
                {TAG_MANIFEST: checksum[:12]},
                schedule_defs,
                previous=previous,
            )
        except (rescues.RescueError, SelectionError) as e:
            return dg.SkipReason(
                f"code changed ({', '.join(names[:5])}); rescue not registered ({e}); next tick"
            )
        kept.keep(instance, manifest_path, checksum, target)
        message = (
            f"code changed: {', '.join(names[:10])}; rescue {record['id']} "
            + ("registered" if created else "was already registered")
            + f" ({len(record['plan']['models'])} model(s))"
            + (f"; {'; '.join(record.get('warnings', []))}" if record.get("warnings") else "")
        )
        context.log.info(message)
        return dg.SensorResult(skip_reason=message, cursor=done)

    return merge_sensor
