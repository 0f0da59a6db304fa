"""`rescue plan` from the terminal: readable plans, JSON, one-line errors with exit code 2."""

import json
import os
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
