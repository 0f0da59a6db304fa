"""source_outage_sensor: sources going down open incidents; when they are fresh again, one
rescue per incident rebuilds what was not rebuilt since they recovered.

It never opens the warehouse: it requests `source_freshness_job` runs (after a load of a source
asset, and every RESCUE_FRESHNESS_INTERVAL_SECONDS for sources loaded outside Dagster) and reads
their check results from the event log. Its state (open incidents, the last measurement read)
is its cursor, saved only after a good tick; rescues get ids derived from the incident and the
recovery, so a replayed tick registers nothing twice."""

import json
import time

import dagster as dg
import networkx as nx
from dagster_dbt import DbtProject

from rescue_defs import rescues, settings
from rescue_defs.assets import incidents as incident_asset
from rescue_defs.assets.dbt import load_manifest, model_asset_keys
from rescue_defs.automation import incidents
from rescue_defs.automation.launch import TAG_INCIDENT, launch, registered
from rescue_defs.checks.freshness import FRESHNESS_CHECK, freshness_rules
from rescue_defs.jobs.freshness import source_keys
from rescue_defs.planning.advice import is_incremental
from rescue_defs.planning.lineage import reached
from rescue_defs.planning.manifest import DbtManifest
from rescue_defs.planning.plan import PlanRequest
from rescue_defs.planning.selection import SelectionError
from rescue_defs.rescues.facts import IN_FLIGHT
from rescue_defs.scope import ONE_PROJECT, Scope

DONE = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def _seconds(name: str) -> float:
    return settings.get(name)


def observations(instance: dg.DagsterInstance, run_id: str, labels) -> list[incidents.Observation]:
    found = []
    for record in instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records:
        data = record.event_log_entry.dagster_event.asset_check_evaluation_data
        if data.check_name != FRESHNESS_CHECK or data.asset_key not in labels:
            continue
        meta = {k: v.value for k, v in data.metadata.items()}
        found.append(
            incidents.Observation(
                labels[data.asset_key],
                str(meta.get("status", "")),
                str(meta.get("measured_at", "")),
                str(meta.get("max_loaded_at", "")),
                record.event_log_entry.timestamp,
            )
        )
    return found


def rescue_scope(
    instance: dg.DagsterInstance, manifest: DbtManifest, sources: list[str], since_ts: float
) -> tuple[set[str], set[str]]:
    """(models to rebuild, models downstream already rebuilt since the recovery). Incremental
    models are rebuilt whatever the pipeline did: a backlog older than their cursor is what a
    plain incremental run misses (the advice and the proof decide how)."""
    keys = model_asset_keys(manifest)
    # one walk and one query for the lineage, not one each per model (a source feeding
    # 2,000 models: the recovery tick did 2,000 of each)
    downstream = reached(manifest.graph, sources) & set(manifest.models)
    built = [uid for uid in downstream if uid not in manifest.ephemeral]
    latest = instance.get_latest_materialization_events([keys[uid] for uid in built])
    stale = set()
    for uid in built:
        event = latest.get(keys[uid])
        if is_incremental(manifest.models[uid]) or event is None or event.timestamp <= since_ts:
            stale.add(uid)
    rebuild = stale | (reached(manifest.model_graph, stale) & downstream)
    # an ephemeral model goes with its consumers
    rebuild |= {
        uid
        for uid in downstream & manifest.ephemeral
        if nx.descendants(manifest.graph, uid) & rebuild
    }
    return rebuild, downstream - rebuild


