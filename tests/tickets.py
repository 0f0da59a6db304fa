"""The Fivetran-style ticketing packages (tests/fixtures/ticket_analytics and tickets_source)
as a user has them: installed side by side, their connector landing rows outside Dagster, and
the comparison of every table with a from-scratch build."""

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb

from tests.conftest import FIXTURES

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


@contextmanager
def installed(kind: str, tmp_path: Path, warehouse: Path, monkeypatch) -> Iterator[dict]:
    """The two packages copied as a user has them, profiles for this test's own warehouse
    (`warehouse` on DuckDB, a database of its own on PostgreSQL, dropped after), the
    connector's tables created and its users landed; the environment points rescue at it."""
    from tests.helpers import create_postgres_database, drop_postgres_database

    if kind == "postgres":
        where = create_postgres_database("rescue_tickets")
    else:
        warehouse.parent.mkdir(parents=True, exist_ok=True)
        where = str(warehouse)
    try:
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
        yield {
            "kind": kind,
            "project": root / "ticket_analytics",
            "profiles": profiles,
            "landing": landing,
        }
    finally:
        if kind == "postgres":
            drop_postgres_database(where)


def synced_after(day: date) -> datetime:
    """When the connector syncs a business day: 05:00 the next morning."""
    return datetime.combine(day + timedelta(days=1), datetime.min.time()) + timedelta(hours=5)


def differences_from_a_from_scratch_build(tickets, project, tmp_path) -> dict[str, int]:
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
