"""A team's deployment (issue 26): the webserver (`dagster-webserver -w`), the daemon
(`dagster-daemon run -w`) and a gRPC code server (`dagster api grpc`) as separate processes,
each in its own working directory with a DAGSTER_HOME holding only `dagster.yaml` (storage on
PostgreSQL; no disk shared between them but the code). The code is the team's own project
(tests/team_project: its `@dbt_assets`, translator, config, nightly job and schedule, rescue
added by one call) over the Fivetran-style packages, on a PostgreSQL warehouse.

Nobody types anything after the deploy: the connector goes stale, the daemon opens an incident;
it comes back with a backlog a lookback cannot see, the daemon rescues and proves. Then a merge
is deployed as a deploy does it (new code, `dbt parse`, code server and daemon restarted): the
daemon rescues what the merge changed. After each, every table equals a from-scratch build."""

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from rescue_defs import rescues
from tests.conftest import NO_COMPUTE_LOGS
from tests.demo_server import free_port, wait_for
from tests.helpers import create_postgres_database, drop_postgres_database
from tests.tickets import (
    DDL,
    RAW,
    Landing,
    differences_from_a_from_scratch_build,
    install_packages,
)

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DAY = timedelta(days=1)


def dagster_yaml(database: str) -> str:
    """The demo's instance settings (queue, pools, run monitoring), storage on PostgreSQL."""
    compute_logs = NO_COMPUTE_LOGS["compute_logs"]
    # a Postgres warehouse takes concurrent writers: the README's advice for it (the demo's
    # limit of 1 is DuckDB's); a rescue still never starts over a run writing its models
    settings = (REPO / "dagster.yaml").read_text().replace("default_limit: 1", "default_limit: 4")
    assert "default_limit: 4" in settings
    return settings + (
        f"\ncompute_logs:\n  module: {compute_logs['module']}\n  class: {compute_logs['class']}\n"
        "storage:\n  postgres:\n    postgres_db:\n      username: postgres\n      password: ''\n"
        f"      hostname: 127.0.0.1\n      db_name: {database}\n"
        "      scheme: postgresql+psycopg2\n"
    )


class Deployment:
    """Three processes, each with its own folder and home; the code in its own folder."""

    def __init__(self, root: Path, database: str, env: dict[str, str]):
        self.root, self.env, self.grpc_port = root, env, free_port()
        self.web_port = free_port()
        self.processes: dict[str, subprocess.Popen] = {}
        for name in ("code", "daemon", "web", "tests"):
            home = root / name / "home"
            home.mkdir(parents=True)
            (home / "dagster.yaml").write_text(dagster_yaml(database))
        workspace = (
            "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
            f"      port: {self.grpc_port}\n      location_name: analytics\n"
        )
        for name in ("daemon", "web"):
            (root / name / "workspace.yaml").write_text(workspace)

    def log(self, name: str) -> Path:
        return self.root / name / "out.log"

    def start(self, name: str) -> None:
        command = {
            "code": [
                BIN / "dagster",
                *("api", "grpc", "-f", "definitions.py", "-h", "127.0.0.1"),
                *("-p", str(self.grpc_port)),
            ],
            "daemon": [BIN / "dagster-daemon", "run", "-w", "workspace.yaml"],
            "web": [
                BIN / "dagster-webserver",
                *("-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(self.web_port)),
            ],
        }[name]
        with self.log(name).open("a") as out:
            self.processes[name] = subprocess.Popen(
                [str(c) for c in command],
                cwd=self.root / name,
                env={**self.env, "DAGSTER_HOME": str(self.root / name / "home")},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )
        if name == "code":
            wait_for(self._code_answers, 180, "the code server", self.log(name))

    def _code_answers(self) -> bool:
        if self.processes["code"].poll() is not None:
            raise AssertionError(f"the code server exited:\n{self.log('code').read_text()}")
        done = subprocess.run(
            [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(self.grpc_port)],
            capture_output=True,
            timeout=30,
        )
        return done.returncode == 0

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:  # run workers the code server started end with it
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def client(self):
        from dagster_graphql import DagsterGraphQLClient

        return DagsterGraphQLClient("127.0.0.1", port_number=self.web_port)

    def instance(self) -> dg.DagsterInstance:
        """The tests' own view of the same storage (a fourth home: DAGSTER_HOME for the test,
        set by the fixture and restored after it)."""
        return dg.DagsterInstance.get()

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}:\n{self.log(name).read_text()[-3000:]}"
            for name in ("code", "daemon", "web")
            if self.log(name).exists()
        )


