"""Owns the dbt project: the bundled shop warehouse by default, any dbt project via env vars.

Environment:
- RESCUE_DBT_PROJECT_DIR: dbt project to load (default: the bundled `dbt_project/`).
- RESCUE_DBT_PROFILES_DIR: folder with profiles.yml (default: the project folder).
- RESCUE_DBT_TARGET: dbt target (default: the profile's default target).
- RESCUE_DUCKDB_PATH: the bundled warehouse's DuckDB file (default: `data/warehouse.duckdb` in
  the repository). Always made absolute: dagster-dbt runs selections of more than 200 resources
  in a temp copy of the project, where a relative path would silently write a copy.
- RESCUE_SANDBOX_DUCKDB_PATH: the `sandbox` target's file (default: `sandbox/<same name>` next
  to the warehouse; the same file name keeps DuckDB's catalog name, so the views copied from
  prod still resolve).
"""

from __future__ import annotations

import functools
import logging
import os
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rescue_defs import settings

if TYPE_CHECKING:  # imported where a DbtProject is made: this module is read before Dagster
    from dagster_dbt import DbtProject

REPO_DIR = Path(__file__).resolve().parent.parent
BUNDLED_PROJECT_DIR = REPO_DIR / "dbt_project"
DEFAULT_DATA_DIR = REPO_DIR / "data"
# Dagster's concurrency pool of every step that opens the warehouse (dbt, loaders, freshness,
# proof). With `pools: {granularity: run}` in dagster.yaml a run holding such a step waits in
# the queue while another one runs, and runs that only plan, cancel or record (rescue_job,
# cancel_rescue_job, rescue_status_job) never wait behind them.
WAREHOUSE_POOL = "warehouse"


def warehouse_path() -> Path:
    """The DuckDB file of the bundled warehouse, absolute, outside the dbt project folder."""
    configured = settings.get("RESCUE_DUCKDB_PATH")
    path = Path(configured) if configured else DEFAULT_DATA_DIR / "warehouse.duckdb"
    return path.expanduser().resolve()


def sandbox_warehouse_path() -> Path:
    configured = settings.get("RESCUE_SANDBOX_DUCKDB_PATH")
    if configured:
        return Path(configured).expanduser().resolve()
    prod = warehouse_path()
    return prod.parent / "sandbox" / prod.name


def configure_warehouse_env() -> Path:
    """Pin the warehouse paths (absolute) for every dbt process started from here."""
    path = warehouse_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.environ["RESCUE_DUCKDB_PATH"] = str(path)
    os.environ["RESCUE_SANDBOX_DUCKDB_PATH"] = str(sandbox_warehouse_path())
    return path


def is_bundled(project: DbtProject) -> bool:
    return Path(project.project_dir).resolve() == BUNDLED_PROJECT_DIR


RESCUE_TARGET_FOLDER = Path("target") / "rescue"


def rescue_target_path(target: str | None) -> Path:
    """Where the product's manifest for a dbt target lives, relative to the project: apart
    from target/, which the user's own dbt commands overwrite (a `dbt build --target dev` in
    the project folder would otherwise hand the code location dev's schemas)."""
    return RESCUE_TARGET_FOLDER / (re.sub(r"[^\w.-]", "_", target) if target else "default")


def configured_target() -> str | None:
    return settings.get("RESCUE_DBT_TARGET")


@functools.cache
def load_dbt_project(
    project_dir: str | None = None, profiles_dir: str | None = None, target: str | None = None
) -> DbtProject:
    project_path = Path(project_dir).expanduser().resolve() if project_dir else BUNDLED_PROJECT_DIR
    if not (project_path / "dbt_project.yml").exists():
        raise ProjectNotReady(f"no dbt_project.yml in {project_path} (RESCUE_DBT_PROJECT_DIR)")
    from dagster_dbt import DbtProject

    profiles_path = Path(profiles_dir).expanduser().resolve() if profiles_dir else project_path
    try:
        project = DbtProject(
            project_dir=project_path,
            profiles_dir=profiles_path,
            target=target,
            target_path=rescue_target_path(target),
        )
    except Exception as e:  # dagster-dbt reads dbt_project.yml (its YAML, its name) here
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
        raise ProjectNotReady(
            f"{project_path / 'dbt_project.yml'} does not load ({type(e).__name__}: "
            f"{first[:200]}); run `dbt parse --project-dir {project_path}` to see why"
        ) from None
    # the profile needs the warehouse path to parse
    configure_warehouse_env()
    # under `dagster dev` dagster-dbt parses in every process that loads the code (the code
    # server and each run worker: 4-8 s per run); parse only when the project changed, and
    # never longer than RESCUE_PARSE_WAIT_SECONDS with a manifest to go on with (parsing.py)
    stale = not manifest_is_current(
        project.project_dir, project.profiles_dir, project.manifest_path
    )
    if stale and project.manifest_path.exists() and project.preparer.using_dagster_dev():
        from rescue_defs import parsing

        try:
            note = parsing.refresh(project, parsing.parse_wait_seconds())
        except ValueError as e:
            raise ProjectNotReady(str(e)) from None
        except Exception as e:
            raise _not_ready(project, e) from None
        if note:
            logging.getLogger(__name__).warning(note)
    if not project.manifest_path.exists() or not _ends_whole(project.manifest_path):
        # elsewhere (dagster-webserver, the daemon, a run worker, tests): parse once, as
        # dagster-dbt's own preparer does, instead of failing on a project fresh from git
        _prepare_once(project)
    return project


