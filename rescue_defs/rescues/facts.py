"""What the instance knows that planning needs: runs in flight, schedules, model history."""

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

import dagster as dg

from rescue_defs.planning.checklist import ActiveRun, Environment, UpcomingRun
from rescue_defs.planning.cost import FULL_REFRESH_KEY, History, besides_models
from rescue_defs.planning.manifest import DbtManifest
from rescue_defs.planning.plan import Plan, Planner, PlanRequest
from rescue_defs.planning.warehouse_items import WarehouseLoad
from rescue_defs.rescues.store import TAG_ID, TAG_KIND, TAG_STAGE

IN_FLIGHT = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
)


def run_models(
    run: dg.DagsterRun, by_key: Mapping[dg.AssetKey, str], everything: frozenset[str]
) -> frozenset[str]:
    """The models a run writes (unique_ids)."""
    if run.tags.get(TAG_KIND) in ("start", "cancel", "freshness", "status"):
        # rescue_job / cancel_rescue_job / rescue_status_job only record; source_freshness_job
        # only reads
        return frozenset()
    if run.tags.get(TAG_KIND) == "proof":
        # a proof run builds nothing in prod, but reads the models it proves: a writer of one
        # of them meanwhile would change what it compares
        checks = run.asset_check_selection
        if not checks:  # which checks it runs is not recorded: assume all of them
            return everything
        return frozenset(by_key[c.asset_key] for c in checks if c.asset_key in by_key)
    if run.asset_selection is None:
        # a run of a whole job writes whatever the job builds: assume all of it
        return everything
    return frozenset(by_key[k] for k in run.asset_selection if k in by_key)


def _data_today(instance: dg.DagsterInstance, today):
    """The day windows are judged by: RESCUE_TODAY / RESCUE_NOW when set, else a simulation's
    published clock (the bundled demo's, as its freshness checks are), else `today`."""
    from rescue_defs.project import configured_now
    from rescue_defs.published import published_clock

    if configured_now() is not None:
        return today
    simulated = published_clock(instance)
    return simulated.date() if simulated is not None else today


def runs_in_flight(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(statuses=list(IN_FLIGHT))))


def environment(
    instance: dg.DagsterInstance,
    manifest: DbtManifest,
    keys: Mapping[str, dg.AssetKey],
    schedules: Iterable[tuple[str, datetime]] = (),
    now: datetime | None = None,
    exclude_rescue: str | None = None,
    warehouse=None,
) -> Environment:
    """What the checklist needs to know about the instance right now (and about the DuckDB
    file of `warehouse`, a warehouse_reader.WarehouseTarget, when it is one)."""
    by_key = {k: uid for uid, k in keys.items()}
    everything = frozenset(keys)
    active = tuple(
        ActiveRun(run.run_id, run.status.value, run_models(run, by_key, everything), run.job_name)
        for run in runs_in_flight(instance)
        if not (exclude_rescue and run.tags.get(TAG_ID) == exclude_rescue)
    )
    coordinator = instance.run_coordinator
    limit = getattr(coordinator, "max_concurrent_runs", None)
    from rescue_defs.project import business_timezone, clock_now, peak_hours

    return Environment(
        warehouse_holder=_warehouse_holder(manifest, warehouse),
        now=now or clock_now().replace(tzinfo=UTC),
        timezone=business_timezone(),
        peak_hours=peak_hours(),
        active_runs=active,
        upcoming_runs=tuple(UpcomingRun(name, at, everything) for name, at in schedules),
        max_concurrent_runs=limit if isinstance(limit, int) and limit >= 0 else None,
        known=True,
    )


def _duckdb_file(manifest: DbtManifest, warehouse):
    """The DuckDB file the project's profile writes (its own, wherever the profile puts it),
    None on another adapter or without a warehouse (a bare manifest)."""
    from rescue_defs.warehouse_reader import duckdb_file

    if warehouse is None or manifest.raw.get("metadata", {}).get("adapter_type") != "duckdb":
        return None
    return duckdb_file(warehouse)


