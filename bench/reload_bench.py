"""B6: code-location reload under a real `dagster dev`, with the project's manifest stale (a
model edited since the last parse: dbt parses again) against the same reload with nothing
changed (the baseline: no parse), alternating, medians. The goal: a stale reload answers
within 10 s.

A copy of the bundled dbt project (or --project-dir) is loaded as the product's code location;
each reload is the GraphQL `reloadRepositoryLocation` the UI's "Reload" button sends, timed
until the location answers LOADED. After each stale reload the bench waits for the
background parse to end (the next load must find the manifest current), so each stale reload
starts from the same state.

Run: .venv/bin/python bench/reload_bench.py [--repeat 3] [--project-dir DIR]
(prints medians and the ratio; no assertions)
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RELOAD = """
mutation { reloadRepositoryLocation(repositoryLocationName: "rescue_defs") {
  __typename ... on WorkspaceLocationEntry { locationOrLoadError { __typename } } } }
"""
STATUS = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename } } } } }
"""


def _post(port: int, query: str, timeout: float = 120) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _loaded(port: int) -> bool:
    try:
        entries = _post(port, STATUS, 10)["data"]["workspaceOrError"]["locationEntries"]
    except (OSError, KeyError, TypeError, ValueError):
        return False
    return any(
        e["name"] == "rescue_defs"
        and e["loadStatus"] == "LOADED"
        and e["locationOrLoadError"]["__typename"] == "RepositoryLocation"
        for e in entries
    )


def _wait(predicate, seconds: float, what: str) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def _reload(port: int) -> float:
    start = time.perf_counter()
    result = _post(port, RELOAD)
    entry = result["data"]["reloadRepositoryLocation"]
    if entry.get("locationOrLoadError", {}).get("__typename") != "RepositoryLocation":
        _wait(lambda: _loaded(port), 120, "the reload")
    return time.perf_counter() - start


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--project-dir", default=str(REPO / "dbt_project"))
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from rescue_defs.project import manifest_is_current, rescue_target_path

    with tempfile.TemporaryDirectory(prefix="reload-bench-") as tmp:
        root = Path(tmp)
        project = root / "project"
        shutil.copytree(args.project_dir, project, ignore=shutil.ignore_patterns("target", "logs"))
        home = root / "home"
        home.mkdir()
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        port = _free_port()
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "RESCUE_DBT_PROJECT_DIR": str(project),
            "RESCUE_DUCKDB_PATH": str(root / "warehouse.duckdb"),
            "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}",
        }
        env.pop("RESCUE_PARSE_WAIT_SECONDS", None)  # the default, as users have it
        manifest = project / rescue_target_path(None) / "manifest.json"
        model = next(p for p in sorted((project / "models").rglob("*.sql")))
        dev = subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "dagster"), "dev", "-p", str(port), "-h", "127.0.0.1"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            _wait(lambda: _loaded(port), 300, "the first load")
            _wait(lambda: manifest_is_current(project, project, manifest), 300, "the parse")
            current, stale = [], []
            for _ in range(args.repeat):
                current.append(_reload(port))
                model.write_text(model.read_text() + "\n-- edited\n")
                later = time.time() + 1
                os.utime(model, (later, later))
                time.sleep(1.1)
                stale.append(_reload(port))
                _wait(lambda: manifest_is_current(project, project, manifest), 300, "the parse")
        finally:
            os.killpg(dev.pid, 15)
            dev.wait(60)
    a, b = statistics.median(current), statistics.median(stale)
    print(f"reload, manifest current: {a:.1f} s  ({', '.join(f'{x:.1f}' for x in current)})")
    print(f"reload, manifest stale:   {b:.1f} s  ({', '.join(f'{x:.1f}' for x in stale)})")
    print(f"stale / current: {b / a:.2f}x; goal: stale <= 10 s: {'met' if b <= 10 else 'not met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
