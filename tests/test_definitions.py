import json
from pathlib import Path

import dagster as dg
import pytest

from rescue_defs.definitions import build_definitions
from rescue_defs.project import load_dbt_project, warehouse_path
from tests.helpers import checks_of, failed_checks, materialize_all, query

SHOP_MODELS_BY_GROUP = {
    "staging": 7,
    "intermediate": 9,
    "marts": 13,
}


def test_raw_loaders_and_dbt_models_form_one_lineage_grouped_by_layer(shop_defs):
    graph = shop_defs.resolve_asset_graph()
    groups: dict[str, int] = {}
    for key in graph.get_all_asset_keys():
        group = graph.get(key).group_name
        groups[group] = groups.get(group, 0) + 1
    # rescue: rescue_report, source_incidents
    assert groups == {"raw": 6, **SHOP_MODELS_BY_GROUP, "rescue": 2}

    # raw -> staging -> intermediate -> marts, with loaders feeding the dbt sources directly
    orders = dg.AssetKey(["raw", "orders"])
    assert dg.AssetKey("stg_order_status_changes") in graph.get(orders).child_keys
    upstream_of_exec = graph.upstream_key_iterator(dg.AssetKey("mart_executive_daily"))
    assert dg.AssetKey("fct_daily_revenue") in set(upstream_of_exec)
    assert (
        dg.AssetSelection.assets(dg.AssetKey("mart_executive_daily"))
        .upstream()
        .resolve(graph)
        .issuperset({orders, dg.AssetKey(["raw", "web_events"]), dg.AssetKey("int_sessions")})
    )


def test_dbt_tests_load_as_asset_checks(shop_defs):
    checks = shop_defs.resolve_asset_graph().asset_check_keys
    names = {(c.asset_key.to_user_string(), c.name) for c in checks}
    assert ("fct_orders", "unique_fct_orders_order_id") in names
    assert (
        "fct_orders",
        "relationships_fct_orders_customer_id__customer_id__ref_dim_customers_",
    ) in names
    assert len(names) > 60


def test_rescue_runs_hold_the_models_their_checks_and_the_proof_for_their_last_run(shop_defs):
    from rescue_defs.checks.proof import PROOF_CHECK

    job = shop_defs.resolve_job_def("rescue_step_job")
    assert [node.name for node in job.nodes_in_topological_order] == ["dbt_models"]
    checks = job.asset_layer.asset_graph.asset_check_keys
    assert ("fct_orders", "unique_fct_orders_order_id") in {
        (c.asset_key.to_user_string(), c.name) for c in checks
    }
    # the run of a rescue's last steps proves in the same step, and a proof that runs again is
    # a run of this job too (its proof checks alone): no job of its own to load
    assert [c for c in checks if c.name == PROOF_CHECK]
    assert "rescue_proof_job" not in {j.name for j in shop_defs.jobs}


def test_relative_warehouse_path_is_made_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RESCUE_DUCKDB_PATH", "rel/warehouse.duckdb")
    assert warehouse_path() == tmp_path / "rel" / "warehouse.duckdb"


def _broken_project(tmp_path: Path, how: str) -> Path:
    import shutil

    from tests.conftest import FIXTURES

    if how == "missing":
        return tmp_path / "nowhere"
    project_dir = tmp_path / "their_project"
    shutil.copytree(FIXTURES / "jaffle_shop", project_dir)
    (project_dir / "dbt_project.yml").write_text("name: [unclosed\n")
    return project_dir


@pytest.mark.parametrize(
    ("how", "said"),
    [("missing", "no dbt_project.yml in "), ("bad yaml", "dbt_project.yml does not load")],
)
def test_a_project_that_does_not_load_stops_the_code_location_in_one_line(
    how, said, tmp_path, monkeypatch
):
    from rescue_defs.definitions import defs
    from rescue_defs.project import ProjectNotReady

    monkeypatch.setenv("RESCUE_DBT_PROJECT_DIR", str(_broken_project(tmp_path, how)))
    with pytest.raises(ProjectNotReady, match=said) as refused:
        defs()
    assert "\n" not in str(refused.value)
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


