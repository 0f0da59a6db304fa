"""The soak of test_soak.py with the Dagster home's storage on the real Postgres server at
127.0.0.1:5432 (skipped when there is none). A file of its own so that it runs beside the
SQLite soak, not after it."""

import pytest

from tests.helpers import create_postgres_database, drop_postgres_database
from tests.test_soak import Home, live_through_days_and_rescues, make_home


@pytest.fixture
def postgres_database():
    name = create_postgres_database("rescue_soak")
    yield name
    drop_postgres_database(name)


def test_one_postgres_dagster_home_lives_through_days_of_pipelines_and_a_dozen_rescues(
    tmp_path, monkeypatch, postgres_database, shop_defs, shop_project, capsys
):
    make_home(tmp_path, monkeypatch, database=postgres_database)
    monkeypatch.setenv("RESCUE_PROOF", "off")  # as in the SQLite soak (test_soak.py says why)
    live_through_days_and_rescues(Home(shop_defs, str(shop_project.project_dir), capsys))
