"""The production path on the real Postgres server at 127.0.0.1:5432 (when there is one):
Dagster's storage on Postgres, a dbt warehouse on Postgres, a rescue through the sensor, and
the validation checks through the dbt-postgres adapter."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from rescue_defs import rescues
from rescue_defs.checks.rules import MAX_DATE_CHECK, ROW_COUNT_CHECK
from rescue_defs.definitions import build_definitions
from rescue_defs.project import load_dbt_project
from tests.conftest import prepare
from tests.helpers import checks_of, drive_rescue, materialize_all, rescue_id_of, start_rescue

psycopg2 = pytest.importorskip("psycopg2")

MODELS = {
    "orders.sql": "{{ config(meta={'rescue': {'date_column': 'order_date', "
    "'expected_date': 'today'}}) }}\n"
    "select n as order_id, date '2026-01-01' + (n % 10) as order_date, "
    "n * 10 as amount from generate_series(1, 50) as n",
    "daily_orders.sql": "{{ config(meta={'rescue': {'date_column': 'order_date', "
    "'expected_date': 'today'}}) }}\n"
    "select order_date, count(*) as orders, sum(amount) as revenue "
    "from {{ ref('orders') }} group by order_date",
    "fct_stale_orders.sql": "{{ config(meta={'rescue': {'date_column': 'order_date', "
    "'expected_date': 'today'}}) }}\n"
    "select * from {{ ref('orders') }} where order_date < date '2026-01-05'",
}


def _admin():
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    conn.autocommit = True
    return conn


@pytest.fixture(scope="module")
def databases() -> Iterator[tuple[str, str]]:
    """A fresh database for the warehouse and one for Dagster's storage."""
    try:
        admin = _admin()
    except psycopg2.OperationalError:
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    suffix = uuid.uuid4().hex[:8]
    names = (f"rescue_wh_{suffix}", f"rescue_dagster_{suffix}")
    with admin.cursor() as cur:
        for name in names:
            cur.execute(f'create database "{name}"')
    try:
        yield names
    finally:
        with admin.cursor() as cur:
            for name in names:
                cur.execute(f'drop database if exists "{name}" with (force)')
        admin.close()


@pytest.fixture(scope="module")
def pg_project_dir(databases, tmp_path_factory) -> Path:
    warehouse_db, _ = databases
    path = tmp_path_factory.mktemp("pg") / "pg_shop"
    (path / "models" / "marts").mkdir(parents=True)
    (path / "dbt_project.yml").write_text(
        "name: pg_shop\nversion: '1.0.0'\nconfig-version: 2\nprofile: pg_shop\n"
        "models:\n  pg_shop:\n    +materialized: table\n"
    )
    (path / "profiles.yml").write_text(
        "pg_shop:\n  target: prod\n  outputs:\n    prod:\n      type: postgres\n"
        "      host: 127.0.0.1\n      port: 5432\n      user: postgres\n      password: ''\n"
        f"      dbname: {warehouse_db}\n      schema: analytics\n      threads: 2\n"
    )
    for name, sql in MODELS.items():
        folder = path / "models" / ("marts" if name.startswith("fct_") else "")
        (folder / name).write_text(sql + "\n")
    prepare(path, path.parent / "unused.duckdb")
    return path


@pytest.fixture
def pg_instance(databases) -> Iterator[dg.DagsterInstance]:
    _, dagster_db = databases
    db = {
        "username": "postgres",
        "password": "",
        "hostname": "127.0.0.1",
        "db_name": dagster_db,
        "scheme": "postgresql+psycopg2",  # SQLAlchemy 2.1 would pick psycopg 3
    }
    with dg.instance_for_test(overrides={"storage": {"postgres": {"postgres_db": db}}}) as inst:
        yield inst


