import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster_dbt import DbtProject

from rescue_defs.definitions import build_definitions
from rescue_defs.project import BUNDLED_PROJECT_DIR, load_dbt_project

FIXTURES = Path(__file__).parent / "fixtures"


def pytest_configure(config: pytest.Config) -> None:
    # Tests' folders (warehouse files, Dagster homes, dbt targets) in RAM where the machine has
    # some: SQLite and DuckDB commit, and flush to disk, on every stored event, and those
    # flushes were ~20% of a scenario test's time (the same files, the same code, no disk
    # wait). pytest keeps its last three runs' folders there, as under /tmp.
    shm = Path("/dev/shm")
    if "PYTEST_DEBUG_TEMPROOT" not in os.environ and shm.is_dir() and os.access(shm, os.W_OK):
        os.environ["PYTEST_DEBUG_TEMPROOT"] = str(shm)


SHARED_MANIFESTS = Path(__file__).resolve().parents[2] / "shared" / "manifests"


def prepare(project_dir: Path, warehouse: Path) -> DbtProject:
    """Parse a dbt project once (writes target/manifest.json), as `dagster dev` would."""
    with pytest.MonkeyPatch.context() as env:
        # profiles need a warehouse path to parse; tests then each set their own
        env.setenv("RESCUE_DUCKDB_PATH", str(warehouse))
        project = load_dbt_project(str(project_dir))
        project.preparer.prepare(project)
    return project


