"""The proof's row-for-row comparison (checks/equality.py) through the dbt adapter, on a DuckDB
file and on the PostgreSQL warehouse: duplicates count, NULLs equal NULLs, build-time columns
are left out and named, a column on one side only is a difference, and a difference says which
columns and which months carry it."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from rescue_defs.checks.equality import compare_relations, equal, verdict_text
from rescue_defs.warehouse_reader import WarehouseTarget, open_adapter
from tests.helpers import create_postgres_database, drop_postgres_database

COLUMNS = "id integer, amount integer, note varchar(10), order_date date, loaded_at timestamp"
SAME = [
    "(1, 10, 'a', date '2026-01-03', timestamp '2026-02-01 00:00:00')",
    "(2, 20, null, date '2026-01-04', timestamp '2026-02-01 00:00:00')",
    "(2, 20, null, date '2026-01-04', timestamp '2026-02-01 00:00:00')",
]
LATER = "timestamp '2026-03-09 12:00:00'"  # the from-scratch build ran later


def _project(folder: Path, output: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "dbt_project.yml").write_text(
        "name: cmp\nversion: '1.0.0'\nconfig-version: 2\nprofile: cmp\n"
    )
    (folder / "profiles.yml").write_text(
        f"cmp:\n  target: prod\n  outputs:\n    prod:\n{output}      threads: 1\n"
    )
    return folder


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse_with(request, tmp_path: Path) -> Iterator:
    """fill(statements) runs SQL in the warehouse (outside dbt, as a loader would); then
    `target` opens it through dbt."""
    if request.param == "duckdb":
        import duckdb

        path = tmp_path / "cmp.duckdb"
        project = _project(tmp_path / "cmp", f"      type: duckdb\n      path: '{path}'\n")

        def fill(statements: list[str]) -> None:
            with duckdb.connect(str(path)) as con:
                for sql in statements:
                    con.execute(sql)

        yield fill, WarehouseTarget(str(project)), "main"
        return
    name = create_postgres_database("rescue_cmp")  # skips without a PostgreSQL server
    import psycopg2

    project = _project(
        tmp_path / "cmp",
        "      type: postgres\n      host: 127.0.0.1\n      port: 5432\n      user: postgres\n"
        f"      password: ''\n      dbname: {name}\n      schema: analytics\n",
    )

    def fill(statements: list[str]) -> None:
        conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=name)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("create schema if not exists analytics")
            for sql in statements:
                cur.execute(sql)
        conn.close()

    try:
        yield fill, WarehouseTarget(str(project)), "analytics"
    finally:
        drop_postgres_database(name)


def _tables(schema: str, rescued: list[str], scratch: list[str], scratch_columns=COLUMNS):
    return [
        f"create table {schema}.rescued ({COLUMNS})",
        f"create table {schema}.scratch ({scratch_columns})",
        f"insert into {schema}.rescued values {', '.join(rescued)}",
        f"insert into {schema}.scratch values {', '.join(scratch)}",
    ]


def _compare(target: WarehouseTarget, schema: str, **options):
    with open_adapter(target) as adapter:
        database = adapter.config.credentials.database
        rescued, scratch = (
            adapter.Relation.create(database=database, schema=schema, identifier=name)
            for name in ("rescued", "scratch")
        )
        return compare_relations(adapter, rescued, scratch, **options)


def test_tables_equal_but_for_a_build_time_column_are_equal_and_say_what_was_left_out(
    warehouse_with,
):
    fill, target, schema = warehouse_with
    later = [row.replace("timestamp '2026-02-01 00:00:00'", LATER) for row in SAME]
    fill(_tables(schema, SAME, later))

    diff = _compare(target, schema, build_time=["LOADED_AT"], date_column="order_date")

    assert equal(diff) and (diff["rows"], diff["columns"]) == (3, 4)
    assert diff["excluded"] == ["loaded_at"]
    passed, text = verdict_text("fct", diff)
    assert passed and "3 rows, 4 columns" in text and "loaded_at left out" in text
    # the same clock column, not left out, is a difference in every row
    assert not equal(_compare(target, schema))


def test_a_row_once_too_often_is_a_difference_nulls_included(warehouse_with):
    fill, target, schema = warehouse_with
    fill(_tables(schema, SAME, SAME[:2]))

    diff = _compare(target, schema)

    assert (diff["only_rescued"], diff["only_from_scratch"]) == (1, 0)
    # compared column by column, each column's values come once too often too
    assert diff["differing_columns"] == ["id", "amount", "note", "order_date", "loaded_at"]


def test_a_changed_value_names_its_column_and_its_month(warehouse_with):
    fill, target, schema = warehouse_with
    changed = [SAME[0].replace("10, 'a'", "11, 'a'"), *SAME[1:]]
    fill(_tables(schema, SAME, changed))

    diff = _compare(target, schema, date_column="ORDER_DATE")

    assert (diff["only_rescued"], diff["only_from_scratch"]) == (1, 1)
    assert diff["differing_columns"] == ["amount"]
    assert diff["periods"] == [{"period": "2026-01", "only_rescued": 1, "only_from_scratch": 1}]
    passed, text = verdict_text("fct", diff)
    assert not passed and "1 row(s) only in the rescued table, 1 only in the rebuild" in text


def test_a_column_on_one_side_only_is_a_difference(warehouse_with):
    fill, target, schema = warehouse_with
    fill(_tables(schema, SAME, [row[:-1] + ", 1)" for row in SAME], COLUMNS + ", extra integer"))

    diff = _compare(target, schema)

    assert diff["missing_columns"] == ["extra"] and not equal(diff)
    assert (diff["only_rescued"], diff["only_from_scratch"]) == (0, 0)  # compared on the rest


def test_a_relation_that_is_not_there_is_said_not_compared(warehouse_with):
    fill, target, schema = warehouse_with
    fill([f"create table {schema}.rescued ({COLUMNS})"])

    with pytest.raises(RuntimeError, match=r"scratch\S* cannot be read: .*scratch") as refused:
        _compare(target, schema)
    assert "\n" not in str(refused.value)  # one line, the warehouse's own reason in it