def test_dagster_definitions_validate_names_the_broken_project_file(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("RESCUE_DBT_PROJECT_DIR", str(_broken_project(tmp_path, "bad yaml")))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
    )
    said = result.stdout + result.stderr
    assert result.returncode != 0
    assert "ProjectNotReady: " in said and "dbt_project.yml does not load" in said
    assert "yaml/parser.py" not in said, "no stack from inside the YAML parser"


def test_a_manifest_cut_short_is_parsed_again_not_loaded(jaffle_project_dir, tmp_path, monkeypatch):
    import shutil

    project_dir = tmp_path / "their_project"
    shutil.copytree(jaffle_project_dir, project_dir, symlinks=True)
    manifest = project_dir / "target" / "rescue" / "default" / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:5000])
    monkeypatch.setenv("RESCUE_DBT_PROJECT_DIR", str(project_dir))
    monkeypatch.delenv("DAGSTER_IS_DEV_CLI", raising=False)  # as dagster-webserver / the daemon
    from rescue_defs.definitions import defs

    assert defs().resolve_asset_graph().get_all_asset_keys()
    assert json.loads(manifest.read_text())["nodes"]


def test_external_project_loads_its_models_as_assets_and_builds(
    jaffle_project_dir: Path, monkeypatch, instance, warehouse
):
    monkeypatch.setenv("RESCUE_DBT_PROJECT_DIR", str(jaffle_project_dir))
    monkeypatch.setenv("RESCUE_TODAY", "2018-01-05")  # the seeds' last day
    from rescue_defs.definitions import defs

    # the code location entry point follows the env var, and loads whole as `dagster dev`
    # loads it (every job resolved), though this project has no source freshness rule and so
    # no source_incidents asset
    loaded = defs()
    dg.Definitions.validate_loadable(loaded)
    keys = {k.to_user_string() for k in loaded.resolve_asset_graph().get_all_asset_keys()}
    assert {"customers", "orders", "stg_orders", "raw_orders"} <= keys
    assert not any(k.startswith("raw/") for k in keys), "shop loaders only feed the bundled project"

    result = materialize_all(build_definitions(load_dbt_project(str(jaffle_project_dir))), instance)
    assert result.success
    # the only failures: warnings of date checks that had nothing to measure (no date-like
    # column), which say so rather than pass
    checks = checks_of(result)
    for name in failed_checks(result):
        model, check = name.split(":")
        evaluation = checks[(model, check)]
        assert evaluation.severity == dg.AssetCheckSeverity.WARN, name
        assert (evaluation.description or "").startswith("not measured: "), name
    assert query(warehouse, "select count(*) from main.customers") == [(4,)]


