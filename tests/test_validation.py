"""Row-count and max-date checks: verdicts, real outages and truncations on the bundled shop,
edge cases in a tiny project, projects with no configuration, and SQL that identifiers from a
manifest cannot change."""

import re
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from rescue_defs import rescues
from rescue_defs.assets.dbt import load_manifest, model_asset_keys
from rescue_defs.checks.judgement import (
    Expected,
    business_date,
    inferred_date_verdict,
    max_date_verdict,
    row_count_verdict,
)
from rescue_defs.checks.rules import (
    MAX_DATE_CHECK,
    ROW_COUNT_CHECK,
    ModelRule,
    Relation,
    Settings,
    ValidationConfigError,
    model_rules,
    stats_sql,
)
from rescue_defs.definitions import build_definitions
from rescue_defs.project import BUNDLED_PROJECT_DIR, load_dbt_project
from tests.conftest import prepare
from tests.helpers import (
    checks_of,
    drive_rescue,
    materialize_all,
    query,
    raw_config,
    rescue_id_of,
    start_rescue,
)


def rule(**overrides) -> ModelRule:
    fields = dict(unique_id="model.p.m", name="m", relation=Relation(None, "s", "m"), blocking=True)
    return ModelRule(**{**fields, **overrides})


# ---------------------------------------------------------------- verdicts (milliseconds)


def test_row_count_fails_when_empty_or_dropped_beyond_the_allowed_fraction():
    assert not row_count_verdict(rule(), 0, None).passed
    assert row_count_verdict(rule(allow_empty=True), 0, None).passed
    dropped = row_count_verdict(rule(max_drop=0.5), 40, 100)
    assert not dropped.passed
    assert "60% fewer than 100" in dropped.description
    assert dropped.metadata == {"row_count": 40, "previous_row_count": 100, "change": -0.6}
    assert row_count_verdict(rule(max_drop=0.5), 50, 100).passed
    assert row_count_verdict(rule(), 150, 100).passed
    assert not row_count_verdict(rule(min_rows=10), 9, None).passed
    assert not row_count_verdict(rule(max_rows=10), 11, None).passed


def test_dates_are_compared_as_days_in_the_business_timezone():
    ny = Settings(business_timezone="America/New_York")
    utc_1am = datetime(2026, 3, 10, 1, 0, tzinfo=UTC)
    assert business_date(utc_1am, ny) == date(2026, 3, 9)
    assert business_date(utc_1am.replace(tzinfo=None), ny) == date(2026, 3, 9)  # naive = UTC
    berlin_naive = Settings(business_timezone="UTC", warehouse_timezone="Europe/Berlin")
    assert business_date(datetime(2026, 3, 10, 0, 30), berlin_naive) == date(2026, 3, 9)
    assert business_date(date(2026, 3, 10), ny) == date(2026, 3, 10)
    assert business_date("2026-03-10", ny) == date(2026, 3, 10)
    with pytest.raises(TypeError):
        business_date(42, ny)
    assert Settings(today=date(2026, 1, 5)).today_in_business_tz() == date(2026, 1, 5)
    clock = datetime(2026, 3, 10, 3, 0, tzinfo=UTC)
    assert ny.today_in_business_tz(clock) == date(2026, 3, 9)


def test_max_date_verdict_explains_the_lag_and_never_raises():
    expected = Expected(
        date(2026, 1, 14),
        "latest load of upstream source raw.payments",
        (("raw.orders", date(2026, 1, 10)), ("raw.payments", date(2026, 1, 14))),
    )
    settings = Settings()
    behind = max_date_verdict(rule(date_column="d"), 5, date(2026, 1, 10), expected, settings)
    assert not behind.passed
    assert "4 days behind 2026-01-14" in behind.description
    assert "raw.orders last loaded 2026-01-10" in behind.description
    assert behind.metadata["lag_days"] == 4
    assert max_date_verdict(rule(date_column="d"), 5, date(2026, 1, 13), expected, settings).passed
    assert not max_date_verdict(rule(date_column="d"), 5, None, expected, settings).passed
    assert not max_date_verdict(rule(date_column="d"), 0, None, expected, settings).passed
    wrong = max_date_verdict(rule(date_column="d"), 5, 17, expected, settings)
    assert not wrong.passed and "not a date" in wrong.description
    unset = max_date_verdict(rule(date_note="no date column"), 5, None, None, settings)
    assert not unset.passed and unset.status == "not configured"  # measured nothing: no pass


