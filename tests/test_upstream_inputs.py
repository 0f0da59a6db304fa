"""A rescue whose selection reads a model no run has built fails in dbt at the first model
reading it ("relation ... does not exist"), after its plan said nothing. The checklist asks
the warehouse, through dbt's adapter, for what the selection reads from outside itself, and
names what is not there before anything runs: on DuckDB and on the real PostgreSQL warehouse,
for a project we did not write (the Fivetran-style packages; the models it reads come from
the source package `dbt deps` installs, some through ephemeral models)."""

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from rescue_defs import rescues
from rescue_defs.assets.dbt import load_manifest, model_asset_keys
from rescue_defs.definitions import build_definitions
from rescue_defs.planning.plan import Planner, PlanRequest
from rescue_defs.project import load_dbt_project
from rescue_defs.warehouse_reader import WarehouseTarget
from tests.helpers import materialize_all
from tests.tickets import RAW, installed, synced_after


@pytest.fixture(params=["duckdb", "postgres"])
def tickets(request, tmp_path: Path, warehouse: Path, monkeypatch) -> Iterator[dict]:
    with installed(request.param, tmp_path, warehouse, monkeypatch) as found:
        found["landing"].land_day(date(2026, 2, 1), synced_after(date(2026, 2, 1)))
        yield found


def scope_item(tickets: dict, instance):
    """The plan's scope item for a selection, as `rescue launch` plans it (warehouse read)."""
    project = load_dbt_project(str(tickets["project"]), str(tickets["profiles"]))
    manifest = load_manifest(str(project.manifest_path), str(project.project_dir))
    keys = model_asset_keys(manifest)
    planner = Planner(manifest)

    def scope(select: str):
        plan = rescues.plan_for(
            planner,
            instance,
            PlanRequest(select, today=date(2026, 2, 2)),
            keys,
            warehouse=WarehouseTarget.of(project),
        )
        return next(item for item in plan.checklist if item.key == "scope")

    return project, scope


def test_the_checklist_names_what_the_selection_reads_that_was_never_built(tickets, instance):
    project, scope = scope_item(tickets, instance)

    # only the connector's tables exist: the staging model reads its `_tmp` view, which a
    # rescue of `stg_tickets__ticket+` does not build
    fresh = scope("stg_tickets__ticket+")
    assert fresh.status == "warn", fresh.reason
    assert "3 model(s) the selection reads are neither in it nor in the warehouse" in fresh.reason
    # the marts read comments and users through an ephemeral model: its parents are named
    for name in ("stg_tickets__ticket_tmp", "stg_tickets__ticket_comment", "stg_tickets__user"):
        assert name in fresh.reason
    assert "int_tickets__comment_counts" not in fresh.reason  # ephemeral: nothing to build
    # `+` before the target takes in its own parents; the comments' lineage stays outside
    wider = scope("+stg_tickets__ticket+")
    assert "stg_tickets__ticket_tmp" not in wider.reason
    assert "stg_tickets__ticket_comment" in wider.reason and wider.status == "warn"

    # once the nightly pipeline has built everything, the same selection reads what is there
    assert materialize_all(build_definitions(project), instance).success
    built = scope("stg_tickets__ticket+")
    assert built.status == "ok", built.reason
    assert "every model it reads is built" in built.reason


def test_the_checklist_names_a_source_table_the_connector_never_landed(tickets, instance):
    """A connector table not landed yet (a table newly enabled in the connector): dbt fails
    at the staging model reading it, so the plan says so first, naming the source."""
    project, scope = scope_item(tickets, instance)
    assert materialize_all(build_definitions(project), instance).success
    # as if never landed (renamed, not dropped: PostgreSQL keeps the view built on it)
    tickets["landing"].run([(f'alter table {RAW}."user" rename to user_not_landed', [])])
    unlanded = scope("stg_tickets__user+")
    assert unlanded.status == "warn", unlanded.reason
    assert (
        "1 source table(s) the selection reads are not in the warehouse: tickets.user"
        in unlanded.reason
    )
    # landed: the same selection reads what is there, and the plan says what it asked
    tickets["landing"].run([(f'alter table {RAW}.user_not_landed rename to "user"', [])])
    landed = scope("stg_tickets__user+")
    assert landed.status == "ok", landed.reason
    assert "every model it reads is built" in landed.reason
    assert "its 1 source table(s) asked for are in the warehouse" in landed.reason


def test_a_materialized_view_the_selection_reads_is_not_taken_for_missing(
    tmp_path, instance, warehouse
):
    """PostgreSQL lists materialized views in `pg_matviews`, not in `information_schema`:
    one the selection reads, built, must not be named as missing."""
    from tests.conftest import prepare
    from tests.helpers import create_postgres_database, drop_postgres_database

    database = create_postgres_database("rescue_matview")
    try:
        path = tmp_path / "mv_shop"
        (path / "models").mkdir(parents=True)
        (path / "dbt_project.yml").write_text(
            "name: mv_shop\nversion: '1.0.0'\nconfig-version: 2\nprofile: mv_shop\n"
        )
        (path / "profiles.yml").write_text(
            "mv_shop:\n  target: prod\n  outputs:\n    prod:\n      type: postgres\n"
            "      host: 127.0.0.1\n      port: 5432\n      user: postgres\n      password: ''\n"
            f"      dbname: {database}\n      schema: analytics\n      threads: 1\n"
        )
        (path / "models" / "orders.sql").write_text(
            "{{ config(materialized='materialized_view') }}\n"
            "select n as order_id, date '2026-01-01' + n as order_date "
            "from generate_series(1, 5) as n\n"
        )
        (path / "models" / "daily_orders.sql").write_text(
            "{{ config(materialized='table') }}\n"
            "select order_date, count(*) as orders from {{ ref('orders') }} group by 1\n"
        )
        project = prepare(path, warehouse)
        assert materialize_all(build_definitions(project), instance).success
        manifest = load_manifest(str(project.manifest_path), str(project.project_dir))
        plan = rescues.plan_for(
            Planner(manifest),
            instance,
            PlanRequest("daily_orders"),
            model_asset_keys(manifest),
            warehouse=WarehouseTarget.of(project),
        )
        (scope,) = [item for item in plan.checklist if item.key == "scope"]
        assert scope.status == "ok", scope.reason
        assert "not checked: orders" in scope.reason  # and not claimed built
    finally:
        drop_postgres_database(database)
