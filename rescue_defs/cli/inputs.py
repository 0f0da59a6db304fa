"""What a `rescue` command reads: the dbt project and its manifest, the Dagster instance, the
warehouse to ask, and the plan request its flags describe."""

import argparse
import os
from pathlib import Path


class CliError(Exception):
    """A one-line message for the user; exit code 2."""


def project_manifest(project_dir: Path, profiles_dir: Path | None) -> Path:
    """The project's manifest for the configured target (RESCUE_DBT_TARGET), where the code
    location keeps it, parsed first when missing or older than the project's files."""
    from rescue_defs.project import configured_target, manifest_is_current, rescue_target_path

    target = configured_target()
    manifest = project_dir / rescue_target_path(target) / "manifest.json"
    if not (project_dir / "dbt_project.yml").exists():
        raise CliError(f"no dbt_project.yml in {project_dir}")
    if not manifest_is_current(project_dir, profiles_dir, manifest):
        from dbt.cli.main import dbtRunner

        from rescue_defs.project import configure_warehouse_env

        configure_warehouse_env()
        args = ["parse", "--quiet", "--project-dir", str(project_dir)]
        args += ["--profiles-dir", str(profiles_dir or project_dir)]
        args += ["--target-path", str(rescue_target_path(target))]
        args += ["--target", target] if target else []
        result = dbtRunner().invoke(args)
        if not result.success:
            why = str(result.exception or "see dbt's output above").strip()
            lines = [ln.strip() for ln in why.splitlines() if ln.strip()]
            lines = [ln for ln in lines if ln not in ("Runtime Error", "Compilation Error")]
            raise CliError(f"dbt parse failed in {project_dir}: {(lines or [why])[0][:300]}")
    return manifest


def project_folders(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """The dbt project folder and profiles folder the command names (flags, then the
    environment, then the bundled project), absolute."""
    from rescue_defs import settings
    from rescue_defs.project import BUNDLED_PROJECT_DIR

    project_dir = args.project_dir or settings.get("RESCUE_DBT_PROJECT_DIR")
    profiles = args.profiles_dir or settings.get("RESCUE_DBT_PROFILES_DIR")
    return (
        Path(project_dir or BUNDLED_PROJECT_DIR).resolve(),
        Path(profiles).resolve() if profiles else None,
    )


def model_keys(instance, manifest) -> dict:
    """unique_id -> asset key, as the code location names them (it publishes its keys on the
    instance: a team's own translator, key prefixes included)."""
    from rescue_defs.assets.keys import model_asset_keys, use_published

    use_published(instance, manifest)
    return model_asset_keys(manifest)


def read_manifest(args: argparse.Namespace):
    from rescue_defs.planning.manifest import DbtManifest

    if getattr(args, "manifest", None):
        return DbtManifest.load(args.manifest)
    project_dir, profiles_dir = project_folders(args)
    return DbtManifest.load(project_manifest(project_dir, profiles_dir), project_dir)


def warehouse_of(args: argparse.Namespace):
    """The project's warehouse, read through dbt's adapter while planning (none for a bare
    --manifest)."""
    if getattr(args, "manifest", None):
        return None
    from rescue_defs.project import configured_target
    from rescue_defs.warehouse_reader import WarehouseTarget

    project_dir, profiles_dir = project_folders(args)
    return WarehouseTarget(
        str(project_dir), str(profiles_dir) if profiles_dir else None, configured_target()
    )


def plan_request(args: argparse.Namespace):
    from rescue_defs.planning.plan import PlanRequest
    from rescue_defs.project import business_today

    if args.full_refresh_models:
        full_refresh = tuple(args.full_refresh_models.split())
    elif args.full_refresh is not None:
        full_refresh = args.full_refresh
    else:
        full_refresh = None
    window = None
    if args.changed_to and not args.changed_from:
        raise CliError("--changed-to needs --changed-from")
    if args.changed_from:
        window = (args.changed_from, args.changed_to or args.today or business_today())
        if window[1] < window[0]:
            raise CliError(f"--changed-to {window[1]} is before --changed-from {window[0]}")
    return PlanRequest(
        select=args.select,
        exclude=args.exclude or "",
        full_refresh=full_refresh,
        layered=args.layered,
        separate_runs=args.separate_runs,
        reason=args.reason,
        changed_window=window,
        today=args.today or business_today(),
    )


def open_instance():
    import dagster as dg

    from rescue_defs.project import DEFAULT_DATA_DIR

    # the same instance `./dev demo` serves
    os.environ.setdefault("DAGSTER_HOME", str(DEFAULT_DATA_DIR / "dagster_home"))
    home = Path(os.environ["DAGSTER_HOME"])
    try:
        home.mkdir(parents=True, exist_ok=True)
        return dg.DagsterInstance.get()
    except OSError as e:  # not writable, a file in the way, a full disk
        raise CliError(f"DAGSTER_HOME {home} cannot be used: {e.strerror or e}") from None


def previous_manifest(args: argparse.Namespace, manifest):
    """The --state manifest, refused when it belongs to another dbt project."""
    from rescue_defs.planning.manifest import DbtManifest

    if not args.state:
        return None
    previous = DbtManifest.load(args.state)
    if previous.project_name != manifest.project_name:
        raise CliError(
            f"--state {args.state} is a manifest of project {previous.project_name!r}, not "
            f"{manifest.project_name!r}: every model would look new"
        )
    return previous
