"""B1 against the real peer: what a Dagster user without this product waits for, beside the
product and plain dbt, in one invocation.

The peer is a plain dagster-dbt code location (`@dbt_assets` over the same generated project,
its function `dbt build` with `context`, nothing of ours) under its own `dagster dev`, each
materialization launched through its webserver exactly as "Materialize selected" sends it
(GraphQL `launchRun` of the implicit asset job with the selected assets; their dbt tests run
as checks), timed from the submission to the run's end. The product: `rescue launch --wait`
under `dagster dev` of this repository (launch_bench.py's B1), timed from the command to its
exit. Plain dbt: `dbt build --select` on a copy of the product's warehouse. The three
alternate; each Dagster home and warehouse is its own, first built by a 200-model build.

Run: .venv/bin/python bench/peer_bench.py [--sizes 10 200 2000] [--repeat 3] [--storage postgres]
[--proof on|off|both] (with 2000: a 2,000-model project, both homes first built whole; `--proof
both`: the product's rescues also without their proof, RESCUE_PROOF=off, in the rotation, to
show what the proof, which the peer does not do, costs)
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import launch_bench as lb  # bench/ is the script's folder

PEER_DEFS = """
import os

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets

project = DbtProject(project_dir=os.environ["PEER_PROJECT_DIR"])


@dbt_assets(manifest=project.manifest_path, project=project)
def models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    yield from dbt.cli(["build"], context=context).stream()


