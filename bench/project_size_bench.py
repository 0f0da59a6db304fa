"""Does a rescue of a fixed size cost more in a larger project? Measured side by side.

Generated layered DuckDB projects of 1,000 and 3,000 models (bench/layered_project.py, the
first 200 models tagged `n200`); in each, the same 200 models are built three ways on the same
warehouse file, alternating:

1. plain `dbt build --select tag:n200` (the baseline), and the same with dbt's
   `--use-fast-test-edges`, which the product's builds ask for (dbt's default adds test edges
   with a breadth-first search per node: quadratic on deep graphs);
2. a plain `@dbt_assets` job over the whole project, the 200 models selected (what dagster-dbt
   costs by itself);
3. the product's `rescue_step_job`, as rescue_sensor launches a stage: the 200 models, the
   rescue tag, validation (row count and max date) run, not planned.

It prints each one's wall time and what Dagster adds per model over plain dbt. #27's goal:
the product's overhead over plain `@dbt_assets` not growing with the project's size (and
<= 20 ms per model).

Run: .venv/bin/python bench/project_size_bench.py [--sizes 1000 3000] [--repeat 2]
[--rescue 200] (`--rescue 2000 --sizes 3000`: #27's 2,000 models in the 3,000-model project)
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
from layered_project import write_layered_project  # bench/ is the script's folder

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(root: Path, models: int, repeat: int, rescue: int) -> dict[str, float]:
    from dagster_dbt import DbtCliResource, dbt_assets

    from rescue_defs.definitions import build_definitions
    from rescue_defs.project import load_dbt_project

    project_dir = write_layered_project(
        root / f"p{models}", models, tag_sizes=(rescue,), date_meta=True
    )
    os.environ["RESCUE_DUCKDB_PATH"] = str(root / f"p{models}.duckdb")
    project = load_dbt_project(str(project_dir))
    started = time.perf_counter()
    project.preparer.prepare(project)
    print(f"{models} models: parsed in {time.perf_counter() - started:.0f} s", flush=True)

    @dbt_assets(manifest=project.manifest_path, project=project)
    def plain_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
        yield from dbt.cli(["build"], context=context).stream()

    plain_job = dg.Definitions(
        assets=[plain_models],
        resources={"dbt": DbtCliResource(project_dir=project)},
        executor=dg.in_process_executor,
    ).resolve_implicit_global_asset_job_def()
    defs = build_definitions(project)
    graph = defs.resolve_asset_graph()
    wanted = {f"m_{i // 20:02d}_{i % 20:02d}" for i in range(rescue)}
    keys = {k for k in graph.materializable_asset_keys if k.path[-1] in wanted}
    assert len(keys) == rescue, len(keys)
    stage_job = defs.resolve_job_def("rescue_step_job").get_subset(
        asset_selection=keys, asset_check_selection=set()
    )
    dbt = [str(Path(sys.executable).parent / "dbt"), "build", "--select", f"tag:n{rescue}"]
    dbt += ["--project-dir", str(project_dir), "--profiles-dir", str(project_dir)]
    dbt += ["--target-path", str(root / "cli-target")]
    subprocess.run(dbt, capture_output=True, check=True)  # the tables exist, as in a rescue

    def plain(instance):
        assert plain_job.execute_in_process(instance=instance, asset_selection=list(keys)).success

    def product(instance):
        assert stage_job.execute_in_process(instance=instance, tags={"rescue/id": "bench"}).success

    fast = [*dbt, "--use-fast-test-edges"]
    times: dict[str, list[float]] = {
        "plain dbt": [],
        "plain dbt, fast test edges": [],
        "@dbt_assets": [],
        "rescue stage": [],
    }
    for _ in range(repeat):
        for label, command in (("plain dbt", dbt), ("plain dbt, fast test edges", fast)):
            times[label].append(
                timed(lambda c=command: subprocess.run(c, capture_output=True, check=True))
            )
        for label, run in (("@dbt_assets", plain), ("rescue stage", product)):
            with dg.instance_for_test() as instance:
                times[label].append(timed(lambda run=run, instance=instance: run(instance)))
    return {label: statistics.median(t) for label, t in times.items()}


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000])
    args.add_argument("--repeat", type=int, default=2)
    args.add_argument("--rescue", type=int, default=200, help="models rebuilt (tag nN)")
    opts = args.parse_args()
    os.environ["RESCUE_TODAY"] = "2026-01-30"
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    root = Path(tempfile.mkdtemp(prefix="size-bench-"))
    rows = []
    try:
        for models in opts.sizes:
            rows.append((models, measure(root, models, opts.repeat, opts.rescue)))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n{opts.rescue} models rebuilt, medians of {opts.repeat}:")
    print(
        "| project | plain dbt | plain dbt, fast test edges | @dbt_assets | rescue stage "
        "| ms a model over dbt: @dbt_assets / rescue (over fast) | rescue / @dbt_assets |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for models, t in rows:
        base, fast = t["plain dbt"], t["plain dbt, fast test edges"]
        plain, ours = t["@dbt_assets"], t["rescue stage"]
        over = ((plain - base) / opts.rescue * 1000, (ours - fast) / opts.rescue * 1000)
        print(
            f"| {models} | {base:.1f} s | {fast:.1f} s | {plain:.1f} s | {ours:.1f} s "
            f"| {over[0]:.0f} / {over[1]:.0f} | {ours / plain:.2f}x |"
        )


if __name__ == "__main__":
    main()