@pytest.fixture
def deployment(tmp_path: Path, monkeypatch) -> Iterator[tuple[Deployment, dict]]:
    storage = create_postgres_database("rescue_deploy_storage")
    warehouse = create_postgres_database("rescue_deploy_warehouse")
    root, profiles = install_packages(tmp_path, "postgres", warehouse)
    code = tmp_path / "deploy" / "code"
    code.mkdir(parents=True)
    shutil.copy(REPO / "tests" / "team_project" / "definitions.py", code / "definitions.py")
    project = root / "ticket_analytics"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "TEAM_DBT_PROJECT_DIR": str(project),
        "TEAM_DBT_PROFILES_DIR": str(profiles),
        "DBT_PROFILES_DIR": str(profiles),
        # measure freshness every tick and rescue a recovery at once: the test's clock is
        # the real one, and it does not wait an hour
        "RESCUE_FRESHNESS_INTERVAL_SECONDS": "0",
        "RESCUE_RECOVERY_GROUP_SECONDS": "0",
        # and the daemon evaluates the outage and merge sensors on each of its loops (every
        # 5 s), not every 30 and 60 s (5 here made ticks 10 s apart half the time: the time
        # since the last tick is measured a little under 5 s)
        "RESCUE_OUTAGE_SENSOR_SECONDS": "1",
        "RESCUE_MERGE_SENSOR_SECONDS": "1",
    }
    for name in ("RESCUE_NOW", "RESCUE_TODAY", "RESCUE_DUCKDB_PATH"):
        env.pop(name, None)
        monkeypatch.delenv(name, raising=False)
    landing = Landing("postgres", warehouse)
    landing.run([(sql, []) for sql in DDL])
    landing.run(
        [
            (
                f'insert into {RAW}."user" values (%s, %s, %s)',
                [i, f"requester {i}", datetime(2026, 1, 1)],
            )
            for i in range(1, 5)
        ]
    )
    deploy(project, env)
    where = Deployment(tmp_path / "deploy", storage, env)
    monkeypatch.setenv("DAGSTER_HOME", str(where.root / "tests" / "home"))
    tickets = {"kind": "postgres", "project": project, "profiles": profiles, "landing": landing}
    try:
        yield where, tickets
    finally:
        for name in list(where.processes):
            where.stop(name)
        drop_postgres_database(warehouse)
        drop_postgres_database(storage)


def deploy(project: Path, env: dict[str, str]) -> None:
    """What the team's CI does before the code server starts: packages and the manifest."""
    for command in (["deps"], ["parse"]):
        subprocess.run([str(BIN / "dbt"), *command, "--quiet"], cwd=project, env=env, check=True)


def nightly(where: Deployment) -> str:
    """The team's own job, launched as its schedule or the UI launches it."""
    client = where.client()
    run_id = client.submit_job_execution(
        "nightly_analytics_job", repository_location_name="analytics"
    )
    return wait_for(
        lambda: (s := client.get_run_status(run_id).value) in ("SUCCESS", "FAILURE") and s,
        300,
        "the nightly job",
        where.log("daemon"),
    )


def rescue_ended(where: Deployment, reason: str, known: set[str]) -> dict:
    """The rescue the daemon registered for `reason`, once it has ended."""

    def ended():
        with where.instance() as instance:
            for rescue_id in set(rescues.rescue_ids(instance)) - known:
                record = rescues.load(instance, rescue_id)
                if record["reason"].startswith(reason) and record["status"] != rescues.ACTIVE:
                    return record
        return None

    try:
        record = wait_for(ended, 600, f"the {reason} rescue to end", where.log("daemon"))
    except AssertionError as e:
        raise AssertionError(f"{e}\n{where.logs()}") from None
    assert record["status"] == rescues.SUCCEEDED, f"{record['message']}\n{failures(where, record)}"
    return record


