"""B3: code-location load, the product's definitions (every check, job and sensor) against a
plain `@dbt_assets` module over the same parsed project, each in a fresh Python process (what
a code server or run worker pays), alternating, medians; peak RSS beside. A third load, the
dbt models with their row-count and max-date check specs alone (no other job, sensor or
check), shows what the checks the UI shows cost by themselves; a fourth, the plain module with
rescue added through the public API (`with_rescue`), what adopting rescue costs a team's
location without the bundled demo's own nightly job and loaders; a fifth, the plain module with
two do-nothing check specs a model in a `@multi_asset_check` of its own, the floor Dagster
itself sets for a location that shows two checks a model; its peak RSS is printed beside the
floor with one more asset job of the models (what a location running them in a job of its own,
as rescue's stage runs do, cannot go below).

Run: .venv/bin/python bench/load_bench.py [--models 200 1000 3000] [--repeat 3]
(prints medians and ratios; no assertions)
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PRODUCT = """
import resource, time
t = time.perf_counter()
from rescue_defs.definitions import build_definitions
from rescue_defs.project import load_dbt_project
defs = build_definitions(load_dbt_project(PROJECT))
defs.get_repository_def().load_all_definitions()
"""
PLAIN = """
import resource, time
t = time.perf_counter()
import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets
project = DbtProject(project_dir=PROJECT)