def build_source_outage_sensor(
    project: DbtProject,
    freshness_job,
    schedule_defs=(),
    loaded_by_dagster: bool = False,
    scope: Scope = ONE_PROJECT,
) -> dg.SensorDefinition:
    manifest_path, project_dir = str(project.manifest_path), str(project.project_dir)
    freshness_job_name = freshness_job.name

    @dg.sensor(
        name=scope.named("source_outage_sensor"),
        jobs=[freshness_job],
        minimum_interval_seconds=settings.get("RESCUE_OUTAGE_SENSOR_SECONDS"),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Measures source freshness in queued runs (after each load, and at least "
        "every RESCUE_FRESHNESS_INTERVAL_SECONDS); a source past error_after opens an incident; "
        "when its sources are fresh again, registers one rescue of what was not rebuilt since "
        "(rescue/reason=outage, rescue/incident=<id>), which rescue_sensor runs.",
    )
    def source_outage_sensor(context: dg.SensorEvaluationContext):
        manifest = load_manifest(manifest_path, project_dir)
        rules = freshness_rules(manifest.raw)
        keys = source_keys(project)
        labels = {keys[uid]: rule.label for uid, rule in rules.items()}
        uid_of = {rule.label: uid for uid, rule in rules.items()}
        cursor = json.loads(context.cursor) if context.cursor else {}
        state = cursor.get("state", {"open": []})
        instance = context.instance
        messages: list[str] = []

        def landed(label: str, after_ts: float) -> float | None:
            result = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=keys[uid_of[label]], after_timestamp=after_ts),
                limit=20,
                ascending=True,
            )
            for record in result.records:
                meta = record.asset_materialization.metadata
                down = meta.get("source_down")
                if not (down is not None and down.value):
                    return record.timestamp
            return None

        before = {i["id"]: incident_asset.fingerprint(i) for i in state.get("open", [])}
        # 1. fold in the measurement runs that finished since the last tick, oldest first
        after = cursor.get("after", 0)
        latest_now = ""
        runs = instance.get_run_records(
            filters=dg.RunsFilter(job_name=freshness_job_name), limit=50
        )
        for record in sorted(runs, key=lambda r: r.storage_id):
            if record.storage_id <= after:
                continue
            if record.dagster_run.status not in DONE:
                break  # read in order: wait for it
            found = observations(instance, record.dagster_run.run_id, labels)
            messages += incidents.apply(state, found, landed)
            latest_now = max([latest_now, *(o.measured_at for o in found)])
            after = record.storage_id
        current = {i["id"]: i for i in state.get("open", [])}  # kept once rescued (step 2)
        # 2. recovered incidents: one rescue each
        now = latest_now or cursor.get("measured_at", "")
        group = _seconds("RESCUE_RECOVERY_GROUP_SECONDS")
        for recovery in incidents.ready(state, now, group) if now else []:
            messages.append(
                _rescue(instance, project, manifest, recovery, uid_of, schedule_defs, state)
            )
        # 3. a measurement, when one is due
        requests = _measurement(
            instance, freshness_job_name, keys.values(), runs, loaded_by_dagster
        )
        cursor = {"after": after, "state": state, "measured_at": now}
        for message in messages:
            context.log.info(message)
        open_ = [
            f"{i['id']} ({', '.join(s for s, e in i['sources'].items() if e['rescue_id'] is None)})"
            for i in state["open"]
        ]
        never = sorted(set(uid_of) - set(state.get("seen", [])))
        summary = "; ".join(messages) or (
            f"open incident(s): {', '.join(open_)}"
            if open_
            else "no open incident" + (f"; never loaded yet: {', '.join(never)}" if never else "")
        )
        changed = [
            i for iid, i in current.items() if incident_asset.fingerprint(i) != before.get(iid)
        ]
        events, published = _published(instance, changed, before, {v: k for k, v in labels.items()})
        new = [i["id"] for i in changed if i["id"] not in before]
        partitions = [
            dg.AddDynamicPartitionsRequest(name, ids)
            for name, ids in (
                (incident_asset.INCIDENT_PARTITIONS.name, new),
                (incident_asset.UNEVALUATED, published),  # rescue_report_sensor's to evaluate
            )
            if ids
        ]
        return dg.SensorResult(
            run_requests=requests,
            skip_reason=None if requests else summary,
            cursor=json.dumps(cursor),
            asset_events=events,
            dynamic_partitions_requests=partitions,
        )

    return source_outage_sensor


