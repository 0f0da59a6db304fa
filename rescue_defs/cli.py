"""`rescue`: plan (and later launch and follow) rescues of a dbt project from the terminal."""

import argparse
import json
import os
import sys
from datetime import UTC, date, datetime
from pathlib import Path

EXIT_USAGE = 2


class CliError(Exception):
    """A one-line message for the user; exit code 2."""


def _project_manifest(project_dir: Path, profiles_dir: Path | None) -> Path:
    """The project's manifest, parsed first when missing or older than the project's files."""
    manifest = project_dir / "target" / "manifest.json"
    if not (project_dir / "dbt_project.yml").exists():
        raise CliError(f"no dbt_project.yml in {project_dir}")
    newest = max(
        (
            p.stat().st_mtime
            for p in project_dir.rglob("*")
            if p.suffix in (".sql", ".yml", ".yaml", ".csv", ".py")
            and "target" not in p.parts
            and "dbt_packages" not in p.parts
        ),
        default=0.0,
    )
    if not manifest.exists() or manifest.stat().st_mtime < newest:
        from dbt.cli.main import dbtRunner

        from rescue_defs.project import configure_warehouse_env

        configure_warehouse_env()
        args = ["parse", "--quiet", "--project-dir", str(project_dir)]
        args += ["--profiles-dir", str(profiles_dir or project_dir)]
        result = dbtRunner().invoke(args)
        if not result.success:
            raise CliError(f"dbt parse failed in {project_dir}: {result.exception}")
    return manifest


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def _plan(args: argparse.Namespace) -> int:
    from rescue_defs.planning.manifest import DbtManifest
    from rescue_defs.planning.plan import Planner, PlanRequest
    from rescue_defs.planning.render import render_text

    if args.manifest:
        manifest = DbtManifest.load(args.manifest)
    else:
        from rescue_defs.project import BUNDLED_PROJECT_DIR

        project_dir = Path(
            args.project_dir or os.environ.get("RESCUE_DBT_PROJECT_DIR") or BUNDLED_PROJECT_DIR
        ).resolve()
        profiles = args.profiles_dir or os.environ.get("RESCUE_DBT_PROFILES_DIR")
        path = _project_manifest(project_dir, Path(profiles).resolve() if profiles else None)
        manifest = DbtManifest.load(path, project_dir)
    previous = DbtManifest.load(args.state) if args.state else None

    if args.full_refresh_models:
        full_refresh = tuple(args.full_refresh_models.split())
    elif args.full_refresh is not None:
        full_refresh = args.full_refresh
    else:
        full_refresh = None
    window = None
    if args.changed_from:
        window = (args.changed_from, args.changed_to or args.today or datetime.now(UTC).date())
    request = PlanRequest(
        select=args.select,
        exclude=args.exclude or "",
        full_refresh=full_refresh,
        layered=args.layered,
        reason=args.reason,
        changed_window=window,
        today=args.today or datetime.now(UTC).date(),
    )
    plan = Planner(manifest).plan(request, previous=previous)
    print(json.dumps(plan.to_dict(), indent=2) if args.json else render_text(plan))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rescue", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    plan = sub.add_parser("plan", help="resolve a dbt selection and print the rescue plan")
    plan.add_argument("--select", "-s", required=True, help='dbt selection, e.g. "int_a+ +mart_b+"')
    plan.add_argument("--exclude", help="dbt selection to leave out")
    fr = plan.add_mutually_exclusive_group()
    fr.add_argument(
        "--full-refresh",
        dest="full_refresh",
        action="store_true",
        default=None,
        help="full refresh every incremental model in scope (default: as advised)",
    )
    fr.add_argument(
        "--no-full-refresh",
        dest="full_refresh",
        action="store_false",
        help="no full refresh, whatever the advice",
    )
    fr.add_argument("--full-refresh-models", help="full refresh exactly these models")
    src = plan.add_mutually_exclusive_group()
    src.add_argument(
        "--project-dir", help="dbt project (default: RESCUE_DBT_PROJECT_DIR or the bundled one)"
    )
    src.add_argument("--manifest", help="plan over a bare manifest.json (no project needed)")
    plan.add_argument("--profiles-dir")
    plan.add_argument("--state", help="the previous manifest.json, to advise on code changes")
    lay = plan.add_mutually_exclusive_group()
    lay.add_argument(
        "--layered",
        dest="layered",
        action="store_true",
        default=None,
        help="always split upstream -> target -> downstream",
    )
    lay.add_argument("--single-stage", dest="layered", action="store_false")
    plan.add_argument("--changed-from", type=_day, help="first day whose data changed")
    plan.add_argument("--changed-to", type=_day, help="last day whose data changed")
    plan.add_argument("--today", type=_day, help="business date to plan for (default: today)")
    plan.add_argument("--reason", default="manual", help="why (audit trail)")
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    plan.set_defaults(func=_plan)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from rescue_defs.planning.selection import SelectionError

    try:
        return args.func(args)
    except (CliError, SelectionError, FileNotFoundError) as e:
        print(f"rescue: error: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