@dbt_assets(manifest=project.manifest_path)
def plain_dbt_assets(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    yield from dbt.cli(["build"], context=context).stream()

defs = dg.Definitions(
    assets=[plain_dbt_assets], resources={"dbt": DbtCliResource(project_dir=project)}
)
defs.get_repository_def().load_all_definitions()
"""
# what adopting rescue adds to a team's location: the plain module above, through the public
# API (`with_rescue`), without the bundled demo's own nightly job and loaders
ADOPTED = PLAIN.replace(
    "defs.get_repository_def()",
    "from rescue_defs.api import with_rescue\n"
    "defs = with_rescue(defs, project=project)\n"
    "defs.get_repository_def()",
)
# the floor the checks set: the same dbt multi-asset with its row-count and max-date check specs
# (two per model, what the UI shows), in a Definitions of its own with no other job or sensor
CHECKS = """
import resource, time
t = time.perf_counter()
import dagster as dg
from dagster_dbt import DbtCliResource
from rescue_defs.assets.dbt import RescueRun, build_dbt_models
from rescue_defs.checks.validation import ValidationResource
from rescue_defs.project import load_dbt_project
project = load_dbt_project(PROJECT)
defs = dg.Definitions(
    assets=[build_dbt_models(project)],
    resources={
        "dbt": DbtCliResource(project_dir=project),
        "validation": ValidationResource(),
        "rescue_run": RescueRun(),
    },
)
defs.get_repository_def().load_all_definitions()
"""
# the floor Dagster itself sets for the checks the UI shows: the plain module with two check
# specs a model (what row-count and max-date are) in a separate `@multi_asset_check` that does
# nothing, not one line of rescue's
FLOOR = PLAIN.replace(
    "defs = dg.Definitions(\n    assets=[plain_dbt_assets],",
    "specs = [\n"
    "    dg.AssetCheckSpec(name, asset=key)\n"
    "    for key in plain_dbt_assets.keys\n"
    "    for name in ('row_count_is_valid', 'max_date_is_current')\n"
    "]\n\n"
    "@dg.multi_asset_check(specs=specs)\n"
    "def model_checks(context):\n"
    "    yield from ()\n\n"
    "defs = dg.Definitions(\n    assets=[plain_dbt_assets], asset_checks=[model_checks],",
)
assert FLOOR != PLAIN
# the floor of a location that also runs the models in a job of their own (rescue's stage runs
# need one, in process): the floor above plus one asset job of every dbt model and its checks
FLOOR_JOB = FLOOR.replace(
    "asset_checks=[model_checks],",
    "asset_checks=[model_checks],\n    jobs=[dg.define_asset_job('models_job', "
    "selection=dg.AssetSelection.assets(plain_dbt_assets), executor_def=dg.in_process_executor)],",
)
assert FLOOR_JOB != FLOOR
# and with rescue's code imported, nothing of it built: every module `with_rescue` imports (what a
# code server holds of rescue before it makes one asset, check or sensor)
FLOOR_CODE = FLOOR_JOB.replace(
    "defs.get_repository_def()",
    "import importlib\n"
    "for module in RESCUE_MODULES:\n"
    "    importlib.import_module(module)\n"
    "defs.get_repository_def()",
)
assert FLOOR_CODE != FLOOR_JOB
# the modules a location adopting rescue imports (found once per invocation, `rescue_modules`)
LISTED = (
    """
import sys
before = set(sys.modules)
"""
    + ADOPTED
    + """
print(json.dumps(sorted(m for m in set(sys.modules) - before if m.split(".")[0] == "rescue_defs")))
"""
)
REPORT = """
import json
print(json.dumps({"seconds": time.perf_counter() - t,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def rescue_modules(project: Path) -> list[str]:
    env = dict(os.environ, RESCUE_DBT_PROJECT_DIR=str(project))
    script = f"import json\nPROJECT = {str(project)!r}\n" + LISTED
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def load(code: str, project: Path, modules: list[str] = ()) -> dict:
    script = f"PROJECT = {str(project)!r}\nRESCUE_MODULES = {list(modules)!r}\n" + code + REPORT
    env = dict(os.environ, RESCUE_DBT_PROJECT_DIR=str(project))
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, nargs="+", default=[200, 1000, 3000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="load-bench-"))
    os.environ["RESCUE_DUCKDB_PATH"] = str(work / "warehouse.duckdb")
    os.environ["PATH"] = f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}"

    from rescue_defs.project import load_dbt_project
    from tests.generated_project import write_project

    rows = []
    for models in args.models:
        project = write_project(work / str(models), models=models)
        # parsed once, as a deployment builds its manifest; the plain module reads it where
        # dagster-dbt looks by default (the product keeps its own per target)
        parsed = load_dbt_project(str(project))
        shutil.copy(parsed.manifest_path, project / "target" / "manifest.json")
        modules = rescue_modules(project)
        plain, floor, floor_job, floor_code, checks, adopted, product = ([] for _ in range(7))
        for _ in range(args.repeat):
            plain.append(load(PLAIN, project))
            floor.append(load(FLOOR, project))
            floor_job.append(load(FLOOR_JOB, project))
            floor_code.append(load(FLOOR_CODE, project, modules))
            checks.append(load(CHECKS, project))
            adopted.append(load(ADOPTED, project))
            product.append(load(PRODUCT, project))
        rows.append((models, plain, floor, floor_job, floor_code, checks, adopted, product))

    print(f"\nB3 code-location load, fresh process each, median of {args.repeat}")
    print(
        f"{'models':>6} {'plain @dbt_assets':>18} {'+ 2 do-nothing checks':>22}"
        f" {'models + checks':>16}"
        f" {'plain + with_rescue':>20} {'bundled location':>17}"
        f"  RSS MB: plain / + 2 do-nothing checks / and a job of the models / and rescue's"
        " modules imported / + with_rescue / bundled"
    )
    for models, plain, floor, floor_job, floor_code, checks, adopted, product in rows:
        a, f, c, w, b = (
            statistics.median(p["seconds"] for p in ps)
            for ps in (plain, floor, checks, adopted, product)
        )
        ra, rf, rj, rm, rw, rb = (
            statistics.median(p["rss_mb"] for p in ps)
            for ps in (plain, floor, floor_job, floor_code, adopted, product)
        )
        print(
            f"{models:>6} {a:>16.2f} s {f:>13.2f} s {f / a:>5.2f}x"
            f" {c:>7.2f} s {c / a:>5.2f}x {w:>11.2f} s {w / a:>5.2f}x"
            f" {b:>8.2f} s {b / a:>5.2f}x  {ra:.1f} / {rf:.1f} ({rf / ra:.3f}x)"
            f" / {rj:.1f} ({rj / ra:.3f}x) / {rm:.1f} ({rm / ra:.3f}x)"
            f" / {rw:.1f} ({rw / ra:.3f}x) / {rb:.1f}"
        )


if __name__ == "__main__":
    main()
