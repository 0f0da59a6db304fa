"""The lowest versions pyproject.toml admits (Dagster's previous minor, dagster-dbt, dbt-core,
DuckDB, pandas): the built wheel installs into a fresh virtual environment resolved to the
lowest of every range, its `rescue` command starts, and the planning and validation tests pass
there. The top of the ranges is uv.lock's, which the rest of the suite runs."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UV = REPO / ".tools" / "bin" / "uv"  # ./dev installs it

# planning end to end, validation from pure verdicts to a real build, and a rescue on Postgres
# storage and warehouse (the big-manifest planning cases are pure Python: they run at the top only)
TESTS = [
    "tests/test_planning.py",
    "tests/test_advice.py",
    "tests/test_validation.py::test_row_count_fails_when_empty_or_dropped_beyond_the_allowed_fraction",
    "tests/test_validation.py::test_max_date_verdict_explains_the_lag_and_never_raises",
    "tests/test_validation.py::test_identifiers_from_a_crafted_manifest_cannot_change_the_sql",
    "tests/test_validation.py::test_checks_run_on_an_external_project_with_no_configuration",
    "tests/test_postgres.py::"
    "test_a_rescue_on_postgres_storage_and_warehouse_builds_validates_and_reports",
]


def _run(args: list, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, timeout=900, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, args))}\n{done.stdout[-3000:]}{done.stderr}"
    return done


@pytest.fixture(scope="module")
def lowest_venv(tmp_path_factory) -> Path:
    if not UV.exists():
        pytest.fail(f"{UV} is missing: run the tests with ./dev test, which installs it")
    root = tmp_path_factory.mktemp("lowest")
    _run([UV, "build", "--wheel", "--out-dir", root / "dist", "--quiet"], cwd=REPO)
    (wheel,) = (root / "dist").glob("rescue_defs-*.whl")
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    requirements = root / "requirements.txt"
    requirements.write_text("\n".join([*dependencies, "pytest>=9,<10", "psutil>=7", ""]))
    venv = root / "venv"
    _run([UV, "venv", "--quiet", "--python", sys.executable, venv])
    env = {**os.environ, "VIRTUAL_ENV": str(venv)}
    # every direct dependency at the lowest version its range admits
    install = [UV, "pip", "install", "--quiet", "--compile-bytecode"]
    _run([*install, "--resolution", "lowest-direct", "-r", requirements], env=env)
    _run([*install, "--no-deps", wheel], env=env)
    return venv


def test_the_wheel_installs_with_the_lowest_versions_and_its_command_starts(lowest_venv, tmp_path):
    python = lowest_venv / "bin" / "python"
    versions = _run(
        [
            python,
            "-c",
            "import dagster, dagster_dbt, rescue_defs; "
            "print(dagster.__version__, dagster_dbt.__version__, rescue_defs.__file__)",
        ],
        cwd=tmp_path,  # not the repository: the installed package
    ).stdout.split()
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    lowest = {d.split(">=")[0]: d.split(">=")[1].split(",")[0] for d in dependencies if ">=" in d}
    assert versions[0] == lowest["dagster"] and versions[1] == lowest["dagster-dbt"], versions
    assert str(lowest_venv) in versions[2], versions
    said = _run([lowest_venv / "bin" / "rescue", "--help"], cwd=tmp_path).stdout
    assert "plan" in said and "launch" in said


def test_planning_and_validation_pass_with_the_lowest_versions(lowest_venv):
    env = {**os.environ, "PATH": f"{lowest_venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    pytest = ["-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "-o", "addopts=", "-q"]
    done = subprocess.run(
        [lowest_venv / "bin" / "python", *pytest, "-k", "not generated and not gitlab", *TESTS],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1]