def _duckdb_busy(manifest: DbtManifest, warehouse) -> str:
    """Why a DuckDB warehouse is not to be opened now, "" when it may be: a process holding it
    (a pipeline run too: even a read-only connection would fail, or make it fail), or no file
    yet (dbt creates it with the first run: nothing to measure, said as a warning)."""
    from rescue_defs.warehouse_lock import holder

    path = _duckdb_file(manifest, warehouse)
    if path is None:
        return ""
    if not path.exists():
        return f"no warehouse file {path} yet (dbt creates it with the first run)"
    found = holder(path)
    return f"held by {found.describe()}" if found is not None else ""


def _warehouse_holder(manifest: DbtManifest, warehouse) -> str:
    """A process outside the pipeline holding the DuckDB warehouse, described."""
    from rescue_defs.warehouse_lock import holder

    path = _duckdb_file(manifest, warehouse)
    found = holder(path) if path is not None else None
    return found.describe() if found is not None and not found.is_pipeline else ""


def history(instance: dg.DagsterInstance, keys: Mapping[str, dg.AssetKey], limit: int = 5):
    """Recent durations per model (dagster-dbt's `Execution Duration` of each model), and what
    recent rescue runs cost besides their models (request to end, minus model time). Read in a
    bounded number of queries whatever the rescue's size (it was one per model): each model's
    latest materialization from the asset index (one query for all), and the materializations
    of the last successful runs, rescues (read for their overheads anyway) and others (the
    pipeline's normal builds)."""
    by_key = {key: uid for uid, key in keys.items()}
    incremental: dict[str, list[float]] = {}
    full_refresh: dict[str, list[float]] = {}
    seen: set[tuple] = set()

    def add(record) -> None:
        uid = by_key.get(record.asset_key)
        materialization = record.asset_materialization
        # the asset index and a run's own events number the same event apart (SQLite shards)
        same = (record.run_id, record.asset_key, record.timestamp)
        if uid is None or materialization is None or same in seen:
            return
        value = materialization.metadata.get("Execution Duration")
        if value is None:
            return
        seen.add(same)
        # rescue runs mark the models they built with --full-refresh (assets/dbt_build.py)
        full = materialization.metadata.get(FULL_REFRESH_KEY)
        kind = full_refresh if full is not None and full.value else incremental
        samples = kind.setdefault(uid, [])
        if len(samples) < limit:
            samples.append(float(value.value))

    # (no keys would read every asset's record: an empty list is no filter to the storage)
    for entry in instance.get_asset_records(list(by_key)) if by_key else ():
        if entry.asset_entry.last_materialization_record is not None:
            add(entry.asset_entry.last_materialization_record)
    overheads = []
    for overhead, events in recent_rescue_runs(instance):
        overheads.append(overhead)
        for event in events:
            add(event)
    for events in _recent_other_runs(instance):
        for event in events:
            add(event)
    return History(
        incremental=incremental,
        full_refresh=full_refresh,
        run_overhead=[o for o, _, _ in overheads],
        run_models=[n for _, n, _ in overheads],
        run_stages=[stages for _, _, stages in overheads],
    )


