"""Planning speed against dbt's own selection, measured side by side in one run.

1. GitLab's 2,332-model manifest: a full plan (selection, stages, groups, cost, advice,
   checklist) of `+<mid-graph model>+`, warm, against dbt's selector resolving the same
   selection in-process (dagster-dbt's `select_unique_ids`, the fastest way dbt offers).
2. The same plan end to end, as an on-call engineer types it: `rescue plan --manifest` in a
   fresh process (goal <= 2 s), against the same command run as an ordinary Python program
   (`sys.exit(main())`: the collector on, the interpreter's teardown) and against the floor any
   tool built on dbt's selector pays (a fresh Python importing it).
3. The bundled project: the same plan against `dbt ls` on the same selection.

Run: .venv/bin/python bench/plan_bench.py   (prints times and ratios; no assertions)
"""

import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import networkx as nx
from dagster_dbt.utils import select_unique_ids

from rescue_defs.planning.manifest import DbtManifest
from rescue_defs.planning.plan import Planner, PlanRequest
from rescue_defs.project import BUNDLED_PROJECT_DIR

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "manifests"


def best_of(fn, n: int = 5) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gitlab() -> None:
    with gzip.open(SHARED / "gitlab-analytics-2332-models.manifest.json.gz", "rt") as f:
        raw = json.load(f)
    manifest = DbtManifest(raw)
    graph = manifest.model_graph
    # the model with the largest lineage both ways
    target = max(
        sorted(graph),
        key=lambda m: min(len(nx.ancestors(graph, m)), len(nx.descendants(graph, m))),
    )
    select = f"+{manifest.name(target)}+"
    planner = Planner(manifest)
    plan = planner.plan(PlanRequest(select))  # warm-up: builds the selector and graphs
    ours = best_of(lambda: planner.plan(PlanRequest(select)))
    select_unique_ids(select, "", "", None, raw)
    dbt = best_of(lambda: select_unique_ids(select, "", "", None, raw))
    print(f"gitlab 2332 models, plan {select}: {len(plan.models)} models, {len(plan.steps)} runs")
    print(f"  plan (warm)                   {ours * 1000:8.0f} ms")
    print(f"  dbt selector only (in-proc)   {dbt * 1000:8.0f} ms")
    print(f"  ratio plan / dbt selection    {ours / dbt:8.2f}x   (goal: plan < 500 ms)")


def gitlab_end_to_end() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "manifest.json"
        with gzip.open(SHARED / "gitlab-analytics-2332-models.manifest.json.gz", "rb") as f:
            path.write_bytes(f.read())
        plan = ["plan", "--manifest", str(path), "--select", "+dim_subscription+"]
        python = sys.executable
        commands = {
            "rescue plan (the console script)": [str(Path(python).parent / "rescue"), *plan],
            "the same as sys.exit(main())": [
                python,
                "-c",
                "import sys; from rescue_defs.cli import main; sys.exit(main())",
                *plan,
            ],
            "python importing dbt's selector": [python, "-c", "import dbt.graph.selector"],
        }
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(3):  # alternating, so that the machine's noise falls on each alike
            for name, command in commands.items():
                start = time.perf_counter()
                subprocess.run(command, check=True, capture_output=True, env=env)
                times[name].append(time.perf_counter() - start)
        medians = {name: statistics.median(t) for name, t in times.items()}
        ours = medians["rescue plan (the console script)"]
        print("gitlab 2332 models, `rescue plan --manifest ... +dim_subscription+` end to end:")
        for name, seconds in medians.items():
            print(f"  {name:<35} {seconds:6.2f} s  ({ours / seconds:.2f}x)")
        print("  goal: <= 2 s")


def bundled() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "RESCUE_DUCKDB_PATH": str(Path(tmp) / "bench.duckdb")}
        dbt = str(Path(sys.executable).parent / "dbt")
        project = [
            "--project-dir",
            str(BUNDLED_PROJECT_DIR),
            "--profiles-dir",
            str(BUNDLED_PROJECT_DIR),
        ]
        subprocess.run([dbt, "parse", "--quiet", *project], env=env, check=True)
        select = "+int_orders_enriched+"
        ls = best_of(
            lambda: subprocess.run(
                [dbt, "ls", "--quiet", "--resource-type", "model", "--select", select, *project],
                env=env,
                check=True,
                capture_output=True,
            ),
            n=3,
        )
        manifest = DbtManifest.load(BUNDLED_PROJECT_DIR / "target" / "manifest.json")
        planner = Planner(manifest)
        planner.plan(PlanRequest(select))
        ours = best_of(lambda: planner.plan(PlanRequest(select)))
        print(f"bundled project, {select}:")
        print(f"  plan (warm)                   {ours * 1000:8.1f} ms")
        print(f"  dbt ls                        {ls * 1000:8.0f} ms")
        print(f"  ratio dbt ls / plan           {ls / ours:8.0f}x faster")
    shutil.rmtree(BUNDLED_PROJECT_DIR / "logs", ignore_errors=True)


if __name__ == "__main__":
    gitlab()
    gitlab_end_to_end()
    bundled()
