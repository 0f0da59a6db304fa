"""B1: what the on-call engineer waits for. `rescue launch --wait`, from the command to the
rescue's end (report written), under a real `dagster dev` (webserver, daemon, sensors, run
queue, a run worker per run), against plain `dbt build --select` of the same models on a copy
of the warehouse, alternating, medians.

The project is generated: layers of 20 models, every other layer incremental (unique_key, an
`is_incremental()` filter), the others tables; tags `n1`, `n10`, `n50`, `n200` mark the first
1/10/50/200 models in build order (each set closed upstream), so `--select tag:n10` is a
10-model rescue with plain dbt's exact counterpart. The warehouse is first built by a
200-model rescue (history for the estimates, as a pipeline run through Dagster leaves).

For each size: `--repeat` pairs (rescue, then plain dbt; the order alternates), with and
without `--full-refresh`, on the storages asked for (SQLite, the demo's; Postgres when
reachable). Each rescue's plan estimate is printed beside its measured time.

With `--bundled SELECTION ...` the project is the bundled shop instead: its warehouse is
first filled by one run of the daily pipeline (raw loads, every model, every check) executed
on the same Dagster home, as a night of the demo leaves it (RESCUE_TODAY=2026-01-20), and each
selection is a rescue of its own against plain `dbt build --select` of the same selection.

With `--via ui` each rescue is started as the UI's launchpad starts it instead: `rescue_job`
submitted through the webserver (GraphQL `launchRun`, what "Launch Run" sends), timed from the
submission to the rescue's end as its record says (the report written). With `--via sensor`
only `dagster-daemon run` serves the home (no webserver; the CLI has no UI address): `rescue
launch --wait` registers, rescue_sensor's tick launches each run.

Run: .venv/bin/python bench/launch_bench.py [--sizes 1 10 50 200] [--repeat 3]
     [--storage sqlite postgres] [--full-refresh both|no|only]
     [--bundled "+int_orders_enriched+" "stg_orders+"] [--via cli|ui|sensor]
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from layered_project import write_layered_project  # bench/ is the script's folder

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
sys.path.insert(0, str(REPO))  # --via ui reads the rescue's record


def write_project(root: Path, models: int) -> Path:
    """Tags n1, n10, n50, n200 (and n2000 in a project that large) select the first models."""
    sizes = tuple(n for n in (1, 10, 50, 200, 2000) if n <= max(models, 200))
    return write_layered_project(
        root, models, name="launch_bench", incremental=True, tag_sizes=sizes
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dagster_yaml(storage: str, database: str) -> str:
    text = (REPO / "dagster.yaml").read_text()
    if storage == "postgres":
        text += (
            "\nstorage:\n  postgres:\n    postgres_db:\n      username: postgres\n"
            "      password: ''\n      hostname: 127.0.0.1\n"
            f"      db_name: {database}\n      port: 5432\n"
            # SQLAlchemy 2.1 defaults to psycopg 3; dagster-postgres ships psycopg2
            "      scheme: postgresql+psycopg2\n"
        )
    return text


def postgres_available() -> bool:
    try:
        import psycopg2

        psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres").close()
        return True
    except Exception:
        return False


def postgres_database(name: str, drop_only: bool = False) -> None:
    import psycopg2

    admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'drop database if exists "{name}" with (force)')
        if not drop_only:
            cur.execute(f'create database "{name}"')
    admin.close()


class Dagster:
    """`dagster dev` on the generated project, in its own Dagster home."""

    def __init__(
        self,
        work: Path,
        env: dict,
        storage: str,
        daemon_only: bool = False,
        location: tuple[str, ...] = (),
        name: str = "dagster-dev",
    ):
        """`location`: `dagster dev` arguments naming another code location (`-f file.py`);
        default: this repository's (pyproject.toml)."""
        self.env, self.port = env, free_port()
        self.log = work / f"{name}-{storage}.log"
        if daemon_only:
            # a deployment whose CLI cannot reach the UI: no address, rescue_sensor launches
            env.pop("RESCUE_UI_URL", None)
            command = [str(BIN / "dagster-daemon"), "run"]
        else:
            # where `rescue launch` and rescue_job's op submit runs (as `./dev demo` tells
            # them); without it, rescue_sensor's tick launches
            env["RESCUE_UI_URL"] = f"http://127.0.0.1:{self.port}"
            command = [str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(self.port)]
            command += list(location)
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                command,
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if daemon_only:
            self._wait_for_sensor_ticks()
            return
        from dagster_graphql import DagsterGraphQLClient

        client = DagsterGraphQLClient("127.0.0.1", port_number=self.port)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if client._execute("{ assetNodes { id } }")["assetNodes"]:
                    break
            except Exception:
                pass
            time.sleep(1)
        else:
            raise SystemExit(f"dagster dev did not load: {self.log.read_text()[-3000:]}")
        time.sleep(10)  # the daemon's first sensor ticks

    def _wait_for_sensor_ticks(self) -> None:
        """The daemon has loaded the code location when its sensors tick."""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"dagster-daemon ended: {self.log.read_text()[-3000:]}")
            if "rescue_sensor" in self.log.read_text():
                time.sleep(5)
                return
            time.sleep(1)
        raise SystemExit(f"dagster-daemon did not tick: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass


def launch(
    env: dict, select: str, full_refresh: bool, layered: bool = False
) -> tuple[float, str, float]:
    """Seconds from the command to its exit (the rescue ended), its id, and the wall-clock
    time the command started (for the timeline). `layered`: upstream, target, downstream
    as stages, whatever the lineage's depth."""
    args = [str(BIN / "rescue"), "launch", "--select", select, "--wait", "--now"]
    args += ["--layered"] if layered else []
    args += ["--full-refresh"] if full_refresh else ["--no-full-refresh"]
    wall, began = time.time(), time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    found = re.search(r"^rescue (\S+): active", done.stdout, re.M)
    if done.returncode != 0 or not found:
        raise SystemExit(f"rescue launch failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds, found.group(1), wall


RESCUE_OF_RUN = """
query ($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value } } } }
"""


def launch_from_ui(env: dict, select: str, full_refresh: bool, port: int):
    """`rescue_job` through the webserver, as the launchpad submits it; seconds from the
    submission to the rescue's end in its record, its id, the wall-clock start."""
    import dagster as dg
    from dagster_graphql import DagsterGraphQLClient

    from rescue_defs import rescues

    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    config = {"select": select, "full_refresh": full_refresh, "now": True, "reason": "bench"}
    wall = time.time()
    run_id = client.submit_job_execution(
        "rescue_job", run_config={"ops": {"start_rescue": {"config": config}}}
    )
    deadline = time.monotonic() + 900
    rescue_id = None
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        while time.monotonic() < deadline:
            if rescue_id is None:
                run = client._execute(RESCUE_OF_RUN, {"id": run_id})["runOrError"]
                tags = {t["key"]: t["value"] for t in run.get("tags", [])}
                rescue_id = tags.get(rescues.TAG_ID)
                if rescue_id is None and run.get("status") in ("FAILURE", "CANCELED"):
                    raise SystemExit(f"rescue_job run {run_id} {run['status']}")
            if rescue_id is not None:
                try:
                    record = rescues.load(instance, rescue_id)
                except rescues.RescueError:  # the run tags itself before it registers
                    record = {"status": None}
                if record["status"] in rescues.ENDED:
                    if record["status"] != rescues.SUCCEEDED:
                        raise SystemExit(f"rescue {rescue_id}: {record['message']}")
                    ended = datetime.fromisoformat(record["ended_at"]).timestamp()
                    return ended - wall, rescue_id, wall
            time.sleep(0.5)
    raise SystemExit(f"rescue_job run {run_id}: no rescue ended in 900 s")


def plain_dbt(env: dict, project: Path, select: str, full_refresh: bool, copy: Path) -> float:
    shutil.copy(env["RESCUE_DUCKDB_PATH"], copy)
    args = [str(BIN / "dbt"), "build", "--quiet", "--select", select]
    args += ["--project-dir", str(project), "--profiles-dir", str(project)]
    args += ["--full-refresh"] if full_refresh else []
    began = time.perf_counter()
    subprocess.run(args, env={**env, "RESCUE_DUCKDB_PATH": str(copy)}, check=True)
    return time.perf_counter() - began


TIMELINE = """
import json, sys
from datetime import datetime
import dagster as dg
from rescue_defs import rescues
with dg.DagsterInstance.get() as i:
    r = rescues.load(i, sys.argv[1])
    runs = [
        i.get_run_record_by_id(x.run_id)
        for x in rescues.step_runs(i, r["id"])
        if rescues.TAG_STEP in x.tags
    ]
    at = lambda text: datetime.fromisoformat(text).timestamp()
    marks = {
        "registered": at(r["created_at"]),
        "requested": min(x.create_timestamp.timestamp() for x in runs),
        "started": min(x.start_time for x in runs),
        "run ended": max(x.end_time for x in runs),
        "rescue ended": at(r["ended_at"]),
    }
    shape = f"{len(r['steps'])}/{len(runs)}"
    print(json.dumps([r.get("expected_seconds", r["plan"]["expected_seconds"]), shape, marks]))
"""
PHASES = ("registered", "requested", "started", "run ended", "rescue ended")


def expected_and_runs(env: dict, rescue_id: str) -> tuple[float, str, dict]:
    """The plan's estimate, steps/runs, and when the rescue passed each phase."""
    code = TIMELINE
    out = subprocess.run(
        [str(BIN / "python"), "-c", code, rescue_id],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    expected, runs, marks = json.loads(out.stdout.strip().splitlines()[-1])
    return float(expected), str(runs), marks


PIPELINE = """
import dagster as dg
from rescue_defs.demo.raw import raw_sources
from rescue_defs.definitions import build_definitions
from rescue_defs.demo.pipeline import DAILY_PIPELINE_JOB
from rescue_defs.project import dbt_project
job = build_definitions(dbt_project()).resolve_job_def(DAILY_PIPELINE_JOB)
with dg.DagsterInstance.get() as instance:
    config = {"ops": {raw_sources.op.name: {"config": {"through_date": ""}}}}
    assert job.execute_in_process(instance=instance, run_config=config).success
"""
BUNDLED_TODAY = "2026-01-20"


def measure(work: Path, project: Path, storage: str, opts) -> list[dict]:
    home = work / f"home-{storage}"
    home.mkdir()
    database = f"rescue_launch_bench_{os.getpid()}"
    if storage == "postgres":
        postgres_database(database)
    (home / "dagster.yaml").write_text(dagster_yaml(storage, database))
    warehouse = work / f"warehouse-{storage}.duckdb"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DAGSTER_HOME": str(home),
        "RESCUE_DUCKDB_PATH": str(warehouse),
        "RESCUE_PEAK_HOURS": "none",
    }
    if opts.bundled:
        env["RESCUE_TODAY"] = BUNDLED_TODAY
        env.pop("RESCUE_DBT_PROJECT_DIR", None)
        # a night of the daily pipeline: raw loaded, every model built and checked, history
        subprocess.run([str(BIN / "python"), "-c", PIPELINE], env=env, cwd=REPO, check=True)
        selections = [(select, select) for select in opts.bundled]
    else:
        env["RESCUE_DBT_PROJECT_DIR"] = str(project)
        selections = [(size, f"tag:n{size}") for size in opts.sizes]
    dagster = Dagster(work, env, storage, daemon_only=opts.via == "sensor")
    rows = []
    try:
        if not opts.bundled:
            # the first build, through the product: tables exist, the instance has history
            launch(env, f"tag:n{opts.whole}", True)
        modes = {"both": (False, True), "no": (False,), "only": (True,)}[opts.full_refresh]
        for size, select in selections:
            for full_refresh in modes:
                product, plain, estimates, runs, phases = [], [], [], "", []
                for r in range(opts.repeat):
                    copy = work / "copy.duckdb"
                    for kind in ("rescue", "dbt") if r % 2 == 0 else ("dbt", "rescue"):
                        if kind == "rescue" and opts.via == "ui":
                            product.append(launch_from_ui(env, select, full_refresh, dagster.port))
                        elif kind == "rescue":
                            product.append(launch(env, select, full_refresh, opts.layered))
                        else:
                            plain.append(plain_dbt(env, project, select, full_refresh, copy))
                    expected, runs, marks = expected_and_runs(env, product[-1][1])
                    estimates.append(expected)
                    seconds, _, began = product[-1]
                    points = [began, *(marks[p] for p in PHASES), began + seconds]
                    phases.append([b - a for a, b in zip(points, points[1:], strict=False)])
                took = statistics.median(p[0] for p in product)
                base = statistics.median(plain)
                rows.append(
                    {
                        "storage": storage,
                        "models": size,
                        "full_refresh": full_refresh,
                        "runs": runs,
                        "rescue": took,
                        "dbt": base,
                        "expected": statistics.median(estimates),
                        "phases": [statistics.median(p) for p in zip(*phases, strict=True)],
                        "each": [p[0] for p in product],
                        "estimates": estimates,
                    }
                )
                print_row(rows[-1], flush=True)
    finally:
        dagster.stop()
        if storage == "postgres":
            postgres_database(database, drop_only=True)
    return rows


HEADER = (
    "| storage | models | full refresh | steps/runs | rescue launch-to-end | plain dbt build "
    "| ratio | extra | plan estimate | estimate / measured |"
)


TIMELINE_HEADER = (
    "| storage | models | full refresh | CLI plans, registers | tick requests the run "
    "| queue, run worker starts | run | tick ends the rescue | CLI notices |"
)


def print_timeline(row: dict) -> None:
    cells = " | ".join(f"{s:.1f} s" for s in row["phases"])
    refresh = "yes" if row["full_refresh"] else "no"
    print(f"| {row['storage']} | {row['models']} | {refresh} | {cells} |")


def print_row(row: dict, flush: bool = False) -> None:
    ratio = row["rescue"] / row["dbt"]
    print(
        f"| {row['storage']} | {row['models']} | {'yes' if row['full_refresh'] else 'no'} "
        f"| {row['runs']} | {row['rescue']:.1f} s | {row['dbt']:.1f} s | {ratio:.2f}x "
        f"| +{row['rescue'] - row['dbt']:.1f} s | {row['expected']:.0f} s "
        f"| {row['expected'] / row['rescue']:.2f} |",
        flush=flush,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50, 200])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--storage", nargs="+", choices=["sqlite", "postgres"], default=None)
    parser.add_argument("--full-refresh", choices=["both", "no", "only"], default="both")
    parser.add_argument("--bundled", nargs="+", metavar="SELECTION", default=None)
    parser.add_argument("--via", choices=["cli", "ui", "sensor"], default="cli")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (homes, logs)")
    parser.add_argument(
        "--layered", action="store_true", help="each rescue in stages: upstream, target, downstream"
    )
    opts = parser.parse_args()
    if any(s not in (1, 10, 50, 200, 2000) for s in opts.sizes):
        raise SystemExit("--sizes: 1, 10, 50, 200 and/or 2000")
    # the first build covers the largest size (a 2,000-model project is built whole)
    opts.whole = max(200, *opts.sizes)
    storages = opts.storage or ["sqlite"] + (["postgres"] if postgres_available() else [])
    work = Path(tempfile.mkdtemp(prefix="launch-bench-"))
    project = REPO / "dbt_project" if opts.bundled else write_project(work, opts.whole)
    subprocess.run(
        [str(BIN / "dbt"), "parse", "--quiet", "--project-dir", str(project)],
        env={**os.environ, "RESCUE_DUCKDB_PATH": str(work / "parse.duckdb")},
        cwd=project,
        check=True,
    )
    print(
        f"B1 via {opts.via}, {os.cpu_count()} cores, medians of {opts.repeat}; work dir {work}",
        flush=True,
    )
    print(HEADER + "\n|" + " --- |" * 10, flush=True)
    rows = []
    for storage in storages:
        rows += measure(work, project, storage, opts)
    print("\n" + HEADER + "\n|" + " --- |" * 10)
    for row in rows:
        print_row(row)
    print("\nEach rescue, in order (the first one's proof parses its scratch profile):")
    for row in rows:
        print(
            f"{row['models']}: "
            + " / ".join(
                f"{s:.1f} s (estimate {e:.0f} s)"
                for s, e in zip(row["each"], row["estimates"], strict=True)
            )
        )
    print("\nWhere the launch-to-end time goes (medians):\n" + TIMELINE_HEADER)
    print("|" + " --- |" * 9)
    for row in rows:
        print_timeline(row)
    if not opts.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
