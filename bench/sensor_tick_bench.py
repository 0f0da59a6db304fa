"""B5: each sensor's tick at scale (issue #13), against a do-nothing sensor ticked the same way
over the same definitions and instance (the cost of a tick itself), in one run.

A generated project (tests/generated_project.py, default 3000 models, its sources with dbt
freshness) is parsed once; the three sensors are ticked with their saved cursors on a SQLite
Dagster instance in a temp dir: quiet (nothing to do), then with one active rescue of ~100
models registered (rescue_sensor's usual work: one look per active rescue).

Run: .venv/bin/python bench/sensor_tick_bench.py [--models 3000] [--ticks 15]
(prints medians and ratios; no assertions)
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=3000)
    parser.add_argument("--ticks", type=int, default=15)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sensor-bench-"))
    os.environ["RESCUE_DUCKDB_PATH"] = str(work / "warehouse" / "warehouse.duckdb")
    os.environ["RESCUE_PEAK_HOURS"] = "none"
    os.environ["PATH"] = f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}"

    import dagster as dg

    from rescue_defs import rescues
    from rescue_defs.assets.dbt import load_manifest, model_asset_keys
    from rescue_defs.definitions import build_definitions
    from rescue_defs.planning.plan import Planner, PlanRequest
    from rescue_defs.project import load_dbt_project
    from tests.generated_project import write_project

    folder = write_project(work, models=args.models)
    start = time.perf_counter()
    project = load_dbt_project(str(folder))
    print(f"dbt parse of {args.models} models: {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    defs = build_definitions(project)
    print(f"definitions built: {time.perf_counter() - start:.1f} s")

    @dg.sensor(name="noop_sensor", minimum_interval_seconds=30)
    def noop_sensor(context: dg.SensorEvaluationContext):
        return dg.SkipReason("nothing")

    names = ["rescue_sensor", "source_outage_sensor", "merge_sensor"]

    def ticks(instance, sensor, cursor) -> tuple[float, str | None]:
        times = []
        for _ in range(args.ticks):
            with dg.build_sensor_context(
                instance=instance, definitions=defs, cursor=cursor
            ) as context:
                began = time.perf_counter()
                result = sensor.evaluate_tick(context)
                times.append(time.perf_counter() - began)
            cursor = result.cursor or cursor
        return statistics.median(times), cursor

    (work / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(work / "home")) as instance:
        baseline, _ = ticks(instance, noop_sensor, None)
        rows = []
        cursors: dict[str, str | None] = {}
        for name in names:
            # the first tick does one-off work (a first measurement, the first deployment)
            _, cursors[name] = ticks(instance, defs.resolve_sensor_def(name), None)
            median, cursors[name] = ticks(instance, defs.resolve_sensor_def(name), cursors[name])
            rows.append((f"{name} (quiet)", median))
        manifest = load_manifest(str(project.manifest_path), str(project.project_dir))
        keys = model_asset_keys(manifest)
        import networkx as nx

        # the staging model whose downstream is nearest to 100 models: a typical outage rescue
        target = min(
            (m for m in manifest.models if manifest.name(m).startswith("stg_")),
            key=lambda m: abs(len(nx.descendants(manifest.model_graph, m)) - 100),
        )
        plan = Planner(manifest).plan(PlanRequest(f"{manifest.name(target)}+", reason="bench"))
        rescues.register(instance, plan, keys)
        median, _ = ticks(instance, defs.resolve_sensor_def("rescue_sensor"), None)
        rows.append((f"rescue_sensor (1 active rescue, {len(plan.models)} models)", median))

    print(
        f"\nB5 sensor ticks at {args.models} models, median of {args.ticks} "
        f"({os.cpu_count()} cores)"
    )
    print(f"{'tick':<58} {'seconds':>8} {'vs 2 s':>7}")
    print(f"{'no-op sensor (a tick itself)':<58} {baseline:>8.3f}")
    for label, seconds in rows:
        print(f"{label:<58} {seconds:>8.3f} {seconds / 2:>6.0%}")


if __name__ == "__main__":
    main()
