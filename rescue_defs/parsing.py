"""Keeping the product's manifest current without stalling a code location's load.

Under `dagster dev` a reload re-parses the project when any file dbt reads changed. A big
project (or `dbt deps` fetching packages) can take minutes, and the webserver gives up on a
reload after 60 s. So the parse runs in a thread: the load waits for it up to
`RESCUE_PARSE_WAIT_SECONDS` (4), and past that goes on with the manifest parsed before,
saying so; the next reload finds the new one. dbt parses into a folder of its own and the
manifest is swapped in with one rename, so a reader never sees half a file. `dbt deps` runs
only when packages are missing or packages.yml / dependencies.yml changed since the lock
file was written (dagster-dbt's preparer runs it on every parse).

In a deployment nothing parses at load time: `rescue prepare` parses at build time, as
dagster-dbt's `prepare-and-package` does.
"""

import logging
import os
import shutil
import threading
import uuid
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

log = logging.getLogger(__name__)
DEFAULT_WAIT_SECONDS = 4.0  # plus the code load itself: aims at a reload within ~10 s (to measure)
_RUNNING: dict[str, threading.Thread] = {}
_ERRORS: dict[str, BaseException] = {}


def parse_wait_seconds() -> float:
    raw = os.environ.get("RESCUE_PARSE_WAIT_SECONDS", "").strip()
    try:
        value = float(raw) if raw else DEFAULT_WAIT_SECONDS
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ValueError(
            f"RESCUE_PARSE_WAIT_SECONDS={raw!r} is not allowed: a number of seconds, 0 or more"
        )
    return value


def deps_needed(project: DbtProject) -> bool:
    root = Path(project.project_dir)
    declared = [root / n for n in ("packages.yml", "dependencies.yml") if (root / n).exists()]
    if not declared:
        return False
    lock = root / "package-lock.yml"
    if not lock.exists() or not (root / "dbt_packages").exists():
        return True
    return any(path.stat().st_mtime > lock.stat().st_mtime for path in declared)


def parse(project: DbtProject) -> None:
    """`dbt deps` when needed, then `dbt parse` into a folder of its own, swapped in."""
    root = Path(project.project_dir)
    dbt = DbtCliResource(project_dir=project)
    if deps_needed(project):
        dbt.cli(["deps", "--quiet"], target_path=project.target_path).wait()
    final = root / project.target_path
    _remove_orphans(final.parent)
    work = final.parent / f".parse-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        # seeded with the state of the last parse here: dbt then re-parses what changed only
        # (dagster-dbt seeds from target/ alone, which the user's own dbt commands own)
        if (final / "partial_parse.msgpack").exists():
            work.mkdir(parents=True, exist_ok=True)
            shutil.copy2(final / "partial_parse.msgpack", work / "partial_parse.msgpack")
        dbt.cli(["parse", "--quiet"], target_path=work).wait()
        final.mkdir(parents=True, exist_ok=True)
        for name in ("partial_parse.msgpack", "manifest.json"):  # the manifest last
            if (work / name).exists():
                os.replace(work / name, final / name)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _remove_orphans(folder: Path) -> None:
    """Work folders of parses whose process is gone (a run worker that ended mid-parse)."""
    for work in folder.glob(".parse-*"):
        try:
            pid = int(work.name.split("-")[1])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            shutil.rmtree(work, ignore_errors=True)
        except PermissionError:
            continue  # alive, someone else's


def _parse_in_background(project: DbtProject, key: str) -> None:
    try:
        parse(project)
        _ERRORS.pop(key, None)
    except BaseException as e:  # kept for the load that waits; logged for the one that did not
        _ERRORS[key] = e
        log.warning(f"dbt parse of {project.project_dir} failed: {str(e).strip()[:300]}")


def refresh(project: DbtProject, wait: float) -> str:
    """Parse (once at a time per manifest) and wait up to `wait` seconds. "" when the new
    manifest is in place; a sentence when the parse goes on in the background. A parse that
    failed within the wait raises its error."""
    key = str(project.manifest_path)
    thread = _RUNNING.get(key)
    if thread is None or not thread.is_alive():
        thread = threading.Thread(
            target=_parse_in_background, args=(project, key), name="rescue-dbt-parse", daemon=True
        )
        _RUNNING[key] = thread
        thread.start()
    thread.join(wait)
    if thread.is_alive():
        return (
            f"dbt parse of {project.project_dir} takes longer than {wait:.0f} s "
            "(RESCUE_PARSE_WAIT_SECONDS): this load uses the manifest parsed before; reload "
            "the code location when the parse has ended"
        )
    error = _ERRORS.pop(key, None)
    if error is not None:
        raise error
    return ""
