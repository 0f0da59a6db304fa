"""An outage on a project we did not write, on DuckDB and on the real PostgreSQL warehouse.

`tests/fixtures/ticket_analytics` is written like a public Fivetran transform package: a local
source package installed by `dbt deps` (`tickets_source`, its own schema), sources landed
outside Dagster with `_fivetran_synced`, ephemeral intermediates, two incremental
delete+insert models whose `is_incremental()` filter is a lookback on business dates, columns
computed at build time, and profiles with a second target. Its connector goes down for five
days and comes back with a backlog that a lookback cannot see (a resynced correction of an old
ticket, a comment dated years back). The automatic rescue, with default settings, must end
`succeeded` only with every table equal to a from-scratch build: its proof finds both
incremental models different, the rescue rebuilds them with --full-refresh itself and proves
them again.
"""

import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from rescue_defs import rescues
from rescue_defs.definitions import build_definitions
from rescue_defs.project import load_dbt_project
from tests.conftest import FIXTURES
from tests.helpers import (
    create_postgres_database,
    drive_rescue,
    drop_postgres_database,
    materialize_all,
    outage_ticker,
)

RAW = "tickets_raw"
BUILD_TIME = {"seconds_open", "_run_started_at"}  # now() in SQL; declared in meta
DDL = [
    f"create schema if not exists {RAW}",
    f"create table {RAW}.ticket (id varchar(20), subject varchar(80), status varchar(20), "
    "priority varchar(20), requester_id integer, created_at timestamp, updated_at timestamp, "
    "_fivetran_synced timestamp, _fivetran_deleted boolean)",
    f"create table {RAW}.ticket_comment (id varchar(20), ticket_id varchar(20), "
    "body varchar(80), created_at timestamp, _fivetran_synced timestamp)",
    f'create table {RAW}."user" (id integer, name varchar(40), _fivetran_synced timestamp)',
]


class Landing:
    """The connector: lands rows in the warehouse with bound parameters, outside Dagster."""

    def __init__(self, kind: str, where: str):
        self.kind, self.where = kind, where
        self.tickets: dict[str, list] = {}

    def run(self, statements: list[tuple[str, list]]) -> None:
        if self.kind == "duckdb":
            with duckdb.connect(self.where) as conn:
                for sql, params in statements:
                    conn.execute(sql.replace("%s", "?"), params)
            return
        import psycopg2

        with psycopg2.connect(host="127.0.0.1", user="postgres", dbname=self.where) as conn:
            with conn.cursor() as cur:
                for sql, params in statements:
                    cur.execute(sql, params)
        conn.close()

    def rows(self, sql: str) -> list[tuple]:
        if self.kind == "duckdb":
            with duckdb.connect(self.where, read_only=True) as conn:
                return conn.execute(sql).fetchall()
        import psycopg2

        with psycopg2.connect(host="127.0.0.1", user="postgres", dbname=self.where) as conn:
            with conn.cursor() as cur:
                cur.execute(sql)
                found = cur.fetchall()
        conn.close()
        return found

    def land_day(self, day: date, synced: datetime) -> None:
        """One business day's tickets, comments and status changes, synced at `synced`."""
        at = datetime.combine(day, datetime.min.time())
        statements: list[tuple[str, list]] = []
        changed: list[list] = []
        for i in range(3):
            ticket_id = f"T{day:%m%d}{i}"
            created = at + timedelta(hours=9 + i)
            changed.append(
                [
                    ticket_id,
                    f" Ticket {i} of {day} ",
                    "NEW",
                    ("low", "normal", "high")[i],
                    1 + (day.day + i) % 4,
                    created,
                    created,
                    synced,
                    False,
                ]
            )
            for j in range(2):
                statements.append(
                    (
                        f"insert into {RAW}.ticket_comment values (%s, %s, %s, %s, %s)",
                        [
                            f"C{day:%m%d}{i}{j}",
                            ticket_id,
                            f"comment {j}",
                            created + timedelta(minutes=30 + j),
                            synced,
                        ],
                    )
                )
        solved = f"T{day - timedelta(days=2):%m%d}0"
        if solved in self.tickets:  # a ticket of two days ago is solved today
            row = list(self.tickets[solved])
            row[2], row[6], row[7] = "SOLVED", at + timedelta(hours=15), synced
            changed.append(row)
        self.write_tickets(changed, statements)

    def write_tickets(self, rows: list[list], statements: list | None = None) -> None:
        statements = statements if statements is not None else []
        for row in rows:
            self.tickets[row[0]] = row
            statements.append((f"delete from {RAW}.ticket where id = %s", [row[0]]))
            statements.append(
                (f"insert into {RAW}.ticket values (%s, %s, %s, %s, %s, %s, %s, %s, %s)", row)
            )
        self.run(statements)