@pytest.fixture(autouse=True)
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own DuckDB file, outside any dbt project folder."""
    path = tmp_path / "warehouse" / "warehouse.duckdb"
    monkeypatch.setenv("RESCUE_DUCKDB_PATH", str(path))
    monkeypatch.delenv("RESCUE_DBT_PROJECT_DIR", raising=False)
    monkeypatch.delenv("RESCUE_SANDBOX_DUCKDB_PATH", raising=False)
    # tests run at any hour: heavy rescues are deferred only where a test sets peak hours
    # and the clock (RESCUE_PEAK_HOURS, RESCUE_NOW)
    monkeypatch.setenv("RESCUE_PEAK_HOURS", "none")
    monkeypatch.delenv("RESCUE_NOW", raising=False)
    return path


@pytest.fixture(scope="session")
def shop_project(tmp_path_factory: pytest.TempPathFactory) -> DbtProject:
    return prepare(BUNDLED_PROJECT_DIR, tmp_path_factory.mktemp("parse") / "parse.duckdb")


@pytest.fixture
def shop_defs(shop_project: DbtProject, warehouse: Path) -> dg.Definitions:
    return build_definitions(shop_project)


# no stdout capture in test instances: a `tail -F` per step outlives runs whose dbt a test
# kills, and the test process (test_soak.py's homes say the same in their dagster.yaml)
NO_COMPUTE_LOGS = {
    "compute_logs": {
        "module": "dagster._core.storage.noop_compute_log_manager",
        "class": "NoOpComputeLogManager",
    }
}


@pytest.fixture
def instance(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """The test's own Dagster instance; a test marked `built(day)` starts from a copy of the
    bundled warehouse and home as after the daily pipeline through that day (`shop_builds`)."""
    marker = request.node.get_closest_marker("built")
    if marker is None:
        with dg.instance_for_test(overrides=NO_COMPUTE_LOGS) as instance:
            yield instance
        return
    home = tmp_path / "built_home"
    template = request.getfixturevalue("shop_builds")(marker.args[0])
    copy_of_build(template, request.getfixturevalue("warehouse"), home)
    with dg.instance_for_test(temp_dir=str(home), overrides=NO_COMPUTE_LOGS) as instance:
        yield instance


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, make) -> Path:
    """A folder `make(folder)` fills once for the whole run, then only read: the first test
    worker to ask builds it while the other waits (pytest-xdist's recipe for session fixtures
    run once). The suite is CPU-bound: a build made twice is a test's time lost."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    # under xdist each worker's base is in the run's own folder; alone, the base is the run's
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = shared / f"once-{name}"
    with FileLock(str(shared / f"once-{name}.lock")):
        if not (folder / ".done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            (folder / ".done").touch()
    return folder


@pytest.fixture(scope="session")
def shop_builds(tmp_path_factory: pytest.TempPathFactory, shop_project: DbtProject):
    """`build(through)`: a folder holding the bundled warehouse (`warehouse/`) and a Dagster home
    (`home/`) after the daily pipeline loaded and built everything through that day; built
    once per day asked for (for both test workers), so tests start from copies of it."""
    from tests.helpers import materialize_all, raw_config

    made: dict[str, Path] = {}

    def build(through: str) -> Path:
        if through not in made:
            made[through] = built_once(
                tmp_path_factory, f"built-{through}", lambda root: _build(root, through)
            )
        return made[through]

    def _build(root: Path, through: str) -> None:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("RESCUE_DUCKDB_PATH", str(root / "warehouse" / "warehouse.duckdb"))
            env.delenv("RESCUE_SANDBOX_DUCKDB_PATH", raising=False)  # set by the build
            env.setenv("RESCUE_PEAK_HOURS", "none")
            defs = build_definitions(shop_project)
            (root / "home").mkdir()
            home = str(root / "home")
            with dg.instance_for_test(temp_dir=home, overrides=NO_COMPUTE_LOGS) as instance:
                assert materialize_all(defs, instance, raw_config(through)).success

    return build


def copy_of_build(template: Path, warehouse: Path, home: Path) -> None:
    """A test's own warehouse file and Dagster home, copied from a `shop_builds` folder (the
    same file name keeps DuckDB's catalog name, which the views name)."""
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(template / "warehouse" / "warehouse.duckdb", warehouse)
    shutil.copytree(template / "home", home, dirs_exist_ok=True)  # a home's dagster.yaml stays


@pytest.fixture(scope="session")
def jaffle_project_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny jaffle-shop style project, parsed once."""
    path = tmp_path_factory.mktemp("external") / "jaffle_shop"
    shutil.copytree(FIXTURES / "jaffle_shop", path)
    prepare(path, path.parent / "parse.duckdb")
    return path


@pytest.fixture(scope="session")
def shop_manifest(shop_project: DbtProject):
    from rescue_defs.planning.manifest import DbtManifest

    return DbtManifest.load(shop_project.manifest_path, shop_project.project_dir)


@pytest.fixture(scope="session")
def shop_planner(shop_manifest):
    from rescue_defs.planning.plan import Planner

    return Planner(shop_manifest)


def shared_manifest_path(name: str) -> Path:
    """A public project's manifest from ../shared/manifests; the test skips, saying so, in a
    clone without shared/ beside it (the generated project covers the same code paths)."""
    path = SHARED_MANIFESTS / f"{name}.manifest.json.gz"
    if not path.exists():
        pytest.skip(f"public manifest {name} not beside this clone ({SHARED_MANIFESTS})")
    return path


@pytest.fixture(scope="session")
def generated_manifest(tmp_path_factory: pytest.TempPathFactory):
    """An 800-model generated project (tests/generated_project.py), parsed once by dbt."""
    from rescue_defs.planning.manifest import DbtManifest
    from tests.generated_project import write_project

    def make(root: Path) -> None:
        prepare(write_project(root, models=800), root / "parse.duckdb")

    root = built_once(tmp_path_factory, "generated-800", make)
    with pytest.MonkeyPatch.context() as env:  # where `prepare` parsed it
        env.setenv("RESCUE_DUCKDB_PATH", str(root / "parse.duckdb"))
        project = load_dbt_project(str(root / "big"))
    return DbtManifest.load(project.manifest_path, project.project_dir)


@pytest.fixture(scope="session", params=["generated-800-models", "gitlab-2332-models"])
def big_manifest(request):
    """Planning at scale: the generated project always, GitLab's when shared/ is there."""
    if request.param == "generated-800-models":
        return request.getfixturevalue("generated_manifest")
    return request.getfixturevalue("gitlab_manifest")


@pytest.fixture(scope="session")
def gitlab_manifest(tmp_path_factory: pytest.TempPathFactory):
    """GitLab's 2,332-model manifest, gunzipped into a temp dir."""
    import gzip

    from rescue_defs.planning.manifest import DbtManifest

    target = tmp_path_factory.mktemp("gitlab") / "manifest.json"
    with gzip.open(shared_manifest_path("gitlab-analytics-2332-models"), "rb") as src:
        target.write_bytes(src.read())
    return DbtManifest.load(target)


@pytest.fixture(scope="session")
def gitlab_planner(gitlab_manifest):
    from rescue_defs.planning.plan import Planner

    return Planner(gitlab_manifest)


# Longest modules first: with `--dist loadfile` each module runs whole on one worker, and
# starting the long ones first keeps both workers busy to the end (the suite's wall time is
# the slower worker's). Seconds measured on 2 cores (2026-12-04: 30 min in all); unknown
# modules come after these. xdist reorders modules by their number of tests unless told not
# to (`--no-loadscope-reorder` in pyproject.toml): without it this order was ignored, and a
# 42-minute run ended with one worker idle for its last 14 minutes behind the soak tests.
MODULE_SECONDS = {
    "test_rescue_runs.py": 340,
    "test_team_deployment.py": 300,
    "test_demo.py": 330,
    "test_deployment_kill.py": 150,
    "test_incidents.py": 150,
    "test_outage_loop.py": 210,
    "test_validation.py": 170,
    "test_late_rows.py": 180,
    "test_fivetran_style_outage.py": 160,
    "test_soak.py": 150,
    "test_lowest_versions.py": 130,
    "test_merge_sensor.py": 130,
    "test_warehouse.py": 130,
    "test_scale.py": 70,
    "test_definitions.py": 70,
    "test_killed_worker.py": 65,
    "test_dbt_cli.py": 45,
    "test_outage_external.py": 60,
    "test_heavy_windows.py": 35,
    "test_project_files.py": 70,
    "test_bad_input.py": 60,
    "test_settings.py": 30,
    "test_with_rescue.py": 110,
    "test_several_projects.py": 85,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: -MODULE_SECONDS.get(item.path.name, 0))