defs = dg.Definitions(assets=[models], resources={"dbt": DbtCliResource(project_dir=project)})
"""

LAUNCH = """
mutation ($p: ExecutionParams!) { launchRun(executionParams: $p) {
  __typename
  ... on LaunchRunSuccess { run { runId } }
  ... on PythonError { message }
  ... on InvalidSubsetError { message }
} }
"""
RUN = "query ($id: ID!) { runOrError(runId: $id) { ... on Run { status endTime } } }"
LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }"


def models_tagged(project: Path, size: int) -> list[str]:
    manifest = json.loads((project / "target" / "manifest.json").read_text())
    return sorted(
        n["name"]
        for n in manifest["nodes"].values()
        if n["resource_type"] == "model" and f"n{size}" in n["tags"]
    )


def materialize_selected(port: int, names: list[str]) -> float:
    """What "Materialize selected" sends; seconds from the submission to the run's end."""
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    (location,) = [
        e["name"] for e in client._execute(LOCATIONS)["workspaceOrError"]["locationEntries"]
    ]
    params = {
        "selector": {
            "repositoryLocationName": location,
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": [name]} for name in names],
        },
        "runConfigData": {},
    }
    submitted = time.time()
    launched = client._execute(LAUNCH, {"p": params})["launchRun"]
    if launched["__typename"] != "LaunchRunSuccess":
        raise SystemExit(f"the peer's launch failed: {launched}")
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        run = client._execute(RUN, {"id": run_id})["runOrError"]
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            if run["status"] != "SUCCESS":
                raise SystemExit(f"the peer's run {run_id}: {run['status']}")
            return run["endTime"] - submitted
        time.sleep(0.2)
    raise SystemExit(f"the peer's run {run_id} did not end")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 200])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--storage", choices=["sqlite", "postgres"], default="sqlite", help="both homes'"
    )
    parser.add_argument(
        "--proof",
        choices=["on", "off", "both"],
        default="on",
        help="the product's rescues with their proof (RESCUE_PROOF), without, or both alternating",
    )
    opts = parser.parse_args()
    if opts.storage == "postgres" and not lb.postgres_available():
        raise SystemExit("--storage postgres: no PostgreSQL answers on 127.0.0.1:5432")
    if any(s not in (1, 10, 50, 200, 2000) for s in opts.sizes):
        raise SystemExit("--sizes: 1, 10, 50, 200 and/or 2000")
    whole = max(200, *opts.sizes)
    work = Path(tempfile.mkdtemp(prefix="peer-bench-"))
    project = lb.write_project(work, whole)
    peer_project = work / "peer" / project.name
    shutil.copytree(project, peer_project)
    base = {**os.environ, "PATH": f"{lb.BIN}{os.pathsep}{os.environ['PATH']}"}
    for folder in (project, peer_project):
        subprocess.run(
            [str(lb.BIN / "dbt"), "parse", "--quiet", "--project-dir", str(folder)],
            env={**base, "RESCUE_DUCKDB_PATH": str(work / "parse.duckdb")},
            cwd=folder,
            check=True,
        )
    homes, databases = {}, []
    for name in ("product", "peer"):
        homes[name] = work / f"home-{name}"
        homes[name].mkdir()
        database = f"peer_bench_{name}_{os.getpid()}"
        if opts.storage == "postgres":
            lb.postgres_database(database)
            databases.append(database)
        (homes[name] / "dagster.yaml").write_text(lb.dagster_yaml(opts.storage, database))
    env = {
        **base,
        "DAGSTER_HOME": str(homes["product"]),
        "RESCUE_DUCKDB_PATH": str(work / "product.duckdb"),
        "RESCUE_PEAK_HOURS": "none",
        "RESCUE_DBT_PROJECT_DIR": str(project),
    }
    peer_env = {
        **base,
        "DAGSTER_HOME": str(homes["peer"]),
        "RESCUE_DUCKDB_PATH": str(work / "peer.duckdb"),
        "PEER_PROJECT_DIR": str(peer_project),
    }
    (work / "peer_defs.py").write_text(PEER_DEFS)
    product = lb.Dagster(work, env, opts.storage)
    peer = lb.Dagster(
        work, peer_env, opts.storage, location=("-f", str(work / "peer_defs.py")), name="peer"
    )
    print(
        f"B1 against the peer, {opts.storage} storage, {os.cpu_count()} cores, medians of "
        f"{opts.repeat}; {work}"
    )
    rows = []
    try:
        # the first builds: tables exist, both instances have history
        lb.launch(env, f"tag:n{whole}", True)
        materialize_selected(peer.port, models_tagged(peer_project, whole))
        for size in opts.sizes:
            names = models_tagged(peer_project, size)
            order = ["product", "peer", "dbt"]
            if opts.proof != "on":
                order.append("unproven")  # the product with RESCUE_PROOF=off
            if opts.proof == "off":
                order.remove("product")
            times: dict[str, list[float]] = {kind: [] for kind in order}
            for r in range(opts.repeat):
                turn = r % len(order)
                for kind in order[turn:] + order[:turn]:
                    if kind in ("product", "unproven"):
                        proof = {"RESCUE_PROOF": "off"} if kind == "unproven" else {}
                        times[kind].append(lb.launch({**env, **proof}, f"tag:n{size}", False)[0])
                    elif kind == "peer":
                        times[kind].append(materialize_selected(peer.port, names))
                    else:
                        copy = work / "copy.duckdb"
                        times[kind].append(lb.plain_dbt(env, project, f"tag:n{size}", False, copy))
            row = {k: statistics.median(v) for k, v in times.items()}
            rows.append((size, row, times))
            print(size, {k: [round(x, 1) for x in v] for k, v in times.items()}, flush=True)
    finally:
        product.stop()
        peer.stop()
        for database in databases:
            lb.postgres_database(database, drop_only=True)
    kinds = [k for k in ("product", "unproven") if k in rows[0][1]] if rows else []
    names = {"product": "product (rescue launch --wait)", "unproven": "product, RESCUE_PROOF=off"}
    print(
        "\n| models | plain dbt | peer (Materialize selected) | "
        + " | ".join(f"{names[k]} | / peer | - plain dbt" for k in kinds)
        + " |"
    )
    print("| --- | --- | --- |" + " --- | --- | --- |" * len(kinds))
    for size, row, _ in rows:
        cells = [
            f"{row[k]:.1f} s | {row[k] / row['peer']:.2f}x | +{row[k] - row['dbt']:.1f} s"
            for k in kinds
        ]
        print(f"| {size} | {row['dbt']:.1f} s | {row['peer']:.1f} s | " + " | ".join(cells) + " |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