def said_in_step_runs(where: Deployment, record: dict, words: str) -> list[str]:
    """The messages of the rescue's runs' logs that hold `words`."""
    with where.instance() as instance:
        return [
            event.message
            for run in rescues.step_runs(instance, record["id"])
            for event in instance.all_logs(run.run_id)
            if words in (event.message or "")
        ]


def failures(where: Deployment, record: dict) -> str:
    """The step failures of the rescue's runs, to say why it stopped."""
    found = []
    with where.instance() as instance:
        for run in rescues.step_runs(instance, record["id"]):
            for event in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
                data = event.dagster_event.step_failure_data
                found.append(f"{run.run_id[:8]}: {data.error.message if data.error else ''}")
                found.append(str(data.user_failure_data))
    return "\n".join(found)


def test_a_teams_deployment_rescues_an_outage_and_a_merge_with_nobody_typing(deployment):
    where, tickets = deployment
    landing: Landing = tickets["landing"]
    today = datetime.now(UTC).date()
    for name in ("code", "daemon", "web"):
        where.start(name)
    wait_for(lambda: where.client()._execute("{ version }"), 120, "the UI", where.log("web"))

    # five days landed, the last synced three days ago: the nightly job builds them, and
    # the connector is down (its data older than the 24 h error_after)
    stale = datetime.combine(today - 3 * DAY, datetime.min.time())
    first = today - 10 * DAY
    for n in range(5):
        landing.land_day(first + n * DAY, stale)
    assert nightly(where) == "SUCCESS"

    def incident_open():
        with where.instance() as instance:
            return instance.get_dynamic_partitions("incidents")

    wait_for(incident_open, 180, "an incident", where.log("daemon"))
    with where.instance() as instance:
        assert rescues.rescue_ids(instance) == []

    # back with five days of backlog, a resynced correction of an old ticket (its updated_at
    # unchanged) and a comment dated years back: both outside the lookback
    now = datetime.now(UTC).replace(tzinfo=None)
    for n in range(5, 10):
        landing.land_day(first + n * DAY, now)
    old = list(landing.tickets[f"T{first:%m%d}0"])
    old[3], old[7] = "urgent", now
    landing.write_tickets([old])
    landing.run(
        [
            (
                f"insert into {RAW}.ticket_comment values (%s, %s, %s, %s, %s)",
                [
                    "C-2019",
                    f"T{first:%m%d}1",
                    "found in an old export",
                    datetime(2019, 5, 4, 12),
                    now,
                ],
            )
        ]
    )
    outage = rescue_ended(where, "outage", set())
    assert outage["proof"]["status"] == "equal"
    # its run worker, started by the team's code server, imported dbt while it loaded the code
    # location, and that dbt ran the step's build (the step's log says which dbt ran it)
    assert said_in_step_runs(where, outage, "ran in the dbt this run worker imported"), where.logs()
    project = tickets["project"]
    assert differences_from_a_from_scratch_build(tickets, _Project(project), where.root) == {}

    # a merge: the status summary counts distinct requesters too; deployed as a deploy does it
    model = project / "models" / "tickets__status_summary.sql"
    model.write_text(
        model.read_text().replace(
            "count(*) as tickets,",
            "count(*) as tickets,\n    count(distinct requester_id) as requesters,",
        )
    )
    where.stop("code")
    where.stop("daemon")
    deploy(project, where.env)
    where.start("code")
    where.start("daemon")
    merge = rescue_ended(where, "merge", {outage["id"]})
    assert any(
        merge["names"].get(m) == "tickets__status_summary"
        for step in merge["steps"]
        for m in step["models"]
    )
    assert differences_from_a_from_scratch_build(tickets, _Project(project), where.root / "m") == {}


class _Project:
    """What the comparison reads of a project: its folder and the deployed manifest."""

    def __init__(self, project_dir: Path):
        self.project_dir = project_dir
        self.manifest_path = project_dir / "target" / "manifest.json"
