"""What validation costs a 200-model rescue, measured side by side in one run.

A generated 200-model DuckDB project (10 layers of 20 table models, each with a date column)
is built five ways on fresh warehouse files:

1. plain `dbt build` (the baseline a data engineer types by hand);
2. a plain `@dbt_assets` job (dagster-dbt's own overhead, no custom checks);
3. a rescue run as rescue_sensor launches it: `rescue_step_job` over all 200 models, the
   validation checks not planned but run (one query per model after dbt exits, one stored
   evaluation event per check);
4. a UI-style materialization of the same 200 models with every check planned (one more
   stored event per check);
5. the rescue run with validation turned off (`validation.enabled = false`: no queries, the
   checks still report, so 3 - 5 is the query cost alone).

It prints wall times, the time the step itself spent validating, and ratios. The goal:
validation at most 10% of the rescue's wall time.

Run: .venv/bin/python bench/check_overhead_bench.py [--models 200] [--repeat 1]
"""

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
from layered_project import write_layered_project  # bench/ is the script's folder

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def write_project(root: Path, models: int) -> Path:
    return write_layered_project(root, models, name="bench", date_meta=True)


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


@contextlib.contextmanager
def dagster_instance(storage: str):
    """A throwaway Dagster instance on SQLite (the demo's storage) or on the local Postgres
    (production's), each in its own database."""
    if storage == "sqlite":
        with dg.instance_for_test() as instance:
            yield instance
        return
    import psycopg2

    # Postgres storage writes planned events in one batch when this is set (SQLite cannot)
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "1000")
    name = f"rescue_bench_{os.getpid()}"
    admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'drop database if exists "{name}"')
        cur.execute(f'create database "{name}"')
    db = {
        "username": "postgres",
        "password": "",
        "hostname": "127.0.0.1",
        "db_name": name,
        "scheme": "postgresql+psycopg2",  # SQLAlchemy 2.1 defaults to psycopg 3
    }
    try:
        with dg.instance_for_test(
            overrides={"storage": {"postgres": {"postgres_db": db}}}
        ) as instance:
            yield instance
    finally:
        with admin.cursor() as cur:
            cur.execute(f'drop database if exists "{name}" with (force)')
        admin.close()


def postgres_available() -> bool:
    try:
        import psycopg2

        psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres").close()
        return True
    except Exception:
        return False


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
    args.add_argument(
        "--storage",
        nargs="*",
        choices=["sqlite", "postgres"],
        default=None,
        help="Dagster storages to measure (default: sqlite, and postgres when reachable)",
    )
    opts = args.parse_args()
    if opts.storage is None:
        opts.storage = ["sqlite"] + (["postgres"] if postgres_available() else [])

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
        keys = list(defs.resolve_asset_graph().materializable_asset_keys)
        build = [
            dbt_bin,
            "build",
            "--project-dir",
            str(project_dir),
            "--profiles-dir",
            str(project_dir),
        ]
        cli_times = []
        for _ in range(opts.repeat):
            fresh_warehouse(root, "cli")
            subprocess.run(build, capture_output=True, check=True)  # first build: tables exist
            seconds, _ = timed(lambda: subprocess.run(build, capture_output=True, check=True))
            cli_times.append(seconds)
        baseline = min(cli_times)
        print(f"{opts.models} generated models, best of {opts.repeat}, second build of each")
        print(f"  plain dbt build          {baseline:7.1f} s")

        # how rescue_sensor launches a stage: the models, their dbt tests (none here) as the
        # only planned checks, the rescue tag (validation runs without being planned)
        sensor_job = step_job.get_subset(asset_selection=set(keys), asset_check_selection=set())
        variants = {
            # label: (job, asset selection, tags, validation on)
            "rescue": (sensor_job, None, {"rescue/id": "bench"}, True),
            "materialize, planned": (step_job, keys, {}, True),
            "rescue, checks off": (sensor_job, None, {"rescue/id": "bench"}, False),
        }
        for storage in opts.storage:
            results: dict[str, list[float]] = {"@dbt_assets": [], **{k: [] for k in variants}}
            validating: list[float] = []
            for _ in range(opts.repeat):
                with dagster_instance(storage) as instance:
                    fresh_warehouse(root, "plain")
                    plain_job.execute_in_process(instance=instance)
                    seconds, run = timed(
                        lambda instance=instance: plain_job.execute_in_process(instance=instance)
                    )
                    assert run.success
                    results["@dbt_assets"].append(seconds)
                for label, (job, selection, tags, enabled) in variants.items():
                    with dagster_instance(storage) as instance:
                        fresh_warehouse(root, "rescue")
                        config = {"resources": {"validation": {"config": {"enabled": enabled}}}}

                        def rescue(
                            instance=instance, config=config, job=job, sel=selection, tags=tags
                        ):
                            return job.execute_in_process(
                                instance=instance,
                                asset_selection=sel,
                                run_config=config,
                                tags=tags,
                            )

                        rescue()
                        seconds, run = timed(rescue)
                        assert run.success
                        results[label].append(seconds)
                        if label == "rescue":
                            validating.append(validation_seconds(instance, run.run_id))
            best = {label: min(times) for label, times in results.items()}
            print(f"  Dagster storage: {storage}")
            for label, seconds in best.items():
                print(f"    {label:<22} {seconds:7.1f} s   {seconds / baseline:5.2f}x dbt build")
            with_checks, without = best["rescue"], best["@dbt_assets"]
            check_time = min(validating)
            print(
                f"    queries inside the step: {check_time:.2f} s = "
                f"{check_time / with_checks:.1%} of the rescue's wall time"
            )
            print(
                f"    checks in all (rescue - plain @dbt_assets; queries, check events, "
                f"config): {with_checks - without:.1f} s = "
                f"{(with_checks - without) / with_checks:.1%} of the rescue (goal <= 10%)"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
