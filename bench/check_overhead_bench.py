"""What validation costs a 200-model rescue, measured side by side in one run.

A generated 200-model DuckDB project (10 layers of 20 table models, each with a date column)
is built four ways on fresh warehouse files:

1. plain `dbt build` (the baseline a data engineer types by hand);
2. a plain `@dbt_assets` job (dagster-dbt's own overhead, no custom checks);
3. a rescue run: `rescue_step_job` over all 200 models, with the row-count and max-date
   checks (one query per model after dbt exits, plus the check events);
4. the same rescue run with the checks turned off (`validation.enabled = false`: no queries,
   the checks still report, so 3 - 4 is the query cost alone).

It prints wall times, the time the step itself spent validating, and ratios. The goal:
validation at most 10% of the rescue's wall time.

Run: .venv/bin/python bench/check_overhead_bench.py [--models 200] [--repeat 1]
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
LAYER_WIDTH = 20


def write_project(root: Path, models: int) -> Path:
    project = root / "bench_project"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(
        "name: bench\nversion: '1.0.0'\nconfig-version: 2\nprofile: bench\n"
        "models:\n  bench:\n    +materialized: table\n"
        "    +meta: {rescue: {date_column: d, expected_date: today, max_lag_days: 1}}\n"
    )
    (project / "profiles.yml").write_text(
        "bench:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        "      path: \"{{ env_var('RESCUE_DUCKDB_PATH') }}\"\n      threads: 2\n"
    )
    for i in range(models):
        layer, slot = divmod(i, LAYER_WIDTH)
        name = f"m_{layer:02d}_{slot:02d}"
        if layer == 0:
            sql = (
                f"select range as id, date '2026-01-01' + cast(range % 30 as integer) as d "
                f"from range({1000 + slot * 50})"
            )
        else:
            a = f"m_{layer - 1:02d}_{slot:02d}"
            b = f"m_{layer - 1:02d}_{(slot + 7) % LAYER_WIDTH:02d}"
            sql = (
                f"select id, d from {{{{ ref('{a}') }}}} where id % 2 = 0\n"
                f"union all select id, d from {{{{ ref('{b}') }}}} where id % 2 = 1"
            )
        (project / "models" / f"{name}.sql").write_text(sql + "\n")
    return project


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def fresh_warehouse(root: Path, label: str) -> Path:
    path = root / "warehouses" / f"{label}.duckdb"
    path.parent.mkdir(exist_ok=True)
    path.unlink(missing_ok=True)
    os.environ["RESCUE_DUCKDB_PATH"] = str(path)
    return path


def validation_seconds(instance: dg.DagsterInstance, run_id: str) -> float:
    for record in instance.all_logs(run_id):
        m = re.search(r"validated (\d+) model\(s\) in ([\d.]+) s", record.user_message or "")
        if m:
            return float(m.group(2))
    return 0.0


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--models", type=int, default=200)
    args.add_argument("--repeat", type=int, default=1)
    opts = args.parse_args()

    from dagster_dbt import DbtCliResource, dbt_assets

    from rescue_defs.definitions import build_definitions
    from rescue_defs.project import load_dbt_project

    os.environ["RESCUE_TODAY"] = "2026-01-30"
    # dagster-dbt runs `dbt` from PATH
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    root = Path(tempfile.mkdtemp(prefix="check-bench-"))
    try:
        project_dir = write_project(root, opts.models)
        fresh_warehouse(root, "parse")
        project = load_dbt_project(str(project_dir))
        project.preparer.prepare(project)
        dbt_bin = str(Path(sys.executable).parent / "dbt")

        @dbt_assets(manifest=project.manifest_path, project=project)
        def plain_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
            yield from dbt.cli(["build"], context=context).stream()

        plain_job = dg.Definitions(
            assets=[plain_models],
            resources={"dbt": DbtCliResource(project_dir=project)},
            executor=dg.in_process_executor,
        ).resolve_implicit_global_asset_job_def()

        defs = build_definitions(project)
        step_job = defs.resolve_job_def("rescue_step_job")
        keys = [k for k in defs.resolve_asset_graph().materializable_asset_keys]
        results: dict[str, list[float]] = {
            "dbt build": [],
            "@dbt_assets": [],
            "rescue": [],
            "rescue, checks off": [],
        }
        validating: list[float] = []
        for _ in range(opts.repeat):
            fresh_warehouse(root, "cli")
            cli = subprocess.run(
                [
                    dbt_bin,
                    "build",
                    "--project-dir",
                    str(project_dir),
                    "--profiles-dir",
                    str(project_dir),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            start = time.perf_counter()
            cli = subprocess.run(
                [
                    dbt_bin,
                    "build",
                    "--project-dir",
                    str(project_dir),
                    "--profiles-dir",
                    str(project_dir),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            results["dbt build"].append(time.perf_counter() - start)
            assert cli.returncode == 0, cli.stdout[-2000:]

            with dg.instance_for_test() as instance:
                fresh_warehouse(root, "plain")
                plain_job.execute_in_process(instance=instance)  # first build: tables exist
                seconds, run = timed(
                    lambda instance=instance: plain_job.execute_in_process(instance=instance)
                )
                assert run.success
                results["@dbt_assets"].append(seconds)

            for label, enabled in (("rescue", True), ("rescue, checks off", False)):
                with dg.instance_for_test() as instance:
                    fresh_warehouse(root, label.replace(", ", "-").replace(" ", "-"))
                    config = {"resources": {"validation": {"config": {"enabled": enabled}}}}
                    step_job.execute_in_process(
                        instance=instance, asset_selection=keys, run_config=config
                    )
                    seconds, run = timed(
                        lambda config=config, instance=instance: step_job.execute_in_process(
                            instance=instance, asset_selection=keys, run_config=config
                        )
                    )
                    assert run.success
                    results[label].append(seconds)
                    if enabled:
                        validating.append(validation_seconds(instance, run.run_id))

        def best(label: str) -> float:
            return min(results[label])

        print(f"{opts.models} generated models, best of {opts.repeat} (second build of each)")
        for label in results:
            print(
                f"  {label:<22} {best(label):7.1f} s   {best(label) / best('dbt build'):5.2f}x "
                "dbt build"
            )
        check_time = min(validating)
        with_checks, without = best("rescue"), best("rescue, checks off")
        print(
            f"  validation inside the step: {check_time:.2f} s = "
            f"{check_time / with_checks:.1%} of the rescue's wall time (goal <= 10%)"
        )
        print(
            f"  rescue vs checks off: {(with_checks - without) / with_checks:+.1%} (noise included)"
        )
        print(
            f"  rescue vs plain @dbt_assets: {with_checks / best('@dbt_assets'):.2f}x "
            "(checks + check events + rescue config)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