def _recent_other_runs(instance: dg.DagsterInstance, limit: int = 5):
    """The materialization records of the last successful runs that are not rescues."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]), limit=limit * 4
    )
    runs = [r.dagster_run.run_id for r in records if TAG_ID not in r.dagster_run.tags][:limit]
    for run_id in runs:
        yield instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records


def recent_rescue_runs(instance: dg.DagsterInstance, limit: int = 10):
    """((seconds besides the models' own time, models built, stages built), their
    materialization records) of recent successful rescue runs, the latest first."""
    from rescue_defs.rescues.proving import TAG_PROOF
    from rescue_defs.rescues.store import STEP_JOB

    records = instance.get_run_records(
        filters=dg.RunsFilter(job_name=STEP_JOB, statuses=[dg.DagsterRunStatus.SUCCESS]),
        limit=limit,
    )
    found = []
    for record in records:
        tags = record.dagster_run.tags
        # a proof's own run builds nothing: no sample of what building models costs
        if record.end_time is None or TAG_ID not in tags or tags.get(TAG_KIND) == "proof":
            continue
        events = instance.get_records_for_run(
            record.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
        built = []
        for event in events:
            if event.asset_materialization is None:
                continue
            value = event.asset_materialization.metadata.get("Execution Duration")
            built.append((event.timestamp, float(value.value) if value is not None else 0.0))
        overhead = besides_models(
            record.create_timestamp.timestamp(), record.end_time, built, TAG_PROOF in tags
        )
        # the stages it built one after the other (rescues/requests.py names them in its tag)
        stages = len([s for s in tags.get(TAG_STAGE, "").split("+") if s]) or 1
        found.append(((overhead, len(events), stages), events))
    return found


def plan_for(
    planner: Planner,
    instance: dg.DagsterInstance,
    request: PlanRequest,
    keys: Mapping[str, dg.AssetKey],
    previous: DbtManifest | None = None,
    schedules: Iterable[tuple[str, datetime]] = (),
    warehouse=None,
) -> Plan:
    """A plan with the instance's facts: runs in flight, history, and, read through dbt's
    adapter for `warehouse` (a warehouse_reader.WarehouseTarget; None: not read), rows landed
    late for periods before a windowed model's window and the warehouse's own load."""
    from rescue_defs.project import business_today
    from rescue_defs.rescues.late import late_rows
    from rescue_defs.warehouse_reader import (
        WarehouseUnavailable,
        first_line,
        open_adapter,
        relations_of,
        warehouse_load,
        with_inputs,
    )

    if request.today is None:
        request = dataclasses.replace(request, today=_data_today(instance, business_today()))
    env = environment(instance, planner.manifest, keys, schedules, warehouse=warehouse)
    # the history of the models in scope only: one event-log query per model, and a project
    # of thousands of models made every launch (and every automatic rescue) wait seconds
    scope = planner.selector.resolve(request.select, request.exclude).models
    if warehouse is None:
        late, note = None, "not measured: no warehouse connection (a bare manifest)"
    elif busy := _duckdb_busy(planner.manifest, warehouse):
        late, note = None, f"warehouse not read: {busy}"
        env = dataclasses.replace(env, warehouse_load=WarehouseLoad(note=f"not measured: {note}"))
    else:
        try:
            with open_adapter(warehouse) as adapter:
                late, note = late_rows(
                    instance, planner.manifest, keys, request.today, adapter=adapter
                )
                try:
                    load = warehouse_load(adapter, relations_of(planner.manifest, scope))
                except Exception as e:  # a catalog query refused: say so, plan on
                    load = WarehouseLoad(note=f"not measured: {str(e).strip()[:200]}")
                try:
                    load = with_inputs(load, adapter, planner.manifest, scope)
                except Exception as e:  # no information_schema here: say so, plan on
                    load = dataclasses.replace(load, inputs_note=f"not checked: {first_line(e)}")
        except WarehouseUnavailable as e:
            late, note = None, f"warehouse unavailable: {e}"
            load = WarehouseLoad(unavailable=str(e))
        env = dataclasses.replace(env, warehouse_load=load)
    return planner.plan(
        request,
        previous=previous,
        history=history(instance, {m: key for m, key in keys.items() if m in scope}),
        env=env,
        late=late,
        late_note=note,
    )


def next_ticks(schedule_defs, now: datetime | None = None, horizon=timedelta(hours=6)):
    """(name, time) of schedules firing within the horizon."""
    from dagster._utils.schedules import cron_string_iterator

    now = now or datetime.now(UTC)
    upcoming = []
    for schedule in schedule_defs:
        it = cron_string_iterator(
            now.timestamp(), schedule.cron_schedule, schedule.execution_timezone or "UTC"
        )
        at = next(it)
        if at <= now + horizon:
            upcoming.append((schedule.name, at))
    return upcoming