def test_an_inferred_date_is_the_latest_date_like_column_and_never_an_all_null_one():
    guess = rule(date_column_from="inferred")
    settings = Settings()
    latest = {
        "due_date": None,  # NULL in every row: never chosen
        "created_at": datetime(2026, 1, 9, 8),
        "updated_at": datetime(2026, 1, 12, 17),
    }
    first = inferred_date_verdict(guess, 12, latest, None, settings)
    assert first.passed and first.metadata["date_column"] == "updated_at"
    assert "max(updated_at) = 2026-01-12 (inferred from due_date, created_at, updated_at)" in (
        first.description
    )
    # compared with the last validated build, never with a source's sync time
    later = inferred_date_verdict(guess, 12, latest, "2026-01-12", settings)
    assert later.passed and "not behind the last validated build (2026-01-12)" in later.description
    lost = inferred_date_verdict(guess, 12, latest, "2026-01-15", settings)
    assert not lost.passed and "rows were lost" in lost.description


def test_a_date_check_that_measured_nothing_says_so_and_is_not_a_pass():
    guess = rule(date_column_from="inferred")
    nulls = inferred_date_verdict(guess, 12, {"cancelled_date": None}, None, Settings())
    assert not nulls.passed and nulls.status == "not configured"
    assert nulls.description.startswith("not measured: the columns that look like dates")
    nothing = inferred_date_verdict(guess, 12, {}, None, Settings())
    assert not nothing.passed and "no column looks like a date" in nothing.description
    # configured by hand, NULLs are a failure
    expected = Expected(date(2026, 1, 14), "latest load of upstream source raw.orders")
    assert (
        max_date_verdict(rule(date_column="cancelled_date"), 12, None, expected, Settings()).status
        == "failed"
    )


def test_bad_meta_names_the_model_and_key():
    manifest = {
        "nodes": {
            "model.p.m": {
                "resource_type": "model",
                "name": "m",
                "schema": "s",
                "database": "d",
                "fqn": ["p", "m"],
                "config": {"meta": {"rescue": {"max_lag_days": "two"}}},
            }
        },
        "parent_map": {},
    }
    with pytest.raises(ValidationConfigError, match=r"m: meta.rescue.max_lag_days"):
        model_rules(manifest, Settings())
    with pytest.raises(ValidationConfigError, match="unknown timezone"):
        Settings(business_timezone="Mars/Olympus")


def test_identifiers_from_a_crafted_manifest_cannot_change_the_sql(tmp_path):
    evil_table = 'orders"; drop table keep; --'
    evil_column = "d'); drop table keep; --"
    manifest = {
        "nodes": {
            "model.p.evil": {
                "resource_type": "model",
                "name": evil_table,
                "alias": evil_table,
                "schema": "main",
                "database": "warehouse",
                "fqn": ["p", evil_table],
                "config": {"meta": {"rescue": {"date_column": evil_column}}},
                "columns": {},
            }
        },
        "parent_map": {},
    }
    sql = stats_sql(model_rules(manifest, Settings())["model.p.evil"])
    path = tmp_path / "evil.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("create table keep as select 1 as x")
        conn.execute(
            'create table "orders""; drop table keep; --" ("d\'); drop table keep; --" date)'
        )
        conn.execute('insert into "orders""; drop table keep; --" values (\'2026-01-02\')')
        # DuckDB's execute runs every statement it is given: only quoting keeps this to one
        assert conn.execute(sql).fetchall() == [(1, date(2026, 1, 2))]
        assert conn.execute("select count(*) from keep").fetchall() == [(1,)]


# ---------------------------------------------------------------- the bundled shop, real dbt


