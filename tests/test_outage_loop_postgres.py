"""The incident loop of test_outage_loop.py with the Dagster home's storage on the real
Postgres server at 127.0.0.1:5432 (skipped when there is none). A file of its own so that it
runs beside the SQLite loop, not after it."""

from tests.test_outage_loop import live_the_incident_loop
from tests.test_soak import make_home
from tests.test_soak_postgres import postgres_database

__all__ = ["postgres_database"]  # the fixture, used by name


def test_outage_loop_with_dagster_storage_on_postgres_equals_a_from_scratch_build(
    tmp_path, monkeypatch, postgres_database, shop_defs, shop_project, warehouse
):
    make_home(tmp_path, monkeypatch, database=postgres_database)
    live_the_incident_loop(shop_defs, shop_project, warehouse, tmp_path)