@pytest.mark.parametrize(
    "target",
    [["-m", "rescue_defs.definitions"], ["-w", "workspace.yaml"]],
    ids=["module", "workspace_yaml"],
)
def test_dagster_definitions_validate_passes(shop_project, warehouse, target):
    import subprocess
    import sys

    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run(
        [str(dagster), "definitions", "validate", *target],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,  # where production runs it
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_a_project_fresh_from_git_without_a_manifest_is_parsed_on_first_load(
    tmp_path, monkeypatch, warehouse
):
    import shutil

    from tests.conftest import FIXTURES

    project_dir = tmp_path / "their_project"
    shutil.copytree(FIXTURES / "jaffle_shop", project_dir)
    assert not (project_dir / "target").exists()
    monkeypatch.setenv("RESCUE_DBT_PROJECT_DIR", str(project_dir))
    monkeypatch.delenv("DAGSTER_IS_DEV_CLI", raising=False)  # as dagster-webserver / the daemon
    from rescue_defs.definitions import defs

    loaded = defs()
    keys = {k.to_user_string() for k in loaded.resolve_asset_graph().get_all_asset_keys()}
    assert {"customers", "orders"} <= keys
    assert (project_dir / "target" / "rescue" / "default" / "manifest.json").exists()


def test_a_project_that_does_not_parse_is_one_clear_error(tmp_path, warehouse):
    import shutil

    from rescue_defs.project import ProjectNotReady
    from tests.conftest import FIXTURES

    project_dir = tmp_path / "broken_project"
    shutil.copytree(FIXTURES / "jaffle_shop", project_dir)
    (project_dir / "models" / "broken.sql").write_text("select * from {{ ref('no_such') }}")
    with pytest.raises(ProjectNotReady, match="run `dbt parse --project-dir"):
        load_dbt_project(str(project_dir))


def test_under_dagster_dev_the_project_is_parsed_again_only_when_it_changed(
    tmp_path, monkeypatch, warehouse
):
    """dagster-dbt parses in every process under `dagster dev`, each run worker too (4-8 s a
    run); an unchanged project keeps its manifest, an edited model is parsed again."""
    import os
    import shutil

    from tests.conftest import FIXTURES

    project_dir = tmp_path / "dev_project"
    shutil.copytree(FIXTURES / "jaffle_shop", project_dir)
    monkeypatch.setenv("DAGSTER_IS_DEV_CLI", "1")
    monkeypatch.setenv("RESCUE_PARSE_WAIT_SECONDS", "600")  # wait for it, however loaded
    manifest = project_dir / "target" / "rescue" / "default" / "manifest.json"

    def load():
        load_dbt_project.cache_clear()
        load_dbt_project(str(project_dir))
        return manifest.stat().st_mtime_ns

    first = load()
    assert load() == first  # a run worker of the same code: no parse
    model = project_dir / "models" / "customers.sql"
    model.write_text(model.read_text() + "\n-- edited\n")
    later = first / 1e9 + 5
    os.utime(model, (later, later))
    assert load() > first  # the code changed: parsed again, as `dagster dev` promises


def test_run_folders_coming_and_going_in_target_do_not_break_the_project_check(tmp_path):
    """Runs create and delete their folders in target/ while `rescue` or a code load asks
    whether the manifest is current (seen: the CLI failed with `No such file or directory:
    target/<run>/compiled/...` in the soak test)."""
    import os
    import shutil
    import threading

    from rescue_defs.project import manifest_is_current

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "a.sql").write_text("select 1")
    (tmp_path / "dbt_project.yml").write_text("name: a\n")
    kept = tmp_path / "target" / "rescue" / "default"
    kept.mkdir(parents=True)
    (kept / "manifest.json").write_text("{}")
    stop = threading.Event()

    def runs_coming_and_going():
        i = 0
        while not stop.is_set():
            run = tmp_path / "target" / f"dbt_models-{i % 3}"
            for j in range(5):
                folder = run / "compiled" / "shop" / "models" / f"m{j}"
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "x.sql").write_text("x")
            shutil.rmtree(run, ignore_errors=True)
            i += 1

    churn = threading.Thread(target=runs_coming_and_going)
    churn.start()
    try:
        answers = {manifest_is_current(tmp_path) for _ in range(300)}
    finally:
        stop.set()
        churn.join()
    assert answers == {True}
    # a model edited after the manifest still counts
    later = (kept / "manifest.json").stat().st_mtime + 5
    os.utime(tmp_path / "models" / "a.sql", (later, later))
    assert not manifest_is_current(tmp_path)


def test_a_slow_parse_never_holds_a_reload_the_manifest_before_serves_meanwhile(
    tmp_path, monkeypatch, warehouse
):
    """A reload waits RESCUE_PARSE_WAIT_SECONDS at most for dbt parse (the webserver gives up
    on a reload after 60 s; a big project parses for minutes): past that it loads with the
    manifest parsed before, and the parse goes on and swaps the new one in whole."""
    import os
    import shutil

    from rescue_defs import parsing
    from tests.conftest import FIXTURES

    project_dir = tmp_path / "dev_project"
    shutil.copytree(FIXTURES / "jaffle_shop", project_dir)
    monkeypatch.setenv("DAGSTER_IS_DEV_CLI", "1")
    load_dbt_project.cache_clear()
    manifest = load_dbt_project(str(project_dir)).manifest_path
    first = manifest.stat().st_mtime_ns

    model = project_dir / "models" / "customers.sql"
    model.write_text(model.read_text() + "\n-- edited in a merge\n")
    later = first / 1e9 + 5
    os.utime(model, (later, later))
    monkeypatch.setenv("RESCUE_PARSE_WAIT_SECONDS", "0")  # a parse slower than the wait
    load_dbt_project.cache_clear()
    assert load_dbt_project(str(project_dir)).manifest_path == manifest
    assert manifest.stat().st_mtime_ns == first, "the load went on with the manifest before"

    parsing._RUNNING[str(manifest)].join(300)  # the parse, still going on in the background
    assert manifest.stat().st_mtime_ns > first
    assert "edited in a merge" in manifest.read_text()
    assert not list(manifest.parent.parent.glob(".parse-*")), "its work folder is gone"


