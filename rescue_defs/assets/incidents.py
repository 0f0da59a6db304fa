"""The `source_incidents` asset: one partition per incident, so on-call people find incidents
where they look (the asset catalog, the lineage below the sources, the partitions list).

source_outage_sensor publishes each change of an open incident as a runless materialization of
its partition (status, sources, down since, recovered at, rescues), an observation on each
source asset it concerns (a link to the incident), and leaves its `incident_is_resolved` check
to rescue_report_sensor, which evaluates it in a rescue_status_job run; the rescue's end
publishes and evaluates it again (assets/report.py). The check is what colours the partitions:
failed while the incident is open or its rescue did not succeed, passed once every source is
fresh and rescued."""

import json
from collections.abc import Mapping
from typing import Any

import dagster as dg

from rescue_defs import compat

INCIDENT_ASSET = dg.AssetKey("source_incidents")
INCIDENT_PARTITIONS = dg.DynamicPartitionsDefinition(name="incidents")
INCIDENT_IS_RESOLVED = "incident_is_resolved"
# incidents published since rescue_report_sensor last looked: it evaluates their check in a run
UNEVALUATED = "incidents_unevaluated"

DOWN, RECOVERED, RESCUING, RESOLVED, UNRESOLVED = (
    "down",
    "recovered, rescue pending",
    "rescuing",
    "resolved",
    "unresolved",
)


def incident_url(incident_id: str) -> str:
    return f"/assets/source_incidents?view=partitions&partition={incident_id}"


def report_url(rescue_id: str) -> str:
    return f"/assets/rescue_report?view=partitions&partition={rescue_id}"


def incident_spec(source_keys) -> dg.AssetSpec:
    return dg.AssetSpec(
        INCIDENT_ASSET,
        group_name="rescue",
        partitions_def=INCIDENT_PARTITIONS,
        # below the sources in the lineage: one click from a source's page
        deps=sorted(set(source_keys), key=lambda k: k.to_user_string()),
        description="One partition per source incident (a source past its dbt error_after, "
        "until it is fresh again and rescued): its sources, since when they were down, when "
        "they recovered, the rescue it caused and that rescue's status. The check "
        "incident_is_resolved tells open incidents from resolved ones (Checks → "
        "incident_is_resolved → Partitions).",
    )


def status_of(incident: Mapping[str, Any], rescues: Mapping[str, str]) -> str:
    """An incident's status from its sources and the status of the rescues it caused."""
    entries = incident["sources"].values()
    if any(e["recovered_at"] is None and e["rescue_id"] is None for e in entries):
        return DOWN
    if any(e["rescue_id"] is None for e in entries):
        return RECOVERED
    states = {rescues.get(e["rescue_id"], "active") for e in entries if e["rescue_id"] != "none"}
    if not states or states == {"succeeded"}:
        return RESOLVED
    if "active" in states:
        return RESCUING
    return UNRESOLVED


def materialization(
    incident: Mapping[str, Any],
    rescues: Mapping[str, str],
    keys_by_label: Mapping[str, dg.AssetKey],
) -> dg.AssetMaterialization:
    mine = {e["rescue_id"] for e in incident["sources"].values()}
    rescues = {k: v for k, v in rescues.items() if k in mine}
    status = status_of(incident, rescues)
    lines = []
    for source, e in sorted(incident["sources"].items()):
        line = (
            f"- **{source}**: down since {e['down_since'][:19]}, seen down at {e['opened_at'][:19]}"
        )
        if e["recovered_at"]:
            line += f", fresh again at {e['recovered_at'][:19]}"
        if e["rescue_id"] == "none":
            line += "; nothing to rescue (every model below was rebuilt since)"
        elif e["rescue_id"]:
            state = rescues.get(e["rescue_id"], "active")
            line += f"; rescue [{e['rescue_id']}]({report_url(e['rescue_id'])}): {state}"
        lines.append(line)
    return dg.AssetMaterialization(
        asset_key=INCIDENT_ASSET,
        partition=incident["id"],
        description=f"incident {incident['id']}: {status}",
        metadata={
            "status": status,
            "sources": ", ".join(sorted(incident["sources"])),
            "opened_at": incident["opened_at"][:19],
            "down_since": min(e["down_since"] for e in incident["sources"].values())[:19],
            "summary": dg.MetadataValue.md("\n".join(lines)),
            # what the rescue's end needs to publish the incident again (assets/report.py)
            "incident": dg.MetadataValue.json(dict(incident)),
            "rescues": dg.MetadataValue.json(dict(rescues)),
            "source_assets": dg.MetadataValue.json(
                {s: list(keys_by_label[s].path) for s in incident["sources"] if s in keys_by_label}
            ),
        },
    )