def _profiles(kind: str, where: str) -> str:
    if kind == "duckdb":
        out = "      type: duckdb\n      path: \"{{ env_var('RESCUE_DUCKDB_PATH') }}\"\n"
    else:
        out = (
            "      type: postgres\n      host: 127.0.0.1\n      port: 5432\n"
            f"      user: postgres\n      password: ''\n      dbname: {where}\n"
        )
    return (
        "ticket_analytics:\n  target: prod\n  outputs:\n"
        f"    prod:\n{out}      schema: analytics\n      threads: 2\n"
        f"    verify:\n{out}      schema: verify\n      threads: 2\n"
    )


def install_packages(tmp_path: Path, kind: str, where: str) -> tuple[Path, Path]:
    """The two packages side by side as a user has them (the transform package names the
    source package in packages.yml), and a profiles folder of their own."""
    root = tmp_path / "packages"
    for name in ("ticket_analytics", "tickets_source"):
        shutil.copytree(FIXTURES / name, root / name)
    profiles = tmp_path / "dbt_profiles"
    profiles.mkdir()
    (profiles / "profiles.yml").write_text(_profiles(kind, where))
    return root, profiles


@pytest.fixture(params=["duckdb", "postgres"])
def tickets(request, tmp_path: Path, warehouse: Path, monkeypatch) -> Iterator[dict]:
    """The two packages copied as a user has them, profiles for this test's own warehouse."""
    kind = request.param
    if kind == "postgres":
        where = create_postgres_database("rescue_tickets")
    else:
        warehouse.parent.mkdir(parents=True, exist_ok=True)
        where = str(warehouse)
    root, profiles = install_packages(tmp_path, kind, where)
    landing = Landing(kind, where)
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
    monkeypatch.setenv("RESCUE_DBT_PROJECT_DIR", str(root / "ticket_analytics"))
    monkeypatch.setenv("RESCUE_DBT_PROFILES_DIR", str(profiles))
    monkeypatch.setenv("RESCUE_FRESHNESS_INTERVAL_SECONDS", "0")
    try:
        yield {
            "kind": kind,
            "project": root / "ticket_analytics",
            "profiles": profiles,
            "landing": landing,
        }
    finally:
        if kind == "postgres":
            drop_postgres_database(where)


def _sync(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), datetime.min.time()) + timedelta(hours=5)