def test_rescue_prepare_parses_where_the_product_reads(tmp_path, warehouse, capsys):
    import shutil

    from rescue_defs.cli import main
    from tests.conftest import FIXTURES

    project_dir = tmp_path / "built_image"
    shutil.copytree(FIXTURES / "jaffle_shop", project_dir)
    assert main(["prepare", "--project-dir", str(project_dir)]) == 0
    kept = project_dir / "target" / "rescue" / "default" / "manifest.json"
    assert kept.exists() and str(kept) in capsys.readouterr().out
    (project_dir / "models" / "broken.sql").write_text("select * from {{ ref('no_such') }}")
    assert main(["prepare", "--project-dir", str(project_dir)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("rescue: error: ") and "dbt parse" in line


def test_under_dagster_dev_a_stale_project_is_parsed_while_dagster_is_still_being_imported(
    tmp_path, warehouse
):
    """A reload spends 2-3 s importing Dagster: the code location's module starts the parse
    of an edited project first, so the two run side by side (bench/reload_bench.py)."""
    import os
    import shutil
    import subprocess
    import sys

    from rescue_defs.project import manifest_is_current
    from tests.conftest import FIXTURES

    project_dir = tmp_path / "dev_project"
    shutil.copytree(FIXTURES / "jaffle_shop", project_dir)
    load_dbt_project.cache_clear()
    manifest = load_dbt_project(str(project_dir)).manifest_path
    model = project_dir / "models" / "customers.sql"
    model.write_text(model.read_text() + "\n-- edited in a merge\n")
    parsed = model.stat().st_mtime - 10  # the manifest before the edit
    os.utime(manifest, (parsed, parsed))
    assert not manifest_is_current(project_dir, project_dir, manifest)

    code_server = """
import sys
from rescue_defs import parsing
started_with = []
def start(where, _start=parsing.start):
    started_with.append(sorted(m for m in sys.modules if m.split(".")[0] == "dagster"))
    return _start(where)
parsing.start = start
import rescue_defs.definitions  # what `dagster dev` imports on a reload
print("dagster already imported:", started_with)
for thread in parsing._RUNNING.values():
    thread.join(300)
"""
    env = {**os.environ, "DAGSTER_IS_DEV_CLI": "1", "RESCUE_DBT_PROJECT_DIR": str(project_dir)}
    out = subprocess.run(
        [sys.executable, "-c", code_server], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "dagster already imported: [[]]" in out, out
    assert manifest_is_current(project_dir, project_dir, manifest), "the parse ended"
    assert "edited in a merge" in manifest.read_text()


def test_the_code_location_holds_one_copy_of_the_manifest_the_one_dagster_dbt_read(
    shop_project,
):
    """A large manifest is tens of MB in memory (~40 MB at 3,000 models): the planner, checks
    and sensors read the dict dagster-dbt parsed for `@dbt_assets`, not a second parse."""
    from dagster_dbt.dbt_manifest import validate_manifest

    from rescue_defs.assets.dbt import load_manifest

    path, folder = str(shop_project.manifest_path), str(shop_project.project_dir)
    load_manifest.cache_clear()
    assert load_manifest(path, folder).raw is validate_manifest(Path(path))


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (None, "no dbt manifest at "),
        ("{not json", "is not a readable dbt manifest"),
        ('{"metadata": {}}', "is not a dbt manifest (no `nodes`)"),
    ],
)
def test_a_missing_or_broken_manifest_is_named_in_one_line(tmp_path, content, error):
    from rescue_defs.assets.dbt import load_manifest

    path = tmp_path / "target" / "manifest.json"
    if content is not None:
        path.parent.mkdir()
        path.write_text(content)
    with pytest.raises((FileNotFoundError, ValueError)) as raised:
        load_manifest(str(path), str(tmp_path))
    assert error in str(raised.value) and "\n" not in str(raised.value)


def test_adding_rescue_to_a_location_imports_no_duckdb(shop_project):
    """A team on another warehouse pays nothing for DuckDB (12 MB a process: the code server
    and each run worker); the bundled demo's warehouse and the sandbox import it when used."""
    import subprocess
    import sys

    script = f"""
import sys
import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets
from rescue_defs.api import with_rescue

project = DbtProject(
    project_dir={str(shop_project.project_dir)!r}, target_path={str(shop_project.target_path)!r}
)

@dbt_assets(manifest={str(shop_project.manifest_path)!r}, project=project)
def team_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    yield from dbt.cli(["build"], context=context).stream()

defs = with_rescue(
    dg.Definitions(assets=[team_models], resources={{"dbt": DbtCliResource(project_dir=project)}})
)
defs.get_repository_def().load_all_definitions()
assert defs.get_sensor_def("rescue_sensor")
print("duckdb" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.strip().splitlines()[-1:] == ["False"], done.stdout + done.stderr


def _imported_by_loading(project_dir: Path, then: str = "") -> list[set[str]]:
    """What a fresh Python (a code server, a run worker) imports of DuckDB and numpy when it
    loads the code location serving `project_dir`; and after running `then` in it, if given."""
    import subprocess
    import sys

    script = f"""
import json
import sys
from rescue_defs.definitions import build_definitions
from rescue_defs.project import load_dbt_project

def imported():
    print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & {{"duckdb", "numpy"}})))

