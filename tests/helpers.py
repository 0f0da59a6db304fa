"""What tests do again and again, written once."""

import os
from pathlib import Path

import dagster as dg
import duckdb
from dagster_dbt import DagsterDbtTranslator

from rescue_defs.demo.raw import raw_sources


def raw_config(through: str, down: tuple[str, ...] = (), late_returns: int = 0) -> dict:
    return {
        "ops": {
            raw_sources.op.name: {
                "config": {
                    "through_date": through,
                    "sources_down": list(down),
                    "late_returns": late_returns,
                }
            }
        }
    }


def materialize_all(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    run_config: dict | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    """What "Materialize all" launches: every materializable asset and its checks."""
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        instance=instance,
        run_config=run_config or {},
        raise_on_error=raise_on_error,
        asset_selection=list(defs.resolve_asset_graph().materializable_asset_keys),
    )


def query(path: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute(sql, params or []).fetchall()


def failed_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    return [
        f"{e.asset_check_evaluation_data.asset_key.to_user_string()}:"
        f"{e.asset_check_evaluation_data.check_name}"
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        and not e.asset_check_evaluation_data.passed
    ]


def rows_differing(a: Path, b: Path, table: str) -> int:
    """Rows of `table` in one DuckDB file and not the other, duplicates counted."""
    with duckdb.connect(":memory:") as conn:
        conn.execute("attach ? as a (read_only)", [str(a)])
        conn.execute("attach ? as b (read_only)", [str(b)])
        return conn.execute(
            f"select count(*) from ((select * from a.{table} except all select * from b.{table})"
            f" union all (select * from b.{table} except all select * from a.{table}))"
        ).fetchone()[0]


def dbt_commands(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The dbt command lines a run logged, as dagster-dbt prints them (and as the step says
    those it started in a thread, whose own log Dagster may not capture: once each)."""
    import re

    commands: list[str] = []
    for r in instance.all_logs(run_id):
        m = re.search(r"(Running dbt command|Ran dbt command ahead): `(.*)`", r.user_message or "")
        if m and not (m.group(1).startswith("Ran") and m.group(2) in commands):
            commands.append(m.group(2))
    return commands


def evaluate_rescue_sensor(
    defs: dg.Definitions, instance: dg.DagsterInstance, name: str = "rescue_sensor"
):
    sensor = defs.resolve_sensor_def(name)
    with dg.build_sensor_context(instance=instance, definitions=defs) as context:
        result = sensor.evaluate_tick(context)
    return result


def evaluate_sensor(defs: dg.Definitions, instance: dg.DagsterInstance, name: str):
    """One tick of a sensor as the daemon evaluates it: with the instance that knows the dynamic
    partitions its run requests name, and applying its partition requests."""
    from dagster._core.definitions.partitions.context import partition_loading_context

    sensor = defs.resolve_sensor_def(name)
    with partition_loading_context(dynamic_partitions_store=instance):
        with dg.build_sensor_context(instance=instance, definitions=defs) as context:
            result = sensor.evaluate_tick(context)
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.DeleteDynamicPartitionsRequest):
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
        else:
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
    return result


def execute_request(defs, instance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def(request.job_name)
    if request.asset_selection is None:  # the whole job (e.g. source_freshness_job)
        return job.execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            tags=request.tags,
            run_config=request.run_config or {},
            raise_on_error=False,
        )
    selection: list | None = list(request.asset_selection)
    if request.asset_check_keys is not None:  # as the daemon launches it: only these planned
        job = job.get_subset(
            asset_selection=set(selection), asset_check_selection=set(request.asset_check_keys)
        )
        selection = None
    return job.execute_in_process(
        instance=instance,
        asset_selection=selection,
        tags=request.tags,
        run_config=request.run_config,
        raise_on_error=False,
    )


def waiting_query(folder: Path) -> str:
    """A DuckDB query dbt runs until it is stopped, using no core meanwhile: it reads a named
    pipe nobody writes (counting 10**11 rows burned both cores for the test's whole wait, and
    on two free cores ended before the test's signal)."""
    pipe = folder / "never_written.csv"
    os.mkfifo(pipe)
    return f"select count(*) from read_csv('{pipe}')"


def is_alive(pid: int) -> bool:
    """A live process (not a zombie waiting to be reaped) has this pid (Linux)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill_child_dbt(*words: str) -> bool:
    """SIGKILL this process's dbt children whose command line holds each of `words` (e.g.
    "build"); True when one was killed. A child that exits meanwhile (the proof's `dbt parse`
    runs beside a build) is skipped: reading its command line would raise, ending the test
    with its run still going in a thread, which deadlocks the next test's run in logging."""
    import psutil

    killed = False
    for proc in psutil.Process().children(recursive=True):
        try:
            line = proc.cmdline()
            if any("dbt" in a for a in line) and all(w in line for w in words):
                proc.kill()
                killed = True
        except psutil.Error:
            continue
    return killed


def drive_rescue(
    defs, instance, rescue_id: str, max_ticks: int = 12, on_request=None, sensor="rescue_sensor"
) -> dict:
    """Tick the real rescue_sensor and run what it asks for, until the rescue stops."""
    from rescue_defs import rescues

    for _ in range(max_ticks):
        result = evaluate_rescue_sensor(defs, instance, sensor)
        for request in result.run_requests or []:
            (on_request or execute_request)(defs, instance, request)
        record = rescues.load(instance, rescue_id)
        if record["status"] != rescues.ACTIVE:
            return record
    raise AssertionError(f"rescue {rescue_id} still active after {max_ticks} ticks")


def start_rescue(defs, instance, project: str = "", **config) -> dg.ExecuteInProcessResult:
    """rescue_job's run as the launchpad starts it (`project`: the dbt project's, where the
    location holds several)."""
    prefix = f"{project}_" if project else ""
    job = defs.resolve_job_def(f"{prefix}rescue_job")
    return job.execute_in_process(
        instance=instance,
        run_config={"ops": {f"{prefix}start_rescue": {"config": config}}},
        raise_on_error=False,
    )


def rescue_id_of(result: dg.ExecuteInProcessResult) -> str:
    (op,) = [n for n in result.job_def.graph.node_names() if n.endswith("start_rescue")]
    return result.output_for_node(op)


def checks_of(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    """(asset, check name) -> the evaluation a run logged."""
    found = {}
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            data = event.asset_check_evaluation_data
            found[(data.asset_key.to_user_string(), data.check_name)] = data
    return found


def create_postgres_database(prefix: str) -> str:
    """A fresh database on the local PostgreSQL server; the test skips when there is none."""
    import uuid

    import pytest

    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    except psycopg2.OperationalError:
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    admin.autocommit = True
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with admin.cursor() as cur:
        cur.execute(f'create database "{name}"')
    admin.close()
    return name


def postgres_storage_yaml(database: str) -> str:
    """dagster.yaml's `storage:` section for Dagster's storage in `database` on the local
    PostgreSQL server (appended to a home's dagster.yaml)."""
    return (
        "\nstorage:\n  postgres:\n    postgres_db:\n      username: postgres\n"
        "      password: ''\n      hostname: 127.0.0.1\n"
        f"      db_name: {database}\n      scheme: postgresql+psycopg2\n"
    )


def drop_postgres_database(name: str) -> None:
    import psycopg2

    admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'drop database if exists "{name}" with (force)')
    admin.close()


def outage_ticker(defs: dg.Definitions, instance: dg.DagsterInstance, project: str = ""):
    """tick(): one source_outage_sensor tick as the daemon runs it, the freshness run it
    queued, another tick to read its result; returns the sensor's open incidents."""
    import json

    prefix = f"{project}_" if project else ""
    sensor = defs.resolve_sensor_def(f"{prefix}source_outage_sensor")
    cursor: list = [None]

    def tick() -> list[dict]:
        for measure in (True, False):
            with dg.build_sensor_context(
                instance=instance, definitions=defs, cursor=cursor[0]
            ) as context:
                result = sensor.evaluate_tick(context)
            cursor[0] = result.cursor
            # as the daemon: the incidents' events and partitions, then the runs
            for event in result.asset_events:
                instance.report_runless_asset_event(event)
            for request in result.dynamic_partitions_requests or []:
                instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
            for request in result.run_requests if measure else ():
                assert request.job_name == f"{prefix}source_freshness_job"
                execute_request(defs, instance, request)
            # incident_is_resolved, as rescue_report_sensor evaluates it
            for request in evaluate_sensor(defs, instance, "rescue_report_sensor").run_requests:
                assert execute_request(defs, instance, request).success
        return json.loads(cursor[0])["state"]["open"]

    return tick


class PrefixTranslator(DagsterDbtTranslator):
    """dagster-dbt's translator with every asset key under `prefix`, as teams key theirs."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def get_asset_key(self, dbt_resource_props) -> dg.AssetKey:
        return super().get_asset_key(dbt_resource_props).with_prefix(self.prefix)


def listed_by(invocation) -> list[str]:
    """What a `dbt ls` invocation printed, sorted."""
    events = [e.raw_event for e in invocation.stream_raw_events()]
    return sorted(e["info"]["msg"] for e in events if e["info"]["name"] == "PrintEvent")
