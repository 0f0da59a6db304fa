"""Validation beside dbt on a PostgreSQL warehouse: the product's dbt step with each model
validated as dbt reports it built (this checkout) against the same step validating after dbt
exits (the code before, a checkout given with `--before`), and plain `dbt build` of the same
models, alternating in one invocation, each in a fresh Python process (medians).

The generated layered project (bench/layered_project.py, with the max-date rule) on a database
of its own on the local server, built whole once; then each variant rebuilds every model
("Materialize all" in process: the dbt step with its dbt tests and the row-count and max-date
checks), one Dagster home per variant kept across its runs (SQLite storage). Printed: the
step's wall time, and from the event log the tail after dbt's last model (what validation
adds once dbt has built the last one).

Run: .venv/bin/python bench/alongside_bench.py --before /path/to/checkout [--models 200]
[--repeat 3] (the checkout: e.g. `git worktree add /tmp/before edd72a3`; no assertions)
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from launch_bench import postgres_database  # bench/ is the script's folder
from layered_project import write_layered_project

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"

MATERIALIZE = """
import json, sys, time
import dagster as dg
from rescue_defs.definitions import build_definitions
from rescue_defs.project import load_dbt_project
began = time.perf_counter()
defs = build_definitions(load_dbt_project(sys.argv[1]))
job = defs.resolve_implicit_global_asset_job_def()
with dg.DagsterInstance.get() as instance:
    result = job.execute_in_process(
        instance=instance,
        raise_on_error=False,
        asset_selection=list(defs.resolve_asset_graph().materializable_asset_keys),
    )
    took = time.perf_counter() - began
    built, checks, end = [], [], None
    for event in instance.all_logs(result.run_id):
        kind = event.dagster_event and event.dagster_event.event_type
        if kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            built.append(event.timestamp)
        elif kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            checks.append(event.timestamp)
        elif kind == dg.DagsterEventType.STEP_SUCCESS or kind == dg.DagsterEventType.STEP_FAILURE:
            end = event.timestamp
    print(json.dumps({"seconds": took, "tail": end - max(built), "built": len(built),
                      "checks": len(checks), "ok": result.success}))
"""


def dbt(project: Path, *args: str) -> float:
    began = time.perf_counter()
    subprocess.run(
        [str(BIN / "dbt"), *args, "--quiet", "--project-dir", str(project)]
        + ["--profiles-dir", str(project)],
        cwd=project,
        check=True,
    )
    return time.perf_counter() - began


def materialize(project: Path, home: Path, code: Path) -> dict:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(code),
        "DAGSTER_HOME": str(home),
        "RESCUE_PEAK_HOURS": "none",
    }
    out = subprocess.run(
        [str(BIN / "python"), "-c", MATERIALIZE, str(project)],
        env=env,
        cwd=code,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"{code}: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", required=True, help="a checkout of the code before")
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    before = Path(opts.before).resolve()
    if not (before / "rescue_defs").is_dir():
        raise SystemExit(f"--before: no rescue_defs in {before}")
    work = Path(tempfile.mkdtemp(prefix="alongside-bench-"))
    name = f"rescue_alongside_bench_{uuid.uuid4().hex[:8]}"
    postgres_database(name)
    try:
        project = write_layered_project(
            work, opts.models, name="bench", date_meta=True, postgres_database=name
        )
        first = dbt(project, "build")
        print(f"{opts.models} models on PostgreSQL ({name}); first build {first:.1f} s", flush=True)
        # this checkout validates beside dbt stages of up to 500 models (MOST_MODELS)
        variants = {"this checkout": REPO, "before (--before)": before}
        homes = {label: work / f"home-{i}" for i, label in enumerate(variants)}
        for home in homes.values():
            home.mkdir()
            shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        found: dict[str, list] = {label: [] for label in (*variants, "plain dbt build")}
        for r in range(opts.repeat):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for label in [*order, "plain dbt build"]:
                if label == "plain dbt build":
                    found[label].append({"seconds": dbt(project, "build"), "tail": 0.0})
                else:
                    found[label].append(materialize(project, homes[label], variants[label]))
                row = found[label][-1]
                print(f"  {label}: {row['seconds']:.1f} s (tail {row['tail']:.1f} s)", flush=True)
        plain = statistics.median(x["seconds"] for x in found["plain dbt build"])
        print("\n| variant | wall (median) | / plain dbt | tail after dbt's last model |")
        print("| --- | --- | --- | --- |")
        for label, rows in found.items():
            wall = statistics.median(x["seconds"] for x in rows)
            tail = statistics.median(x["tail"] for x in rows)
            print(f"| {label} | {wall:.1f} s | {wall / plain:.2f}x | {tail:.1f} s |")
    finally:
        postgres_database(name, drop_only=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