defs = build_definitions(load_dbt_project({str(project_dir)!r}))
defs.get_repository_def().load_all_definitions()
imported()
{then}
{"imported()" if then else ""}
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    found = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert done.returncode == 0 and found, done.stdout + done.stderr
    return [set(json.loads(line)) for line in found]


def test_the_location_serving_a_teams_own_project_imports_neither_duckdb_nor_numpy(
    jaffle_project_dir,
):
    """The shop's loaders and their simulated data (DuckDB's client, numpy: ~0.1 s and ~20 MB
    a process) are the bundled demo's: a location serving another project, each of its run
    workers included, does not pay for them."""
    assert _imported_by_loading(jaffle_project_dir) == [set()]


def test_the_shop_location_imports_numpy_only_when_its_loaders_make_data(shop_project):
    """Its run workers rescue dbt models: numpy is the simulated shop systems' alone, and
    their data is still made with it."""
    make_a_day = (
        "from rescue_defs.demo import generator\n"
        "assert generator.rows_arriving('web_events', generator.DATA_EPOCH)"
    )
    loaded, after = _imported_by_loading(shop_project.project_dir, then=make_a_day)
    assert "numpy" not in loaded
    assert "numpy" in after


def test_thousands_of_checks_share_a_handful_of_description_strings(shop_defs):
    """Every code server and run worker holds each model's row-count and max-date check specs:
    their descriptions are one string each per distinct text, not one per check (~1 MB at
    3,000 models, bench/load_bench.py)."""
    from rescue_defs.checks.rules import MAX_DATE_CHECK, ROW_COUNT_CHECK

    specs = [
        spec
        for assets in shop_defs.assets or ()
        if isinstance(assets, dg.AssetsDefinition)
        for spec in assets.check_specs
        if spec.name in (ROW_COUNT_CHECK, MAX_DATE_CHECK)
    ]
    assert len(specs) > 10
    assert len({id(spec.description) for spec in specs}) == len({s.description for s in specs})


def test_a_code_location_keeps_no_validation_rules_after_making_its_checks(shop_project, warehouse):
    """The rules (a dataclass a model, ~1 MB at 3,000 models) make the check specs, then go: a
    code server never validates; a run worker makes them again for validation's settings."""
    from rescue_defs.assets.dbt import rules_for

    rules_for.cache_clear()
    defs = build_definitions(shop_project)
    defs.get_repository_def().load_all_definitions()
    assert rules_for.cache_info().currsize == 0
