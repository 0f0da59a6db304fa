"""The soak of test_soak.py with the Dagster home's storage on the real Postgres server at
127.0.0.1:5432 (skipped when there is none). A file of its own so that it runs beside the
SQLite soak, not after it."""

import uuid

import pytest

from tests.test_soak import Home, live_through_days_and_rescues, make_home


def _postgres_db() -> str:
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    except psycopg2.OperationalError:
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    admin.autocommit = True
    name = f"rescue_soak_{uuid.uuid4().hex[:8]}"
    with admin.cursor() as cur:
        cur.execute(f'create database "{name}"')
    admin.close()
    return name


def _drop_postgres_db(name: str) -> None:
    import psycopg2

    admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'drop database if exists "{name}" with (force)')
    admin.close()


@pytest.fixture
def postgres_database():
    name = _postgres_db()
    yield name
    _drop_postgres_db(name)


def test_one_postgres_dagster_home_lives_through_days_of_pipelines_and_a_dozen_rescues(
    tmp_path, monkeypatch, postgres_database, shop_defs, shop_project, capsys
):
    make_home(tmp_path, monkeypatch, database=postgres_database)
    # the from-scratch proof after each rescue runs in the SQLite soak and the incident tests;
    # here it would add ~40 s to the suite's longest module for nothing storage-specific
    monkeypatch.setenv("RESCUE_PROOF", "off")
    live_through_days_and_rescues(Home(shop_defs, str(shop_project.project_dir), capsys))
