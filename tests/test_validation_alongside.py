"""Validation on a warehouse dbt does not hold alone (the real PostgreSQL server): each model is
measured as dbt reports it built, on a connection of its own, and its verdicts are stored
while dbt builds the next models, not after dbt has exited; a source whose latest load cannot
be read is a warning that leaves the models' checks measured."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from rescue_defs.checks.rules import MAX_DATE_CHECK, ROW_COUNT_CHECK
from rescue_defs.definitions import build_definitions
from tests.conftest import prepare
from tests.helpers import (
    checks_of,
    create_postgres_database,
    drop_postgres_database,
    materialize_all,
)

psycopg2 = pytest.importorskip("psycopg2")

# a chain built one model at a time (threads: 1), each taking a second in the warehouse
CHAIN = ["step_1", "step_2", "step_3", "step_4"]


def _project(path: Path, database: str, warehouse: Path):
    (path / "models").mkdir(parents=True)
    (path / "dbt_project.yml").write_text(
        "name: pg_chain\nversion: '1.0.0'\nconfig-version: 2\nprofile: pg_chain\n"
        "models:\n  pg_chain:\n    +materialized: table\n"
    )
    (path / "profiles.yml").write_text(
        "pg_chain:\n  target: prod\n  outputs:\n    prod:\n      type: postgres\n"
        "      host: 127.0.0.1\n      port: 5432\n      user: postgres\n      password: ''\n"
        f"      dbname: {database}\n      schema: analytics\n      threads: 1\n"
    )
    # the connector's table; its declared loaded_at_field is not one of its columns
    (path / "models" / "sources.yml").write_text(
        "version: 2\nsources:\n  - name: shop\n    schema: raw\n"
        "    loaded_at_field: _synced_at\n"
        "    freshness: {warn_after: {count: 12, period: hour}}\n"
        "    tables:\n      - name: orders\n"
    )
    previous = "{{ source('shop', 'orders') }}"
    for name in CHAIN:
        (path / "models" / f"{name}.sql").write_text(
            "{{ config(meta={'rescue': {'date_column': 'order_date'}}) }}\n"
            f"select o.* from {previous} as o cross join (select pg_sleep(1)) as pause\n"
        )
        previous = "{{ ref('" + name + "') }}"
    return prepare(path, warehouse)


@pytest.fixture
def chain(tmp_path: Path, warehouse: Path) -> Iterator[tuple]:
    database = create_postgres_database("rescue_alongside")
    try:
        conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=database)
        with conn, conn.cursor() as cur:
            cur.execute("create schema raw")
            cur.execute("create table raw.orders (order_id int, order_date date)")
            cur.execute(
                "insert into raw.orders select n, date '2026-01-01' + n % 5 "
                "from generate_series(1, 20) as n"
            )
        conn.close()
        yield _project(tmp_path / "pg_chain", database, warehouse), database
    finally:
        drop_postgres_database(database)


def test_each_models_verdicts_are_stored_while_dbt_builds_the_next(chain, instance, monkeypatch):
    monkeypatch.setenv("RESCUE_TODAY", "2026-01-05")
    project, _ = chain
    result = materialize_all(build_definitions(project), instance, raise_on_error=False)
    order = {}
    for event in instance.all_logs(result.run_id):
        data = event.dagster_event
        if data is None:
            continue
        if data.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            order[("built", data.asset_key.path[-1])] = event.timestamp
        elif data.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            check = data.asset_check_evaluation_data
            order[(check.check_name, check.asset_key.path[-1])] = event.timestamp
    # the first model's verdicts are in the event log before dbt has built the last model
    assert order[(ROW_COUNT_CHECK, "step_1")] < order[("built", "step_4")], order
    assert order[(MAX_DATE_CHECK, "step_1")] < order[("built", "step_4")], order
    # and they are the verdicts: counted and dated through the dbt-postgres adapter
    checks = checks_of(result)
    for name in CHAIN:
        assert checks[(name, ROW_COUNT_CHECK)].metadata["row_count"].value == 20
        assert checks[(name, MAX_DATE_CHECK)].metadata["max_date"].value == "2026-01-05"


def test_a_source_whose_latest_load_cannot_be_read_leaves_the_models_measured(
    chain, instance, monkeypatch
):
    """The source's loaded_at_field is not one of its columns: its query fails (a warning in
    the step's log); every model is still counted and dated, not failed for the source."""
    monkeypatch.setenv("RESCUE_TODAY", "2026-01-05")
    project, _ = chain
    result = materialize_all(build_definitions(project), instance, raise_on_error=False)
    logs = [e.user_message or "" for e in instance.all_logs(result.run_id)]
    assert [m for m in logs if m.startswith("latest load of shop.orders")], logs
    checks = checks_of(result)
    for name in CHAIN:
        count = checks[(name, ROW_COUNT_CHECK)]
        assert count.passed, count.description
        assert count.metadata["row_count"].value == 20
        dated = checks[(name, MAX_DATE_CHECK)]
        assert dated.passed, dated.description
        assert dated.metadata["max_date"].value == "2026-01-05"