def test_an_outage_backlog_a_lookback_misses_is_rebuilt_and_proven_on_any_warehouse(
    tickets, instance, monkeypatch, tmp_path
):
    landing: Landing = tickets["landing"]
    project = load_dbt_project(str(tickets["project"]), str(tickets["profiles"]))
    assert (tickets["project"] / "dbt_packages" / "tickets_source").exists(), "dbt deps ran"
    defs = build_definitions(project)
    tick = outage_ticker(defs, instance)

    # five normal days, then the nightly pipeline's incremental run of the sixth
    first = date(2026, 2, 1)
    for n in range(5):
        landing.land_day(first + timedelta(days=n), _sync(first + timedelta(days=n)))
    monkeypatch.setenv("RESCUE_NOW", "2026-02-06T06:00:00")
    assert materialize_all(defs, instance).success
    assert tick() == []
    landing.land_day(date(2026, 2, 6), _sync(date(2026, 2, 6)))
    monkeypatch.setenv("RESCUE_NOW", "2026-02-07T06:00:00")
    assert materialize_all(defs, instance).success

    # the connector is down from 02-07: two days later an incident is open, nothing launched
    monkeypatch.setenv("RESCUE_NOW", "2026-02-09T06:00:00")
    (incident,) = tick()
    assert set(incident["sources"]) == {"tickets.ticket", "tickets.ticket_comment"}
    assert rescues.rescue_ids(instance) == []

    # it comes back on 02-12 with five days of backlog, a resynced correction of an old ticket
    # (its updated_at unchanged) and a comment dated years back: both outside the lookback
    recovered = datetime(2026, 2, 12, 5)
    for n in range(5):
        landing.land_day(date(2026, 2, 7) + timedelta(days=n), recovered)
    old = list(landing.tickets["T02010"])
    old[3], old[7] = "urgent", recovered
    landing.write_tickets([old])
    landing.run(
        [
            (
                f"insert into {RAW}.ticket_comment values (%s, %s, %s, %s, %s)",
                ["C-2019", "T02011", "found in an old export", datetime(2019, 5, 4, 12), recovered],
            )
        ]
    )
    monkeypatch.setenv("RESCUE_NOW", "2026-02-12T06:00:00")
    assert tick() == []
    (rescue_id,) = rescues.rescue_ids(instance)
    record = drive_rescue(defs, instance, rescue_id, max_ticks=16)

    assert record["status"] == rescues.SUCCEEDED, record["message"]
    (first_proof,) = record["proof_history"]
    assert first_proof["status"] == "differs"
    assert {record["names"][m] for m in record["escalated"]} == {
        "tickets__ticket_enhanced",
        "tickets__daily_activity",
    }
    assert record["proof"]["status"] == "equal"
    verdicts = " ".join(record["proof"]["verdicts"].values())
    assert "seconds_open" in verdicts and "_run_started_at" in verdicts  # named, left out
    report = rescues.report_markdown(instance, record, _keys(project))
    assert "proof 1: differs" in report and "proof 2: equal" in report

    # every table equals a from-scratch build of the user's other target (build-time
    # columns excepted), and the proof left no scratch schema behind
    assert _differences_from_a_from_scratch_build(tickets, project, tmp_path) == {}
    schemas = landing.rows("select schema_name from information_schema.schemata")
    assert not [s for (s,) in schemas if "rescue_proof" in s]


def _keys(project):
    from rescue_defs.assets.dbt import load_manifest, model_asset_keys

    return model_asset_keys(load_manifest(str(project.manifest_path), str(project.project_dir)))


def _differences_from_a_from_scratch_build(tickets, project, tmp_path) -> dict[str, int]:
    """Rows differing, per model, between prod and a `--full-refresh` build of the `verify`
    target (its own target folder: the product's manifest is not touched)."""
    subprocess.run(
        [
            "dbt",
            "build",
            "--full-refresh",
            "--target",
            "verify",
            "--quiet",
            "--project-dir",
            str(project.project_dir),
            "--profiles-dir",
            str(tickets["profiles"]),
            "--target-path",
            str(tmp_path / "verify_target"),
        ],
        check=True,
    )
    manifest = json.loads((tmp_path / "verify_target" / "manifest.json").read_text())
    prod = json.loads(Path(project.manifest_path).read_text())
    landing: Landing = tickets["landing"]
    found = {}
    for uid, node in prod["nodes"].items():
        if node["resource_type"] != "model" or node["config"]["materialized"] == "ephemeral":
            continue
        a = f'"{node["schema"]}"."{node["alias"]}"'
        other = manifest["nodes"][uid]
        b = f'"{other["schema"]}"."{other["alias"]}"'
        columns = [
            c
            for (c,) in landing.rows(
                "select column_name from information_schema.columns where table_schema = "
                f"'{node['schema']}' and table_name = '{node['alias']}' order by ordinal_position"
            )
            if c not in BUILD_TIME
        ]
        cols = ", ".join(f'"{c}"' for c in columns)
        (n,) = landing.rows(
            f"select count(*) from ((select {cols} from {a} except all select {cols} from {b}) "
            f"union all (select {cols} from {b} except all select {cols} from {a})) d"
        )[0]
        if n:
            found[node["name"]] = n
    return found