@pytest.mark.built("2026-01-10")
def test_marts_behind_an_outage_fail_max_date_and_pass_after_recovery_and_rescue(
    shop_defs, instance, warehouse
):
    job = shop_defs.resolve_implicit_global_asset_job_def()
    everything = shop_defs.resolve_asset_graph().materializable_asset_keys
    raw_keys = [k for k in everything if k.path[0] == "raw"]
    model_keys = [k for k in everything if k.path[0] != "raw"]
    down = job.execute_in_process(
        instance=instance,
        run_config=raw_config("2026-01-14", down=("orders",)),
        asset_selection=raw_keys,
    )
    assert down.success
    # the nightly dbt build runs on what landed: every model is built, but stale marts make
    # it a failure, not a green run
    outage = job.execute_in_process(
        instance=instance, asset_selection=model_keys, raise_on_error=False
    )
    assert not outage.success
    assert {e.asset_key for e in outage.get_asset_materialization_events()} == set(model_keys)
    checks = checks_of(outage)
    fct_orders = checks[("fct_orders", MAX_DATE_CHECK)]
    assert not fct_orders.passed
    assert fct_orders.severity == dg.AssetCheckSeverity.ERROR
    assert "max(order_date) = 2026-01-10 is 4 days behind 2026-01-14" in fct_orders.description
    assert "raw.orders last loaded 2026-01-10" in fct_orders.description
    assert fct_orders.metadata["lag_days"].value == 4
    assert checks[("fct_daily_revenue", MAX_DATE_CHECK)].passed is False
    # what does not read orders is current; staging agrees with its own (stale) source
    assert checks[("fct_page_views", MAX_DATE_CHECK)].passed
    assert checks[("stg_orders", MAX_DATE_CHECK)].passed
    assert all(c.passed for (_, name), c in checks.items() if name == ROW_COUNT_CHECK)

    # the source recovers with its backlog; a rescue rebuilds what reads it
    recovered = job.execute_in_process(
        instance=instance, run_config=raw_config("2026-01-14"), asset_selection=raw_keys
    )
    assert recovered.success
    rescue_id = rescue_id_of(
        start_rescue(shop_defs, instance, select="stg_orders+", reason="orders outage")
    )
    record = drive_rescue(shop_defs, instance, rescue_id)
    assert record["status"] == rescues.SUCCEEDED, record["message"]
    runs = rescues.step_runs(instance, rescue_id)
    keys = model_asset_keys(load_manifest(*_manifest_args(shop_defs)))
    outcomes = rescues.model_outcomes(instance, runs, keys)
    planned = [m for step in record["steps"] for m in step["models"]]
    assert planned and all(outcomes[m].validated for m in planned)
    assert query(warehouse, "select max(order_date) from analytics.fct_orders") == [
        (date(2026, 1, 14),)
    ]

    # the report is an asset materialization in the UI, and `rescue status` prints it
    report = instance.get_latest_materialization_event(rescues.REPORT_ASSET)
    meta = report.asset_materialization.metadata
    assert meta["rescue_id"].value == rescue_id
    text = meta["report"].value
    assert f"{len(planned)}/{len(planned)} rebuilt, {len(planned)} validated" in text
    assert "Nothing: every planned model was rebuilt" in text
    # on the rescue's own partition, each run a link the UI opens
    assert report.asset_materialization.partition == rescue_id
    for run in runs:
        if rescues.TAG_STEP in run.tags:
            assert f"[{run.run_id[:8]}](/runs/{run.run_id})" in text


@pytest.mark.built("2026-01-10")
def test_a_model_truncated_by_a_bug_fails_its_row_count_check_against_history(
    shop_defs, instance, warehouse
):
    ((before,),) = query(warehouse, "select count(*) from analytics.dim_customers")
    with duckdb.connect(str(warehouse)) as conn:  # a loader bug loses most customers
        conn.execute("delete from raw.customers where customer_id % 10 <> 0")
    job = shop_defs.resolve_implicit_global_asset_job_def()
    rebuilt = job.execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey("stg_customers"), dg.AssetKey("dim_customers")],
        raise_on_error=False,
    )
    ((after,),) = query(warehouse, "select count(*) from analytics.dim_customers")
    assert after < before / 2
    check = checks_of(rebuilt)[("dim_customers", ROW_COUNT_CHECK)]
    assert not check.passed
    assert check.metadata["row_count"].value == after
    assert check.metadata["previous_row_count"].value == before
    assert f"fewer than {before} at the last passing check" in check.description
    assert not rebuilt.success  # marts' checks are blocking
    # the view's check is a warning: it fails too, without being blocking
    stg = checks_of(rebuilt)[("stg_customers", ROW_COUNT_CHECK)]
    assert not stg.passed and stg.severity == dg.AssetCheckSeverity.WARN


