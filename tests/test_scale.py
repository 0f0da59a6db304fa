"""More than 200 selected resources: dagster-dbt then runs dbt in a temp copy of the project.
The real warehouse must get every table, and nothing may be left behind."""

import tempfile
from pathlib import Path

import duckdb

from rescue_defs.definitions import build_definitions
from rescue_defs.project import load_dbt_project
from tests.conftest import prepare
from tests.generated_project import write_project
from tests.helpers import materialize_all, query


def _load_sources(warehouse: Path, names: list[str]) -> None:
    """The sources, loaded outside Dagster (as Fivetran would)."""
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute("create schema if not exists raw")
        for name in names:
            conn.execute(
                f'create table raw."{name}" as select range as id, '
                "date '2026-01-01' + cast(range % 30 as integer) as d, range * 1.0 as v, "
                "timestamp '2026-01-30 06:00' as loaded_at from range(40)"
            )


def test_materializing_over_200_models_writes_the_real_warehouse_and_leaves_no_copies(
    tmp_path, instance, warehouse, monkeypatch
):
    monkeypatch.setenv("RESCUE_TODAY", "2026-01-30")
    project_dir = write_project(tmp_path, models=225, seed=3, name="wide")
    project = prepare(project_dir, tmp_path / "parse.duckdb")
    from rescue_defs.planning.manifest import DbtManifest

    manifest = DbtManifest.load(project.manifest_path, project_dir)
    _load_sources(warehouse, sorted(s["name"] for s in manifest.raw["sources"].values()))
    tables = {
        n["alias"] or n["name"] for u, n in manifest.models.items() if u not in manifest.ephemeral
    }
    assert len(tables) > 200

    temp = Path(tempfile.gettempdir())
    ours = (project_dir / "dbt_project.yml").read_text()

    def copies() -> set[Path]:
        # copies of this project only: another test's files (a bare manifest's empty tree of
        # project files) may come and go in the same temp dir meanwhile
        found = set()
        for p in temp.iterdir():
            try:
                if (p / "dbt_project.yml").read_text() == ours:
                    found.add(p)
            except OSError:
                pass
        return found

    copies_before = copies()
    result = materialize_all(
        build_definitions(load_dbt_project(str(project_dir))), instance, raise_on_error=False
    )
    built = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert built >= tables
    in_warehouse = {
        name
        for (name,) in query(
            warehouse,
            "select table_name from information_schema.tables where table_schema = 'main'",
        )
    }
    assert tables <= in_warehouse, "dbt wrote somewhere else than the configured warehouse"
    assert copies() <= copies_before, "the temp copy of the project was left behind"
    assert not list((project_dir / "target").glob("dbt_models-*")), "per-run folders left"