def test_a_rescue_on_postgres_storage_and_warehouse_builds_validates_and_reports(
    pg_project_dir, pg_instance, monkeypatch
):
    monkeypatch.setenv("RESCUE_TODAY", "2026-01-10")
    defs = build_definitions(load_dbt_project(str(pg_project_dir)))
    first = materialize_all(defs, pg_instance, raise_on_error=False)
    checks = checks_of(first)
    # counted and dated through the dbt-postgres adapter
    assert checks[("orders", ROW_COUNT_CHECK)].metadata["row_count"].value == 50
    daily = checks[("daily_orders", MAX_DATE_CHECK)]
    assert daily.passed and daily.metadata["max_date"].value == "2026-01-10"
    stale = checks[("fct_stale_orders", MAX_DATE_CHECK)]
    assert not stale.passed and "is 6 days behind 2026-01-10" in stale.description
    assert stale.severity == dg.AssetCheckSeverity.ERROR  # a mart: blocking
    assert not first.success

    # a rescue recorded in Postgres storage, launched by the sensor, in stages, reported
    rescue_id = rescue_id_of(
        start_rescue(
            defs,
            pg_instance,
            select="orders+",
            exclude="fct_stale_orders",
            reason="postgres",
            layered=True,
        )
    )
    record = drive_rescue(defs, pg_instance, rescue_id)
    assert record["status"] == rescues.SUCCEEDED, record["message"]
    assert len(record["steps"]) == 2
    # the second stage's dbt imported itself while the first stage built, and ran when told
    (run,) = [
        r
        for r in pg_instance.get_runs()
        if r.tags.get(rescues.TAG_ID) == rescue_id and rescues.TAG_STEP in r.tags
    ]
    logs = [r.user_message or "" for r in pg_instance.all_logs(run.run_id)]
    assert [m for m in logs if m.endswith("(dbt started ahead).")], logs
    assert rescues.rescue_ids(pg_instance) == [rescue_id]
    report = pg_instance.get_latest_materialization_event(rescues.REPORT_ASSET)
    assert "2/2 rebuilt, 2 validated" in report.asset_materialization.metadata["report"].value


def test_the_checklist_sees_the_warehouse_a_session_writing_a_rescued_table_and_a_dead_one(
    pg_project_dir, databases, pg_instance, tmp_path
):
    from rescue_defs.assets.dbt import load_manifest, model_asset_keys
    from rescue_defs.planning.plan import Planner, PlanRequest
    from rescue_defs.warehouse_reader import WarehouseTarget

    warehouse_db, _ = databases
    project = load_dbt_project(str(pg_project_dir))
    materialize_all(build_definitions(project), pg_instance, raise_on_error=False)
    manifest = load_manifest(str(project.manifest_path), str(project.project_dir))
    keys = model_asset_keys(manifest)
    ours = WarehouseTarget.of(project)

    def item(where=ours):
        plan = rescues.plan_for(
            Planner(manifest), pg_instance, PlanRequest("orders+"), keys, warehouse=where
        )
        return next(i for i in plan.checklist if i.key == "warehouse_load")

    assert item().status == "ok"
    # an analyst's session in the middle of a write to a table the rescue rebuilds
    writer = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=warehouse_db)
    writer.set_session(autocommit=False)
    with writer.cursor() as cur:
        cur.execute("delete from analytics.orders where order_id = %s", [1])
    try:
        held = item()
        assert held.status == "block", held.reason
        assert "holds RowExclusiveLock on analytics.orders" in held.reason
    finally:
        writer.rollback()
        writer.close()
    assert item().status == "ok"

    # a warehouse that does not answer: the plan is blocked, saying why
    gone = tmp_path / "profiles"
    gone.mkdir()
    text = (pg_project_dir / "profiles.yml").read_text()
    (gone / "profiles.yml").write_text(text.replace(warehouse_db, "rescue_no_such_database"))
    dead = item(WarehouseTarget(str(pg_project_dir), str(gone)))
    assert dead.status == "block" and "the warehouse does not answer" in dead.reason
    assert "rescue_no_such_database" in dead.reason