@pytest.mark.built("2026-01-10")
def test_a_drop_rebuilt_again_is_still_compared_with_the_last_passing_count(
    shop_defs, instance, warehouse
):
    """A failed row count must not become the new normal by rebuilding once more."""
    ((before,),) = query(warehouse, "select count(*) from analytics.dim_customers")
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute("delete from raw.customers where customer_id % 10 <> 0")
    job = shop_defs.resolve_implicit_global_asset_job_def()
    keys = [dg.AssetKey("stg_customers"), dg.AssetKey("dim_customers")]
    for _ in range(2):
        rebuilt = job.execute_in_process(
            instance=instance, asset_selection=keys, raise_on_error=False
        )
        check = checks_of(rebuilt)[("dim_customers", ROW_COUNT_CHECK)]
        assert not check.passed
        assert check.metadata["previous_row_count"].value == before


def _manifest_args(defs):
    from rescue_defs.project import rescue_target_path

    dbt = defs.resources["dbt"]
    manifest = Path(dbt.project_dir) / rescue_target_path(dbt.target) / "manifest.json"
    return str(manifest), str(dbt.project_dir)


# ---------------------------------------------------------------- edge cases, other projects

EDGE_MODELS = {
    "empty_orders.sql": "{{ config(meta={'rescue': {'date_column': 'order_date'}}) }}\n"
    "select 1 as id, cast(null as date) as order_date where false",
    "undated_orders.sql": "{{ config(meta={'rescue': {'date_column': 'order_date'}}) }}\n"
    "select 1 as id, cast(null as date) as order_date union all select 2, null",
    "shifted_events.sql": "{{ config(meta={'rescue': {'date_column': 'event_at', "
    "'max_lag_days': 0}}) }}\n"
    "select timestamptz '2026-03-10 01:00:00+00' as event_at",
    "current_events.sql": "{{ config(meta={'rescue': {'date_column': 'event_at', "
    "'max_lag_days': 0}}) }}\n"
    "select timestamptz '2026-03-10 15:00:00+00' as event_at",
}


@pytest.fixture(scope="session")
def edge_project_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("edge") / "edge"
    (path / "models").mkdir(parents=True)
    (path / "dbt_project.yml").write_text(
        "name: edge\nversion: '1.0.0'\nconfig-version: 2\nprofile: edge\n"
        "models:\n  edge:\n    +materialized: table\n"
    )
    (path / "profiles.yml").write_text(
        "edge:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        "      path: \"{{ env_var('RESCUE_DUCKDB_PATH') }}\"\n      threads: 1\n"
    )
    for name, sql in EDGE_MODELS.items():
        (path / "models" / name).write_text(sql)
    prepare(path, path.parent / "parse.duckdb")
    return path


def test_empty_null_and_timezone_shifted_dates_give_clear_failing_results(
    edge_project_dir, instance, monkeypatch
):
    monkeypatch.setenv("RESCUE_BUSINESS_TIMEZONE", "America/New_York")
    monkeypatch.setenv("RESCUE_TODAY", "2026-03-10")
    defs = build_definitions(load_dbt_project(str(edge_project_dir)))
    result = materialize_all(defs, instance, raise_on_error=False)
    # nothing reads these models: final models, treated as marts, so their failures block
    assert not result.success
    checks = checks_of(result)
    assert checks[("empty_orders", ROW_COUNT_CHECK)].severity == dg.AssetCheckSeverity.ERROR

    empty = checks[("empty_orders", ROW_COUNT_CHECK)]
    assert not empty.passed and "the table is empty" in empty.description
    assert "no rows" in checks[("empty_orders", MAX_DATE_CHECK)].description
    undated = checks[("undated_orders", MAX_DATE_CHECK)]
    assert not undated.passed
    assert "max(order_date) is NULL: all 2 rows have no date" in undated.description
    # 01:00 UTC on March 10 is still March 9 in New York
    shifted = checks[("shifted_events", MAX_DATE_CHECK)]
    assert not shifted.passed
    assert "max(event_at) = 2026-03-09 (2026-03-09T21:00:00-04:00 in America/New_York)" in (
        shifted.description
    )
    assert "1 days behind 2026-03-10 (today in America/New_York (injected))" in (
        shifted.description
    )
    assert checks[("current_events", MAX_DATE_CHECK)].passed


