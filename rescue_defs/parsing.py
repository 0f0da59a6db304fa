"""Keeping the product's manifest current without stalling a code location's load.

Under `dagster dev` a reload re-parses the project when any file dbt reads changed. A big
project (or `dbt deps` fetching packages) can take minutes, and the webserver gives up on a
reload after 60 s. So the parse runs in a thread: the load waits for it up to
`RESCUE_PARSE_WAIT_SECONDS` (4), and past that goes on with the manifest parsed before,
saying so; the next reload finds the new one. dbt parses into a folder of its own and the
manifest is swapped in with one rename, so a reader never sees half a file. `dbt deps` runs
only when packages are missing or packages.yml / dependencies.yml changed since the lock
file was written (dagster-dbt's preparer runs it on every parse).

The code location's module (rescue_defs.definitions) starts that parse before it imports
Dagster (`start_for_environment`): a reload spends 2-3 s importing, and the parse runs beside
it on the other core. The wait counts from the parse's start. Nothing here imports Dagster.

In a deployment nothing parses at load time: `rescue prepare` parses at build time, as
dagster-dbt's `prepare-and-package` does.
"""

import logging
import os
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rescue_defs import dbt_child

log = logging.getLogger(__name__)
_RUNNING: dict[str, threading.Thread] = {}
_STARTED: dict[str, float] = {}
_ERRORS: dict[str, BaseException] = {}


@dataclass(frozen=True)
class Where:
    """A dbt project as the product parses it: the folders, the target, and the target path
    its manifest is kept in (relative to the project)."""

    project_dir: Path
    profiles_dir: Path
    target: str | None
    target_path: Path

    @classmethod
    def of(cls, project: Any) -> "Where":
        """From a dagster-dbt DbtProject."""
        return cls(
            Path(project.project_dir),
            Path(project.profiles_dir),
            project.target,
            Path(project.target_path),
        )

    @property
    def manifest_path(self) -> Path:
        return self.project_dir / self.target_path / "manifest.json"


def parse_wait_seconds() -> float:
    from rescue_defs import settings

    return settings.get("RESCUE_PARSE_WAIT_SECONDS")


def deps_needed(project_dir: Path) -> bool:
    root = Path(project_dir)
    declared = [root / n for n in ("packages.yml", "dependencies.yml") if (root / n).exists()]
    if not declared:
        return False
    lock = root / "package-lock.yml"
    if not lock.exists() or not (root / "dbt_packages").exists():
        return True
    return any(path.stat().st_mtime > lock.stat().st_mtime for path in declared)


def _invoke(where: Where, args: list[str], log_path: Path) -> None:
    """One dbt command in the project folder, its log in `log_path` (as dagster-dbt keeps
    them: not in the user's logs/); a failure raises with dbt's first error line."""
    command = [dbt_child.dbt(), *args, "--project-dir", str(where.project_dir)]
    command += ["--profiles-dir", str(where.profiles_dir)]
    command += ["--target", where.target] if where.target else []
    env = {**os.environ, "DBT_LOG_PATH": str(log_path)}
    done = subprocess.run(
        command, cwd=where.project_dir, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        lines = [ln.strip() for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
        lines = [ln for ln in lines if ln not in ("Runtime Error", "Compilation Error")]
        first = next((ln for ln in lines if "rror" in ln), lines[0] if lines else "")
        raise RuntimeError(f"`dbt {args[0]}` failed (exit {done.returncode}): {first[:300]}")


def parse(project: Any) -> None:
    """`dbt parse` of a dagster-dbt DbtProject (see parse_where)."""
    parse_where(Where.of(project))


def parse_where(where: Where) -> None:
    """`dbt deps` when needed, then `dbt parse` into a folder of its own, swapped in."""
    final = where.project_dir / where.target_path
    if deps_needed(where.project_dir):
        final.mkdir(parents=True, exist_ok=True)
        _invoke(where, ["deps", "--quiet"], final)
    _remove_orphans(final.parent)
    work = final.parent / f".parse-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        # seeded with the state of the last parse here: dbt then re-parses what changed only
        # (dagster-dbt seeds from target/ alone, which the user's own dbt commands own)
        work.mkdir(parents=True, exist_ok=True)
        if (final / "partial_parse.msgpack").exists():
            shutil.copy2(final / "partial_parse.msgpack", work / "partial_parse.msgpack")
        _invoke(where, ["parse", "--quiet", "--target-path", str(work)], work)
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


def _parse_in_background(where: Where, key: str) -> None:
    try:
        parse_where(where)
        _ERRORS.pop(key, None)
    except BaseException as e:  # kept for the load that waits; logged for the one that did not
        _ERRORS[key] = e
        log.warning(f"dbt parse of {where.project_dir} failed: {str(e).strip()[:300]}")


def start(where: Where) -> str:
    """The parse of `where` in a thread, unless one is going on; its key."""
    key = str(where.manifest_path)
    thread = _RUNNING.get(key)
    if thread is None or not thread.is_alive():
        thread = threading.Thread(
            target=_parse_in_background, args=(where, key), name="rescue-dbt-parse", daemon=True
        )
        _RUNNING[key] = thread
        _STARTED[key] = time.monotonic()
        thread.start()
    return key


def start_for_environment() -> None:
    """Under `dagster dev`, the parse of the project the environment names (RESCUE_DBT_*),
    started when its kept manifest is stale: called by the code location's module before it
    imports Dagster. Elsewhere, or when anything is off, nothing: the load decides."""
    if not os.environ.get("DAGSTER_IS_DEV_CLI"):
        return
    from rescue_defs.project import (
        BUNDLED_PROJECT_DIR,
        configure_warehouse_env,
        configured_target,
        manifest_is_current,
        rescue_target_path,
    )

    try:
        project_dir = Path(os.environ.get("RESCUE_DBT_PROJECT_DIR") or BUNDLED_PROJECT_DIR)
        project_dir = project_dir.expanduser().resolve()
        profiles = os.environ.get("RESCUE_DBT_PROFILES_DIR")
        profiles_dir = Path(profiles).expanduser().resolve() if profiles else project_dir
        target = configured_target()
        where = Where(project_dir, profiles_dir, target, rescue_target_path(target))
        if not where.manifest_path.exists():
            return  # a first parse: the load does it, and waits for it
        if manifest_is_current(project_dir, profiles_dir, where.manifest_path):
            return
        configure_warehouse_env()
        start(where)
    except Exception as e:  # a head start only: the load parses and reports
        log.debug(f"no early parse: {e}")


def refresh(project: Any, wait: float) -> str:
    """Parse (once at a time per manifest) and wait until `wait` seconds after the parse
    began. "" when the new manifest is in place; a sentence when the parse goes on in the
    background. A parse that failed within the wait raises its error."""
    key = start(Where.of(project))
    thread = _RUNNING[key]
    thread.join(max(0.0, _STARTED[key] + wait - time.monotonic()))
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