PROJECT_FILES = (".sql", ".yml", ".yaml", ".csv", ".py", ".md")
WRITTEN_BY_DBT = ("target", "logs")


def manifest_is_current(
    project_dir: Path, profiles_dir: Path | None = None, manifest: Path | None = None
) -> bool:
    """The product's manifest (default: the profile's default target's) exists and is newer
    than every file dbt reads to parse (models, macros, seeds, yml, docs, profiles.yml,
    packages installed)."""
    if manifest is None:
        manifest = Path(project_dir) / rescue_target_path(None) / "manifest.json"
    if not manifest.exists() or not _ends_whole(manifest):
        return False
    built = manifest.stat().st_mtime
    files = [Path(profiles_dir) / "profiles.yml"] if profiles_dir is not None else []
    # os.walk, not rglob: runs create and delete their folders in target/ meanwhile (a folder
    # gone between listing and reading made rglob raise and `rescue` fail); what dbt writes
    # (target/, logs/) is not what it parses, so it is not walked at all. Symlinks are
    # followed: `dbt deps` installs a local package as a link into dbt_packages/, and an edit
    # there is a change of the project as dbt sees it (each real folder is walked once)
    seen: set[str] = set()
    for folder, subfolders, names in os.walk(project_dir, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        if Path(folder) == Path(project_dir):
            subfolders[:] = [d for d in subfolders if d not in WRITTEN_BY_DBT]
        files += [Path(folder) / n for n in names if Path(n).suffix in PROJECT_FILES]
    for path in files:
        try:
            if path.stat().st_mtime > built:
                return False
        except FileNotFoundError:
            continue
    return True


def _ends_whole(manifest: Path) -> bool:
    """A manifest cut short (a full disk, a killed parse, a partial copy) does not end its JSON
    object: parse again rather than fail on it. Reads the last bytes only."""
    with manifest.open("rb") as f:
        f.seek(max(0, manifest.stat().st_size - 64))
        return f.read().rstrip().endswith(b"}")


class ProjectNotReady(RuntimeError):
    """The dbt project could not be parsed; the message names the command to see why."""


def _command(project: DbtProject) -> str:
    return (
        f"dbt parse --project-dir {project.project_dir} --profiles-dir {project.profiles_dir}"
        + (f" --target {project.target}" if project.target else "")
        + f" --target-path {project.target_path}"
    )


def _not_ready(project: DbtProject, error: BaseException) -> ProjectNotReady:
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return ProjectNotReady(
        f"dbt project {project.project_dir} could not be parsed ({type(error).__name__}: "
        f"{first[:300]}); run `{_command(project)}` to see why"
    )


def _prepare_once(project: DbtProject) -> None:
    from rescue_defs import parsing

    try:
        parsing.parse(project)
    except Exception as e:
        raise _not_ready(project, e) from None
    if not project.manifest_path.exists():
        raise ProjectNotReady(f"`{_command(project)}` wrote no {project.manifest_path}")


def dbt_project() -> DbtProject:
    """The DbtProject the environment points at."""
    return load_dbt_project(
        settings.get("RESCUE_DBT_PROJECT_DIR"),
        settings.get("RESCUE_DBT_PROFILES_DIR"),
        configured_target(),
    )


def business_today() -> date:
    """The business date: RESCUE_TODAY (replays, tests, the simulated shop), the date of
    RESCUE_NOW, or the UTC date."""
    return settings.get("RESCUE_TODAY") or clock_now().date()


def configured_now() -> datetime | None:
    """The injected clock, naive UTC: RESCUE_NOW (an ISO time), else RESCUE_TODAY at the real
    clock's time of day; None when neither is set (the real clock rules)."""
    now = settings.get("RESCUE_NOW")
    if now is not None:
        return now
    today = settings.get("RESCUE_TODAY")
    if today is not None:
        return datetime.combine(today, datetime.now(UTC).time())
    return None


def clock_now() -> datetime:
    """Now, naive UTC: the injected clock (RESCUE_NOW / RESCUE_TODAY) or the real one."""
    return configured_now() or datetime.now(UTC).replace(tzinfo=None)


def business_timezone() -> str:
    return settings.get("RESCUE_BUSINESS_TIMEZONE")


def peak_hours() -> tuple[int, int] | None:
    """RESCUE_PEAK_HOURS "8-18" (default; local hours [start, end) on weekdays, in
    RESCUE_BUSINESS_TIMEZONE) when heavy rescues must not start; "none": no peak hours."""
    return settings.get("RESCUE_PEAK_HOURS")
