"""Randomized incident soak: many seeded schedules (tests/incidents.py), each on its own
Dagster home and warehouse; after every rescue every model must equal a from-scratch build and
every claim of the report must hold. Prints one line per seed and a summary.

    .venv/bin/python bench/incident_soak.py --seeds 0-19 [--days 10]
"""

import argparse
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0-9", help="e.g. 0-19 or 3,7,11")
    parser.add_argument("--days", type=int, default=10)
    args = parser.parse_args()
    if "-" in args.seeds:
        first, last = (int(x) for x in args.seeds.split("-"))
        seeds = list(range(first, last + 1))
    else:
        seeds = [int(x) for x in args.seeds.split(",")]
    # dbt and dagster-dbt's preparer find this environment's dbt without .venv/bin on PATH
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    failures = 0
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            warehouse = root / "warehouse" / "warehouse.duckdb"
            warehouse.parent.mkdir()
            home = root / "home"
            home.mkdir()
            (home / "dagster.yaml").write_text(
                (Path(__file__).resolve().parent.parent / "dagster.yaml").read_text()
                # runs execute in this process, some killed on purpose: Dagster's stdout
                # capture (a `tail -F` per step) outlives an abandoned execution until the
                # process exits, an hour of leaked processes over a soak; nothing reads them
                + "\ncompute_logs:\n  module: dagster._core.storage.noop_compute_log_manager"
                "\n  class: NoOpComputeLogManager\n"
            )
            os.environ.update(RESCUE_DUCKDB_PATH=str(warehouse), DAGSTER_HOME=str(home))
            from rescue_defs.definitions import build_definitions
            from rescue_defs.project import BUNDLED_PROJECT_DIR, load_dbt_project
            from tests.incidents import Incidents, schedule

            project = load_dbt_project(str(BUNDLED_PROJECT_DIR))
            project.preparer.prepare(project)
            days = schedule(seed, args.days)
            started = time.perf_counter()
            try:
                incidents = Incidents(build_definitions(project), project, warehouse, root)
                ended = incidents.live(days)
                verdict = (
                    f"ok: {sum(len(e) for e in ended)} rescue(s) "
                    f"({incidents.resumed_after_kill} killed mid-run and resumed), all equal"
                )
            except AssertionError as e:
                failures += 1
                verdict = f"FAILED: {str(e)[:300]}"
            except Exception:
                failures += 1
                verdict = "ERROR: " + traceback.format_exc().splitlines()[-1][:300]
            outages = sum(1 for d in days if d.down)
            print(
                f"seed {seed:3d}: {len(days)} days ({outages} with a source down, "
                f"{sum(1 for d in days if d.late_returns)} with late returns) "
                f"{time.perf_counter() - started:6.1f} s  {verdict}",
                flush=True,
            )
    print(f"{len(seeds) - failures}/{len(seeds)} schedules held")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
