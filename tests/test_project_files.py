"""What the product reads of a user's project folder: the manifest of its configured target,
kept where the user's own dbt commands do not write, and every file dbt parses, a local
package installed by `dbt deps` (a symlink into dbt_packages/) included."""

import json
import os
import subprocess

import dagster as dg
from dagster_dbt.dbt_manifest import read_manifest_path

from rescue_defs import rescues
from rescue_defs.assets.dbt import load_manifest, rules_for, selector_for
from rescue_defs.checks.rules import Settings
from rescue_defs.definitions import build_definitions
from rescue_defs.project import load_dbt_project
from tests.tickets import install_packages


def _load(root, profiles):
    read_manifest_path.cache_clear()  # dagster-dbt's, which load_manifest reads
    load_manifest.cache_clear()
    selector_for.cache_clear()
    rules_for.cache_clear()
    load_dbt_project.cache_clear()
    return load_dbt_project(str(root / "ticket_analytics"), str(profiles))


def _model_schemas(path) -> set[str]:
    nodes = json.loads(path.read_text())["nodes"].values()
    return {n["schema"] for n in nodes if n["resource_type"] == "model"}


def test_a_dbt_command_of_another_target_in_the_project_folder_changes_nothing_it_reads(
    tmp_path, warehouse
):
    root, profiles = install_packages(tmp_path, "duckdb", str(warehouse))
    project = _load(root, profiles)
    kept = project.manifest_path
    written = kept.stat().st_mtime_ns
    assert _model_schemas(kept) == {"analytics", "analytics_stg_tickets"}

    # the engineer's own command, in their project folder, for their other target
    folder = root / "ticket_analytics"
    subprocess.run(
        [
            "dbt",
            "parse",
            "--quiet",
            "--target",
            "verify",
            "--project-dir",
            str(folder),
            "--profiles-dir",
            str(profiles),
        ],
        check=True,
    )
    assert _model_schemas(folder / "target" / "manifest.json") == {"verify", "verify_stg_tickets"}

    again = _load(root, profiles)
    assert again.manifest_path == kept and kept.stat().st_mtime_ns == written
    rules = rules_for(str(again.manifest_path), str(again.project_dir), Settings())
    assert {r.relation.schema for r in rules.values()} == {"analytics", "analytics_stg_tickets"}


def test_an_edit_inside_a_local_package_is_parsed_again_and_rescued_as_a_merge(
    tmp_path, warehouse, instance, monkeypatch
):
    root, profiles = install_packages(tmp_path, "duckdb", str(warehouse))
    monkeypatch.setenv("DAGSTER_IS_DEV_CLI", "1")  # `dagster dev`: parse when the code changed
    monkeypatch.setenv("RESCUE_PARSE_WAIT_SECONDS", "600")  # however loaded the machine
    project = _load(root, profiles)
    link = root / "ticket_analytics" / "dbt_packages" / "tickets_source"
    assert link.is_symlink(), "dbt deps installs a local package as a link"

    def tick() -> str:
        defs = build_definitions(load_dbt_project(str(root / "ticket_analytics"), str(profiles)))
        with dg.build_sensor_context(instance=instance, definitions=defs, cursor=cursor[0]) as c:
            result = defs.resolve_sensor_def("merge_sensor").evaluate_tick(c)
        cursor[0] = result.cursor or cursor[0]
        return result.skip_message or ""

    cursor: list = [None]
    assert "first deployment recorded" in tick()
    parsed = project.manifest_path.stat().st_mtime_ns

    # a merge changes the package's staging model, in the package's own folder
    model = root / "tickets_source" / "models" / "stg_tickets__ticket.sql"
    model.write_text(model.read_text().replace("lower(status)", "upper(status)"))
    later = parsed / 1e9 + 5
    os.utime(model, (later, later))
    project = _load(root, profiles)
    assert project.manifest_path.stat().st_mtime_ns > parsed, "parsed again"
    message = tick()
    assert "code changed: stg_tickets__ticket" in message, message
    (rescue_id,) = rescues.rescue_ids(instance)
    record = rescues.load(instance, rescue_id)
    assert {record["names"][m] for m in record["plan"]["models"]} == {
        "stg_tickets__ticket",
        "tickets__ticket_enhanced",
        "tickets__status_summary",
        "tickets__requester_workload",
    }
