"""Register a rescue nobody typed: planned as `rescue launch` plans, under an id derived from
the event (incident + recovery, manifest checksum), so a replayed tick or a restarted daemon
finds it registered and launches nothing twice. The runs are launched by rescue_sensor alone
(the one place that checks contention), so outage and merge rescues of overlapping lineage
never write the same table at once."""

from collections.abc import Mapping
from datetime import UTC, timedelta
from typing import Any

import dagster as dg
from dagster_dbt import DbtProject

from rescue_defs import rescues
from rescue_defs.assets.dbt import load_manifest, model_asset_keys
from rescue_defs.checks.proof import proof_settings
from rescue_defs.planning.manifest import DbtManifest
from rescue_defs.planning.plan import Plan, Planner, PlanRequest
from rescue_defs.project import clock_now
from rescue_defs.warehouse_reader import WarehouseTarget

TAG_INCIDENT = "rescue/incident"
TAG_MANIFEST = "rescue/manifest"


def registered(instance: dg.DagsterInstance, rescue_id: str) -> dict[str, Any] | None:
    try:
        return rescues.load(instance, rescue_id)
    except rescues.RescueError:
        return None


def fit_warning(plan: Plan, schedule_defs) -> str:
    """The playbook: rescue after the cycle and before the next one. Say when it won't fit."""
    now = clock_now().replace(tzinfo=UTC)
    upcoming = rescues.next_ticks(schedule_defs, now, horizon=timedelta(days=1))
    if not upcoming:
        return ""
    name, at = min(upcoming, key=lambda t: t[1])
    expected = plan.total_seconds
    if now + timedelta(seconds=expected) <= at:
        return ""
    return (
        f"expected ~{expected / 60:.0f} min does not fit before {name} at {at:%Y-%m-%d %H:%M} "
        f"UTC ({(at - now).total_seconds() / 60:.0f} min from now): the two will queue"
    )


def launch(
    instance: dg.DagsterInstance,
    project: DbtProject,
    request: PlanRequest,
    rescue_id: str,
    trigger: Mapping[str, Any],
    tags: Mapping[str, str],
    schedule_defs=(),
    previous: DbtManifest | None = None,
) -> tuple[dict[str, Any], bool]:
    """(record, created). Raises RescueError (blocked plan) and SelectionError unchanged."""
    existing = registered(instance, rescue_id)
    if existing is not None:
        return existing, False
    manifest_path, project_dir = str(project.manifest_path), str(project.project_dir)
    manifest = load_manifest(manifest_path, project_dir)
    # a fresh selector: a merge changes the manifest under the same path
    planner = Planner(manifest)
    keys = model_asset_keys(manifest)
    plan = rescues.plan_for(
        planner,
        instance,
        request,
        keys,
        previous=previous,
        schedules=rescues.next_ticks(schedule_defs, clock_now().replace(tzinfo=UTC)),
        warehouse=WarehouseTarget.of(project),
    )
    warning = fit_warning(plan, schedule_defs)
    record = rescues.register(
        instance,
        plan,
        keys,
        rescue_id=rescue_id,
        proof=proof_settings(),
        extra={
            "trigger": dict(trigger),
            "auto": True,
            "tags": dict(tags),
            "warnings": [warning] if warning else [],
        },
    )
    return record, True