def test_checks_run_on_an_external_project_with_no_configuration(
    jaffle_project_dir, instance, monkeypatch, warehouse
):
    monkeypatch.setenv("RESCUE_TODAY", "2018-01-05")
    defs = build_definitions(load_dbt_project(str(jaffle_project_dir)))
    result = materialize_all(defs, instance)
    assert result.success
    checks = checks_of(result)
    for model in ("stg_customers", "stg_orders", "stg_payments", "customers", "orders"):
        assert checks[(model, ROW_COUNT_CHECK)].passed, model
        assert (model, MAX_DATE_CHECK) in checks, model
    # orders documents an order_date column: inferred; customers has none: visibly skipped
    orders = checks[("orders", MAX_DATE_CHECK)]
    assert orders.passed and orders.metadata["date_column_from"].value == "inferred"
    customers = checks[("customers", MAX_DATE_CHECK)]
    assert customers.metadata["status"].value == "not configured"
    assert not customers.passed and customers.severity == dg.AssetCheckSeverity.WARN
    assert customers.description.startswith("not measured: no column looks like a date")


def test_checks_run_on_the_bundled_project_stripped_of_its_configuration(
    shop_defs, tmp_path, instance, warehouse
):
    job = shop_defs.resolve_implicit_global_asset_job_def()
    raw_keys = [
        k for k in shop_defs.resolve_asset_graph().materializable_asset_keys if k.path[0] == "raw"
    ]
    loaded = job.execute_in_process(
        instance=instance, run_config=raw_config("2026-01-10"), asset_selection=raw_keys
    )
    assert loaded.success
    project_dir = tmp_path / "shop"
    shutil.copytree(BUNDLED_PROJECT_DIR, project_dir, ignore=shutil.ignore_patterns("target"))
    for path in project_dir.rglob("*"):
        if path.suffix in (".sql", ".yml") and "rescue" in path.read_text():
            text = path.read_text()
            text = re.sub(r"meta: \{rescue: \{[^}]*\}\}", "meta: {}", text)
            text = re.sub(r"meta=\{'rescue': \{[^}]*\}\},?", "", text)
            path.write_text(text)
    assert "rescue:" not in "".join(p.read_text() for p in project_dir.rglob("*.yml"))
    assert "'rescue'" not in "".join(p.read_text() for p in project_dir.rglob("*.sql"))
    project = prepare(project_dir, tmp_path / "parse.duckdb")
    defs = build_definitions(project)
    result = materialize_all(defs, instance)  # a copy is not the bundled project: no loaders
    assert result.success
    checks = checks_of(result)
    manifest = load_manifest(str(project.manifest_path), str(project_dir))
    for node in manifest.models.values():
        assert checks[(node["name"], ROW_COUNT_CHECK)].passed, node["name"]
        assert (node["name"], MAX_DATE_CHECK) in checks, node["name"]
    inferred = [
        k
        for k, c in checks.items()
        if c.metadata.get("date_column_from") and c.metadata["date_column_from"].value == "inferred"
    ]
    assert inferred  # documented date columns are picked up without meta
    products = checks[("dim_products", MAX_DATE_CHECK)]
    assert products.passed and products.metadata["date_column"].value == "last_sold_date"
    # a check that measured nothing is never green
    assert not [
        k
        for k, c in checks.items()
        if c.metadata.get("status") and c.metadata["status"].value == "not configured" and c.passed
    ]


def test_each_models_upstream_sources_are_found_in_one_pass_as_one_walk_per_model_finds_them(
    big_manifest,
):
    from rescue_defs.checks.upstream import sources_upstream_of_each, upstream_sources

    found = sources_upstream_of_each(big_manifest.raw)
    assert any(found[uid] for uid in big_manifest.models)  # sources are found at all
    for uid in big_manifest.models:
        assert sorted(found[uid]) == upstream_sources(big_manifest.raw, uid), uid
