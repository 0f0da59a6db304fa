"""`rescue plan` from the terminal: readable plans, JSON, one-line errors with exit code 2."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rescue_defs.cli import main
from tests.conftest import shared_manifest_path


def test_plan_prints_stages_advice_and_checklist(shop_project, capsys):
    code = main(
        [
            "plan",
            "--project-dir",
            str(shop_project.project_dir),
            "--select",
            "+int_orders_enriched+",
            "--today",
            "2026-03-10",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "Step 1 [upstream]" in out and "Step 3 [downstream]" in out
    assert "fct_orders: incremental" in out
    assert "Pre-run checklist:" in out and "overlap:" in out


@pytest.mark.parametrize("source", ["generated", "mattermost-analytics-302-models"])
def test_plan_over_a_bare_manifest_as_json(capsys, source, request, tmp_path):
    if source == "generated":
        path = tmp_path / "manifest.json"  # a bare manifest: no project beside it
        path.write_text(json.dumps(request.getfixturevalue("generated_manifest").raw))
    else:
        path = shared_manifest_path(source)
    assert (
        main(
            [
                "plan",
                "--manifest",
                str(path),
                "--select",
                "config.materialized:incremental+",
                "--json",
            ]
        )
        == 0
    )
    plan = json.loads(capsys.readouterr().out)
    assert plan["models"] and all(m.startswith("model.") for m in plan["models"])
    assert {"stages", "groups", "advice", "checklist", "expected_seconds"} <= plan.keys()
    grouped = [m for g in plan["groups"] for m in g["models"]]
    assert sorted(grouped) == sorted(plan["models"])
    assert set(plan["advice"]) <= set(plan["models"]) and plan["advice"]


def test_a_bad_selection_is_one_line_and_exit_code_2(shop_project, capsys):
    code = main(
        [
            "plan",
            "--project-dir",
            str(shop_project.project_dir),
            "--select",
            "fct_orders+ no_such_model",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "'no_such_model': matches no model" in err


def test_console_script_exits_2_on_an_empty_selection(shop_project, tmp_path):
    rescue = Path(sys.executable).parent / "rescue"
    result = subprocess.run(
        [str(rescue), "plan", "--manifest", str(shop_project.manifest_path), "--select", " "],
        capture_output=True,
        text=True,
        env={**os.environ, "RESCUE_DUCKDB_PATH": str(tmp_path)},
    )
    assert result.returncode == 2
    assert result.stderr.startswith("rescue: error: the selection is empty")
    assert result.stdout == ""


def test_the_console_script_says_all_main_says_and_leaves_no_temporary_folder(
    shop_project, tmp_path, capsys
):
    """The script leaves without Python's teardown (bench/plan_bench.py): its output is whole
    (block-buffered, as in a terminal's pipe) and nothing is left behind (a bare manifest's
    `path:` selection makes a folder of empty files)."""
    plan = ["plan", "--manifest", str(shop_project.manifest_path), "--json"]
    plan += ["--select", "path:models/marts/fct_orders.sql", "--today", "2026-03-10"]
    assert main(plan) == 0
    in_process = json.loads(capsys.readouterr().out)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "rescue"), *plan],
        capture_output=True,
        text=True,
        env={**env, "TMPDIR": str(temporary), "RESCUE_DUCKDB_PATH": str(tmp_path)},
        timeout=120,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert json.loads(result.stdout) == in_process
    assert in_process["models"]
    assert list(temporary.iterdir()) == []


def test_the_console_script_run_by_its_path_finds_dbt_without_the_environment_on_path(
    shop_project, tmp_path, warehouse
):
    """`.venv/bin/rescue launch` as the README shows it, in a shell whose PATH has no .venv/bin:
    the warehouse is read through this environment's dbt, found beside its Python."""
    import duckdb

    warehouse.parent.mkdir(parents=True, exist_ok=True)
    duckdb.connect(str(warehouse)).close()  # a warehouse to read
    bare = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if ".venv" not in p)
    assert shutil.which("dbt", path=bare) is None  # no other dbt would rescue it
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "rescue"),
            "launch",
            "--dry-run",
            "--select",
            "fct_orders",
        ]
        + ["--project-dir", str(shop_project.project_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": bare, "DAGSTER_HOME": str(tmp_path)},
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and ": dry_run" in result.stdout


def _bad_manifests(tmp_path: Path) -> dict[str, Path]:
    import gzip

    files = {
        "not JSON": ("manifest.json", b"this is not json"),
        "empty": ("empty.json", b""),
        "a list": ("list.json", b"[]"),
        "an empty object": ("obj.json", b"{}"),
        "a corrupt gz": ("broken.json.gz", gzip.compress(b'{"nodes": {}}')[:-9]),
    }
    out = {}
    for label, (name, data) in files.items():
        (tmp_path / name).write_bytes(data)
        out[label] = tmp_path / name
    out["a folder"] = tmp_path
    return out


@pytest.mark.parametrize(
    "label", ["not JSON", "empty", "a list", "an empty object", "a corrupt gz", "a folder"]
)
def test_a_file_that_is_not_a_manifest_is_one_line_and_exit_code_2(label, tmp_path, capsys):
    path = _bad_manifests(tmp_path)[label]
    assert main(["plan", "--manifest", str(path), "--select", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rescue: error: ") and "\n" not in err and "Traceback" not in err


def test_bad_plan_arguments_are_one_line_each(shop_project, tmp_path, capsys):
    project = ["--project-dir", str(shop_project.project_dir)]
    window = ["--changed-from", "2026-02-10", "--changed-to", "2026-02-01"]
    assert main(["plan", *project, "--select", "fct_orders", *window]) == 2
    assert "is before --changed-from" in capsys.readouterr().err
    # a --state of another project would call every model new
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"metadata": {"project_name": "someone_else"}, "nodes": {}}))
    assert main(["plan", *project, "--select", "fct_orders", "--state", str(other)]) == 2
    assert "of project 'someone_else', not 'shop'" in capsys.readouterr().err
    # a pasted wall of text is named, not echoed
    assert main(["plan", *project, "--select", "x" * 100_000]) == 2
    err = capsys.readouterr().err
    assert len(err) < 400 and "(100000 characters)" in err


def test_a_project_that_does_not_parse_says_why_in_one_line(tmp_path, capsys):
    import shutil

    project = tmp_path / "broken"
    shutil.copytree(Path(__file__).parent / "fixtures" / "jaffle_shop", project)
    (project / "dbt_project.yml").write_text("name: jaffle_shop\nversion: [unclosed\n")
    assert main(["plan", "--project-dir", str(project), "--select", "orders"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("rescue: error: dbt parse failed in")
    assert not err.endswith("Runtime Error") and len(err) > len("rescue: error: dbt parse")


def _said(argv: list[str], capsys) -> tuple[int, str]:
    """Exit code and what stderr said (argparse's refusals exit through SystemExit)."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err.strip()


REFUSED = {
    "an absolute path selector": (["--select", "path:/etc"], "relative to the project folder"),
    "state: without a comparison": (["--select", "state:modified+"], "previous manifest"),
    "result: selector": (["--select", "result:error+"], "run_results.json"),
    "source_status: selector": (["--select", "source_status:fresher+"], "freshness results"),
    "--select twice": (["--select", "stg_orders", "--select", "fct_orders"], "given twice"),
    "--exclude twice": (["--select", "a", "--exclude", "b", "--exclude", "c"], "given twice"),
    "a date out of range": (["--select", "stg_orders", "--today", "9999-12-31"], "2199-12-31"),
    "a window from year 1": (["--select", "a", "--changed-from", "0001-01-01"], "1970-01-01"),
    "an unknown flag": (["--select", "a", "--fullrefresh"], "unrecognized arguments"),
}


@pytest.mark.parametrize("label", REFUSED)
def test_bad_plan_input_is_refused_in_one_line_naming_it(label, shop_project, capsys):
    args, named = REFUSED[label]
    code, err = _said(["plan", "--manifest", str(shop_project.manifest_path), *args], capsys)
    assert code == 2
    assert err.startswith("rescue") and "\n" not in err and "Traceback" not in err, err
    assert named in err


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["launch", "--select", "stg_orders", "--wait-timeout", "nan"], "--wait-timeout"),
        (["launch", "--select", "stg_orders", "--wait-timeout", "-1"], "--wait-timeout"),
        (["launch", "--select", "stg_orders", "--max-runtime", "-5"], "--max-runtime"),
        (["status", "x" * 100_000], "(100000 characters)"),
        (["resume", "a;drop table b"], "not a rescue id"),
        (["cancel", ""], "not a rescue id"),
    ],
    ids=["nan timeout", "negative timeout", "negative max runtime", "huge id", "id", "empty id"],
)
def test_bad_launch_and_follow_input_is_one_line_and_registers_nothing(
    argv, named, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    code, err = _said(argv, capsys)
    assert code == 2
    assert "\n" not in err and len(err) < 400 and named in err, err
    assert not (tmp_path / "home").exists(), "nothing opened, nothing registered"


def test_a_dagster_home_that_cannot_be_used_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "a_file" / "home"))
    code, err = _said(["status"], capsys)
    assert code == 2
    assert (
        err == f"rescue: error: DAGSTER_HOME {tmp_path}/a_file/home cannot be used: Not a directory"
    )


def test_waiting_without_a_daemon_says_so_once_it_is_known(instance):
    import time

    from dagster._daemon.types import DaemonHeartbeat

    from rescue_defs.cli.follow import daemon_warning

    assert "no Dagster daemon seen on this instance (never)" in daemon_warning(instance)
    instance.add_daemon_heartbeat(DaemonHeartbeat(time.time() - 600, "SENSOR", None, None))
    assert "not in the last 60 s" in daemon_warning(instance)
    instance.add_daemon_heartbeat(DaemonHeartbeat(time.time(), "SENSOR", None, None))
    assert daemon_warning(instance) == ""


KEYS_AS_THE_CLI_SEES_THEM = """
import json, sys, traceback
class Who:
    first = None
    def find_spec(self, name, path=None, target=None):
        if name == "dagster_dbt" and Who.first is None:
            Who.first = "".join(traceback.format_stack(limit=12))
        return None
sys.meta_path.insert(0, Who())
import dagster as dg
from rescue_defs.cli import main
from rescue_defs.cli.inputs import model_keys as _keys
from rescue_defs.planning.manifest import DbtManifest
from rescue_defs.rescues.kickoff import dbt_test_checks
from rescue_defs.rescues.proving import proof_request
from rescue_defs.rescues.requests import steps_request
from rescue_defs.rescues.store import load, rescue_ids
assert main(["launch", "--dry-run", "--project-dir", sys.argv[1], "--select", "+fct_orders"]) == 0
manifest = DbtManifest.load(sys.argv[2], sys.argv[1])
with dg.DagsterInstance.get() as instance:
    keys = _keys(instance, manifest)
    # the runs a launch submits: its steps' and its proof's
    (rescue_id,) = rescue_ids(instance)
    record = load(instance, rescue_id)
    by_key = {k: u for u, k in keys.items()}
    checks_of = lambda selected: dbt_test_checks(manifest, {by_key[k] for k in selected})
    assert record["proof"]["models"], record["proof"]  # fct_orders is incremental
    requests = [
        steps_request(record, record["steps"], keys, checks_of, prove=True),
        proof_request(record, keys),
    ]
checks = dbt_test_checks(manifest, set(keys))
print(json.dumps({
    "dagster_dbt": Who.first,
    "configured": sorted({k for r in requests for k in r.run_config["resources"]}),
    "keys": {uid: key.path for uid, key in keys.items()},
    "checks": sorted([c.asset_key.path, c.name] for c in checks),
}))
"""


def test_the_cli_keys_models_and_tests_as_the_code_location_published_without_dagster_dbt(
    shop_defs, shop_project, instance
):
    """dagster-dbt imports much of dbt the CLI never uses: where the code location published
    the key of every model and the check of every test, the CLI takes them from the instance
    and does not import it, nor to make the runs a launch submits; they are the code
    location's own."""
    from rescue_defs.assets.keys import model_asset_keys
    from rescue_defs.planning.manifest import DbtManifest
    from rescue_defs.rescues.kickoff import dbt_test_checks
    from tests.helpers import evaluate_rescue_sensor

    evaluate_rescue_sensor(shop_defs, instance)  # the code location publishes its keys
    project_dir, manifest_path = str(shop_project.project_dir), str(shop_project.manifest_path)
    result = subprocess.run(
        [sys.executable, "-c", KEYS_AS_THE_CLI_SEES_THEM, project_dir, manifest_path],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["dagster_dbt"] is None, seen["dagster_dbt"]  # who imported it
    # the runs are configured through a resource the code location has
    assert seen["configured"] and set(seen["configured"]) <= set(shop_defs.resources)
    manifest = DbtManifest.load(manifest_path, project_dir)
    keys = model_asset_keys(manifest)  # this process loaded the code location: its translator
    assert seen["keys"] == {uid: key.path for uid, key in keys.items()}
    checks = dbt_test_checks(manifest, set(keys))
    assert seen["checks"] == sorted([c.asset_key.path, c.name] for c in checks)
    assert len(seen["checks"]) > 50


def test_keys_are_published_without_the_checks_of_tests_dagster_dbt_cannot_key(
    shop_project, tmp_path
):
    """A test of a node the manifest does not hold (GitLab's manifest has one, of a disabled
    package's model): dagster-dbt raises for it, so it is left out of what is published (the
    CLI asks dagster-dbt for a selection holding it, as before) and the rest is published."""
    from rescue_defs.assets.translators import DEFAULT_TRANSLATOR, test_check_keys
    from rescue_defs.planning.manifest import DbtManifest

    raw = json.loads(Path(shop_project.manifest_path).read_text())
    uid, test = next((u, n) for u, n in raw["nodes"].items() if n["name"].startswith("not_null"))
    orphan = {**test, "unique_id": "test.shop.of_a_gone_model", "attached_node": "model.gone.x"}
    orphan["depends_on"] = {**test["depends_on"], "nodes": ["model.gone.x"]}
    raw["nodes"][orphan["unique_id"]] = orphan
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(raw))

    found = test_check_keys(DbtManifest.load(str(path)), DEFAULT_TRANSLATOR)

    assert "test.shop.of_a_gone_model" not in found
    assert found[uid] is not None and len(found) > 50


def test_a_value_published_to_one_instance_is_published_to_the_next_one_too():
    """A process that serves two instances (a test suite's worker) must not take "written
    to the first" for "written": the second's CLI would find nothing published."""
    import dagster as dg

    from rescue_defs.published import publish, read

    for _ in range(2):
        with dg.instance_for_test() as instance:
            publish(instance, "rescue/test/value", "the same value")
            assert read(instance, "rescue/test/value") == "the same value"