def source_observations(
    incident: Mapping[str, Any], keys_by_label: Mapping[str, dg.AssetKey], status: str
) -> list[dg.AssetObservation]:
    """On each source of the incident: which incident, and where to read it."""
    return [
        dg.AssetObservation(
            asset_key=keys_by_label[source],
            description=f"incident {incident['id']}: {status}",
            metadata={
                "incident": dg.MetadataValue.url(incident_url(incident["id"])),
                "incident_status": status,
            },
        )
        for source in incident["sources"]
        if source in keys_by_label
    ]


def already_shown(
    instance: dg.DagsterInstance, incident: Mapping[str, Any], rescues: Mapping[str, str]
) -> bool:
    """Its partition's latest materialization shows exactly this (the event log is the truth,
    not the sensor's cursor, which a reset or a replayed tick rewinds)."""
    latest = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=INCIDENT_ASSET, asset_partitions=[incident["id"]]), limit=1
    ).records
    if not latest:
        return False
    meta = latest[0].asset_materialization.metadata
    if "incident" not in meta or "rescues" not in meta:
        return False
    mine = {e["rescue_id"] for e in incident["sources"].values()} - {None, "none"}
    states = {k: v for k, v in rescues.items() if k in mine}
    return shown(meta["incident"].value) == shown(incident) and states == meta["rescues"].value


def evaluation(instance: dg.DagsterInstance, incident_id: str) -> dg.AssetCheckEvaluation | None:
    """incident_is_resolved against the incident's latest materialization (None: never seen)."""
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (
        AssetCheckEvaluationTargetMaterializationData,
    )

    latest = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=INCIDENT_ASSET, asset_partitions=[incident_id]), limit=1
    ).records
    if not latest:
        return None
    status = str(latest[0].asset_materialization.metadata["status"].value)
    return dg.AssetCheckEvaluation(
        asset_key=INCIDENT_ASSET,
        check_name=INCIDENT_IS_RESOLVED,
        passed=status == RESOLVED,
        **compat.evaluation_partition(incident_id),
        description=f"incident {incident_id}: {status}",
        metadata={"status": status, "incident": dg.MetadataValue.url(incident_url(incident_id))},
        target_materialization_data=AssetCheckEvaluationTargetMaterializationData(
            storage_id=latest[0].storage_id, run_id=latest[0].run_id, timestamp=latest[0].timestamp
        ),
    )


def after_rescue(
    instance: dg.DagsterInstance, incident_id: str, rescue_id: str, rescue_status: str
) -> list[dg.AssetMaterialization | dg.AssetObservation]:
    """The incident's partition again, now that one of its rescues has this status, and an
    observation on each of its sources saying so."""
    latest = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=INCIDENT_ASSET, asset_partitions=[incident_id]), limit=1
    ).records
    if not latest:
        return []
    meta = latest[0].asset_materialization.metadata
    incident = meta["incident"].value
    rescues = {**meta["rescues"].value, rescue_id: rescue_status}
    stored = meta["source_assets"].value if "source_assets" in meta else {}
    keys_by_label = {label: dg.AssetKey(path) for label, path in stored.items()}
    status = status_of(incident, rescues)
    return [
        materialization(incident, rescues, keys_by_label),
        *source_observations(incident, keys_by_label, status),
    ]


@dg.asset_check(
    asset=INCIDENT_ASSET,
    name=INCIDENT_IS_RESOLVED,
    **compat.check_partitions(INCIDENT_PARTITIONS),
    description="Passes when the incident's sources are fresh again and the rescue it caused "
    "succeeded (or nothing needed rescuing); fails with its status otherwise.",
)
def incident_is_resolved(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    # Dagster 1.12 has no partitioned checks (compat.py): there the latest incident's verdict
    incident_id = (
        context.partition_key
        if compat.PARTITIONED_CHECKS
        else ([""] + context.instance.get_dynamic_partitions(INCIDENT_PARTITIONS.name))[-1]
    )
    found = evaluation(context.instance, incident_id) if incident_id else None
    if found is None:
        return dg.AssetCheckResult(passed=False, description="no such incident was published")
    return dg.AssetCheckResult(
        passed=found.passed, description=found.description, metadata=found.metadata
    )


def fingerprint(incident: Mapping[str, Any]) -> str:
    return json.dumps(incident, sort_keys=True)


def shown(incident: Mapping[str, Any]) -> str:
    """What its partition shows: not the Dagster times of the last measurements."""
    sources = {
        source: {k: v for k, v in e.items() if not k.endswith("_ts")}
        for source, e in incident["sources"].items()
    }
    return json.dumps({**incident, "sources": sources}, sort_keys=True)
