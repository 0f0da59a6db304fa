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
    assert "Run 1 [upstream]" in out and "Run 3 [downstream]" in out
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