def _published(instance, changed, before, keys_by_label):
    """(events, ids of the incidents published) for incidents whose shown state changed: their
    partition of source_incidents, an observation on each of their sources. Their check is
    evaluated again after each (a new materialization leaves an older verdict stale)."""
    rescue_ids = [
        e["rescue_id"]
        for i in changed
        for e in i["sources"].values()
        if e["rescue_id"] not in (None, "none")
    ]
    states = {r["id"]: r["status"] for r in rescues.store.records(instance, rescue_ids)}
    events, evaluate = [], []
    for incident in changed:
        status = incident_asset.status_of(incident, states)
        previous = before.get(incident["id"])
        if previous is not None and incident_asset.shown(json.loads(previous)) == (
            incident_asset.shown(incident)
        ):
            continue  # e.g. a source measured down again: nothing new to show
        if incident_asset.already_shown(instance, incident, states):
            continue  # a replayed tick (cursor reset): the event log shows this already
        events.append(incident_asset.materialization(incident, states, keys_by_label))
        events += incident_asset.source_observations(incident, keys_by_label, status)
        evaluate.append(incident["id"])
    return events, evaluate


def _rescue(instance, project, manifest, recovery, uid_of, schedule_defs, state) -> str:
    where = f"incident {recovery.incident_id} ({', '.join(recovery.sources)})"
    existing = registered(instance, recovery.rescue_id)
    if existing is not None:
        # a replayed measurement (a sensor cursor reset, a tick the daemon did not save): the
        # rescue of this recovery exists, whatever was rebuilt since
        incidents.mark_rescued(state, recovery, existing["id"])
        return f"{where}: recovered; rescue {existing['id']} was already registered"
    sources = [uid_of[s] for s in recovery.sources if s in uid_of]
    rebuild, fresh = rescue_scope(instance, manifest, sources, recovery.since_ts)
    if not rebuild:
        incidents.mark_rescued(state, recovery, "none")
        return (
            f"{where}: recovered; every model downstream ({len(fresh)}) was rebuilt since the "
            "recovery and none is incremental: nothing to rescue"
        )
    select = " ".join(f"source:{s}+" for s in recovery.sources)
    exclude = " ".join(sorted(manifest.name(m) for m in fresh))
    request = PlanRequest(select=select, exclude=exclude, reason="outage")
    trigger = {
        "kind": "outage",
        "incident": recovery.incident_id,
        "sources": list(recovery.sources),
        "down_since": recovery.down_since,
        "opened_at": recovery.opened_at,
        "recovered_at": recovery.recovered_at,
        "already_rebuilt": sorted(manifest.name(m) for m in fresh),
    }
    try:
        record, created = launch(
            instance,
            project,
            request,
            recovery.rescue_id,
            trigger,
            {TAG_INCIDENT: recovery.incident_id},
            schedule_defs,
        )
    except (rescues.RescueError, SelectionError) as e:
        return f"{where}: recovered, rescue not registered yet ({e}); next tick"
    incidents.mark_rescued(state, recovery, record["id"])
    verb = "registered" if created else "was already registered"
    return (
        f"{where}: recovered; rescue {record['id']} {verb}: {len(record['plan']['models'])} "
        f"model(s), {len(fresh)} already rebuilt since the recovery"
    )


def _measurement(
    instance, job_name: str, source_keys, runs, loaded_by_dagster: bool
) -> list[dg.RunRequest]:
    if any(r.dagster_run.status in IN_FLIGHT for r in runs):
        return []
    last = max(runs, key=lambda r: r.storage_id, default=None)
    since = last.create_timestamp.timestamp() if last else 0.0
    marker = ""
    if last is None:
        # sources Dagster loads are measured after their first load: before it their tables
        # do not exist, and a fresh deployment would start with every check red
        loaded = not loaded_by_dagster or any(
            instance.get_latest_materialization_event(key) is not None for key in source_keys
        )
        marker = "first" if loaded else ""
    else:
        newest = 0
        for key in source_keys:
            event = instance.get_latest_materialization_event(key)
            if event is not None and event.timestamp > since:
                newest = max(newest, event.timestamp)
        if newest:
            marker = f"load-{newest:.3f}"
        elif time.time() - since >= _seconds("RESCUE_FRESHNESS_INTERVAL_SECONDS"):
            marker = f"after-{last.dagster_run.run_id}"
    if not marker:
        return []
    return [dg.RunRequest(run_key=f"freshness:{marker}", job_name=job_name)]
