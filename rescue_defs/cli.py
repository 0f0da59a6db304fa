"""`rescue`: plan (and later launch and follow) rescues of a dbt project from the terminal."""

import argparse
import json
import math
import os
import re
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import quote

EXIT_USAGE = 2


class CliError(Exception):
    """A one-line message for the user; exit code 2."""


def _project_manifest(project_dir: Path, profiles_dir: Path | None) -> Path:
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


def _day(value: str) -> date:
    from rescue_defs.settings import FIRST_DAY, LAST_DAY, in_range

    try:
        return in_range(date.fromisoformat(value))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a date YYYY-MM-DD from {FIRST_DAY} to {LAST_DAY}: {_shown(value)}"
        ) from None


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and 0 < seconds <= 7 * 24 * 3600):
        raise argparse.ArgumentTypeError(
            f"not a number of seconds over 0, at most a week: {_shown(value)}"
        )
    return seconds


def _whole_seconds(value: str) -> int:
    if not re.fullmatch(r"\d{1,7}", value.strip()) or int(value) <= 0:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds over 0: {_shown(value)}")
    return int(value)


# what rescue ids are made of (lifecycle.new_rescue_id, the sensors' outage-/merge- ids)
RESCUE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+-]{0,199}")


def _rescue_id(value: str) -> str:
    if not RESCUE_ID.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"not a rescue id (letters, digits, _.:+-, at most 200): {_shown(value)}; "
            "`rescue status` lists the recent ones"
        )
    return value


def _reason(value: str) -> str:
    from rescue_defs.settings import reason_problem

    problem = reason_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(f"{problem}: {_shown(value)}")
    return value.strip()


def _address(value: str) -> str:
    from rescue_defs.settings import SETTINGS

    try:
        return SETTINGS["RESCUE_UI_URL"].parse(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an http(s) address such as http://127.0.0.1:3000: {_shown(value)}"
        ) from None


def _shown(value: str) -> str:
    """A bad value as the refusal echoes it: a pasted wall of text is named by its start."""
    return repr(value) if len(value) <= 80 else f"{value[:80]!r}... ({len(value)} characters)"


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (the usage is one `--help` away), exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Once(argparse.Action):
    """A flag given twice would silently replace the first value: refuse it."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest, None) is not None:
            raise argparse.ArgumentError(
                self, f'given twice: put every term in one {option_string} "a b"'
            )
        setattr(namespace, self.dest, values)


def _where(args: argparse.Namespace) -> tuple[Path, Path | None]:
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


def _keys(instance, manifest) -> dict:
    """unique_id -> asset key, as the code location names them (it publishes its keys on the
    instance: a team's own translator, key prefixes included)."""
    from rescue_defs.assets import keys

    keys.use_published(instance, manifest)
    return keys.model_asset_keys(manifest)


def _manifest(args: argparse.Namespace):
    from rescue_defs.planning.manifest import DbtManifest

    if getattr(args, "manifest", None):
        return DbtManifest.load(args.manifest)
    project_dir, profiles_dir = _where(args)
    return DbtManifest.load(_project_manifest(project_dir, profiles_dir), project_dir)


def _warehouse(args: argparse.Namespace):
    """The project's warehouse, read through dbt's adapter while planning (none for a bare
    --manifest)."""
    if getattr(args, "manifest", None):
        return None
    from rescue_defs.project import configured_target
    from rescue_defs.warehouse_reader import WarehouseTarget

    project_dir, profiles_dir = _where(args)
    return WarehouseTarget(
        str(project_dir), str(profiles_dir) if profiles_dir else None, configured_target()
    )


def _request(args: argparse.Namespace):
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


def _instance():
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


def _previous(args: argparse.Namespace, manifest):
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


def _launch(args: argparse.Namespace) -> int:
    from rescue_defs import rescues
    from rescue_defs.checks.proof import proof_line, proof_settings
    from rescue_defs.planning.plan import Planner
    from rescue_defs.planning.render import render_text
    from rescue_defs.published import published_schedules
    from rescue_defs.rescues import kickoff

    proof = proof_settings()  # a bad RESCUE_PROOF* refuses before anything is planned
    manifest = _manifest(args)
    previous = _previous(args, manifest)
    instance = _instance()
    keys = _keys(instance, manifest)
    now = datetime.now(UTC)
    plan = rescues.plan_for(
        Planner(manifest),
        instance,
        _request(args),
        keys,
        previous=previous,
        # the code location's scheduled pipeline, as its rescue_sensor published it
        schedules=rescues.next_ticks(published_schedules(instance, manifest.project_name), now),
        warehouse=_warehouse(args),
    )
    print(render_text(plan))
    try:
        record = rescues.register(
            instance,
            plan,
            keys,
            force=args.force,
            dry_run=args.dry_run,
            sandbox=args.sandbox,
            max_runtime=args.max_runtime,
            start_now=args.now,
            reserve=kickoff.BY_CLI,
            proof=proof,
        )
    except rescues.RescueError as e:
        raise CliError(str(e)) from None
    print(proof_line(plan, record.get("proof")))
    rescue_id = record["id"]
    print(f"\nrescue {rescue_id}: {record['status']}")
    ui = _ui_url(args, instance)
    if args.dry_run:  # its plan is on its report partition
        print(f"report: {report_url(ui, rescue_id)}")
        return 0
    print(f"runs: {ui}/runs?q%5B0%5D=tag%3Arescue%2Fid%3D{rescue_id}")
    print(f"report: {report_url(ui, rescue_id)}")
    return _start_and_follow(args, instance, rescue_id, keys, manifest, ui)


def report_url(ui: str, rescue_id: str) -> str:
    """The rescue's partition of rescue_report in the UI (without `view=partitions` the asset
    page ignores the partition and shows the latest one)."""
    return f"{ui}/assets/rescue_report?view=partitions&partition={quote(rescue_id)}"


def _start_and_follow(args, instance, rescue_id: str, keys, manifest, ui: str) -> int:
    said = _start(instance, rescue_id, keys, manifest, ui)
    print(said)
    if not args.wait:
        return 0
    # the webserver took the first run: it takes the next ones too (no wait for a tick)
    following = said.startswith("launched")
    return _follow(
        instance,
        rescue_id,
        keys,
        args.wait_timeout,
        (lambda: _start(instance, rescue_id, keys, manifest, ui)) if following else None,
    )


def _start(instance, rescue_id: str, keys, manifest, ui: str) -> str:
    """Submit the rescue's next run(s) through the UI's webserver now (no wait for
    rescue_sensor's next tick); whatever it does not start, the sensor does. What happened."""
    from rescue_defs.rescues.kickoff import launch_next_runs

    said = launch_next_runs(instance, rescue_id, keys, manifest, ui)
    return said or "rescue_sensor (running under `./dev demo`) launches the runs in order."


def _ui_url(args: argparse.Namespace, instance) -> str:
    """--ui, else RESCUE_UI_URL, else the address the deployment recorded on the instance."""
    from rescue_defs.rescues.kickoff import ui_url

    return ui_url(instance, args.ui)


# how often `--wait` looks: a rescue's end is noticed within this, not at a sensor tick
POLL_SECONDS = 0.5
REPEAT_SECONDS = 30
RUNNING_FOR = re.compile(r"running for \d+ s")


DAEMON_SILENT_SECONDS = 60


def daemon_warning(instance) -> str:
    """A line when no Dagster daemon has beaten lately: queued runs and rescue_sensor's ticks
    then wait for one, and `--wait` would wait silently."""
    import time

    beats = instance.get_daemon_heartbeats()
    newest = max((b.timestamp for b in beats.values()), default=None)
    if newest is not None and time.time() - newest <= DAEMON_SILENT_SECONDS:
        return ""
    seen = "never" if newest is None else f"not in the last {DAEMON_SILENT_SECONDS} s"
    return (
        f"no Dagster daemon seen on this instance ({seen}): queued runs start and rescue_sensor "
        "ticks only while one runs (`./dev demo`, or `dagster-daemon run`); waiting anyway"
    )


def _follow(instance, rescue_id: str, keys, timeout: float, start=None) -> int:
    """Print the rescue's progress until it ends. `start()`: when one of its runs ended and
    the rescue goes on, start what comes next (the next run, the proof) without waiting for
    rescue_sensor's tick; returns what it did."""
    import time

    from rescue_defs import rescues
    from rescue_defs.console_script import resume_collecting

    resume_collecting()  # following may take an hour: collect what each poll leaves
    deadline = time.monotonic() + timeout
    if warning := daemon_warning(instance):
        print(f"rescue: warning: {warning}", file=sys.stderr, flush=True)
    shown: list[str] = []
    said = time.monotonic()
    finished = None
    while True:
        record = rescues.load(instance, rescue_id)
        if record["status"] == rescues.ACTIVE:
            # end the rescue when its last run ends, not at rescue_sensor's next tick (up to
            # 10 s later)
            try:
                settled = rescues.settle(instance, record, keys)
            except rescues.ConcurrentUpdate:
                settled = True  # the sensor settled it meanwhile
            if start is not None and settled is None:
                ended = sum(r.is_finished for r in rescues.step_runs(instance, rescue_id))
                if finished is not None and ended > finished:
                    what = start()
                    if what.startswith("launched"):
                        print(what, flush=True)
                finished = ended
        # the status first, the lines after: when it has ended, the last lines printed say so
        # (read the other way round, a rescue ending in between left "active ... proving" as
        # the last words of a rescue that succeeded)
        status = rescues.load(instance, rescue_id)["status"]
        lines = rescues.status_lines(instance, rescue_id, keys)
        # the elapsed time alone changes every second: say it again every REPEAT_SECONDS
        seen = [RUNNING_FOR.sub("", line) for line in lines]
        if seen != shown or time.monotonic() - said > REPEAT_SECONDS:
            print("\n".join(lines), flush=True)
            shown, said = seen, time.monotonic()
        if status == rescues.SUCCEEDED:
            return 0
        if status in rescues.ENDED:
            return 1
        if time.monotonic() > deadline:
            print(f"rescue {rescue_id} still {status} after {timeout:.0f} s", file=sys.stderr)
            return 1
        time.sleep(POLL_SECONDS)


def _status(args: argparse.Namespace) -> int:
    from rescue_defs import rescues

    instance = _instance()
    if not args.rescue_id:
        return _list(instance)
    try:
        keys = _keys(instance, _manifest(args))
        print("\n".join(rescues.status_lines(instance, args.rescue_id, keys)))
        record = rescues.load(instance, args.rescue_id)
        # the report as the rescue_report partition shows it (without the plan)
        print("\n" + rescues.report_markdown(instance, record, keys, with_plan=False))
    except rescues.RescueError as e:
        raise CliError(str(e)) from None
    return 0


def _list(instance, limit: int = 20) -> int:
    from rescue_defs import rescues

    ids = rescues.rescue_ids(instance)[-limit:]
    if not ids:
        print("no rescue on this Dagster instance yet")
    for record in rescues.store.records(instance, ids):
        print(f"{record['id']}  {record['status']:<9} {record['reason']}: {record['message']}")
    return 0


def _resume(args: argparse.Namespace) -> int:
    from rescue_defs import rescues
    from rescue_defs.rescues import kickoff

    instance = _instance()
    manifest = _manifest(args)
    keys = _keys(instance, manifest)
    try:
        record = rescues.resume(
            instance, args.rescue_id, keys, force=args.force, reserve=kickoff.BY_CLI
        )
    except rescues.RescueError as e:
        raise CliError(str(e)) from None
    print(f"rescue {record['id']}: {record['message']}")
    if record["status"] != rescues.ACTIVE:
        return 0
    return _start_and_follow(args, instance, record["id"], keys, manifest, _ui_url(args, instance))


def _cancel(args: argparse.Namespace) -> int:
    from rescue_defs import rescues

    instance = _instance()
    keys = _keys(instance, _manifest(args))
    try:
        record = rescues.cancel(instance, args.rescue_id, keys)
    except rescues.RescueError as e:
        raise CliError(str(e)) from None
    print(f"rescue {record['id']}: {record['message']}")
    print("\n".join(rescues.status_lines(instance, record["id"], keys)[1:]))
    return 0


def _plan(args: argparse.Namespace) -> int:
    from rescue_defs.planning.plan import Planner
    from rescue_defs.planning.render import render_text

    manifest = _manifest(args)
    previous = _previous(args, manifest)
    request = _request(args)
    plan = Planner(manifest).plan(request, previous=previous)
    print(json.dumps(plan.to_dict(), indent=2) if args.json else render_text(plan))
    return 0


def _selection_args(plan: argparse.ArgumentParser) -> None:
    plan.add_argument(
        "--select", "-s", required=True, action=_Once, help='dbt selection, e.g. "int_a+ +mart_b+"'
    )
    plan.add_argument("--exclude", action=_Once, help="dbt selection to leave out")
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
    plan.add_argument(
        "--separate-runs",
        action="store_true",
        help="one Dagster run per stage or group (default: one run, stage after stage, when "
        "no other run writes the rescue's models)",
    )
    plan.add_argument("--changed-from", type=_day, help="first day whose data changed")
    plan.add_argument("--changed-to", type=_day, help="last day whose data changed")
    plan.add_argument("--today", type=_day, help="business date to plan for (default: today)")
    plan.add_argument("--reason", default="manual", type=_reason, help="why (audit trail)")


def _project_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--project-dir", help="dbt project (default: RESCUE_DBT_PROJECT_DIR or the bundled one)"
    )
    p.add_argument("--profiles-dir")
    p.add_argument("--wait", action="store_true", help="follow the rescue until it ends")
    p.add_argument("--wait-timeout", type=_seconds, default=3600.0, metavar="SECONDS")
    p.add_argument(
        "--ui",
        type=_address,
        help="Dagster UI address, where runs are launched and shown (default: RESCUE_UI_URL, "
        "or the running demo's)",
    )


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="rescue", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    plan = sub.add_parser("plan", help="resolve a dbt selection and print the rescue plan")
    _selection_args(plan)
    src = plan.add_mutually_exclusive_group()
    src.add_argument(
        "--project-dir", help="dbt project (default: RESCUE_DBT_PROJECT_DIR or the bundled one)"
    )
    src.add_argument("--manifest", help="plan over a bare manifest.json (no project needed)")
    plan.add_argument("--profiles-dir")
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    plan.set_defaults(func=_plan)

    launch = sub.add_parser(
        "launch",
        help="plan, record and start a rescue on the Dagster "
        "instance (DAGSTER_HOME, default: the demo's)",
    )
    _selection_args(launch)
    _project_args(launch)
    launch.add_argument(
        "--force", action="store_true", help="launch even when the pre-run checklist blocks"
    )
    launch.add_argument("--dry-run", action="store_true", help="record the plan, launch nothing")
    launch.add_argument(
        "--sandbox",
        action="store_true",
        help="run against the dbt target `sandbox` (a fresh copy of prod), not prod",
    )
    launch.add_argument(
        "--max-runtime",
        type=_whole_seconds,
        metavar="SECONDS",
        help="fail a stage run that takes longer (run monitoring); resume continues",
    )
    launch.add_argument(
        "--now",
        action="store_true",
        help="start at once even if the plan is heavy and it is peak hours (recorded in the "
        "report); otherwise a heavy rescue waits for the low-traffic window",
    )
    launch.set_defaults(func=_launch)

    status = sub.add_parser(
        "status", help="stages, runs, what was rebuilt, what is left (no id: recent rescues)"
    )
    status.add_argument("rescue_id", nargs="?", type=_rescue_id)
    _project_args(status)
    status.set_defaults(func=_status)

    resume = sub.add_parser("resume", help="rebuild planned minus materialized, same flags")
    resume.add_argument("rescue_id", type=_rescue_id)
    _project_args(resume)
    resume.add_argument(
        "--force", action="store_true", help="resume a dry run whose plan was blocked"
    )
    resume.set_defaults(func=_resume)

    cancel = sub.add_parser(
        "cancel", help="stop a rescue: terminate its runs in flight, report what is left"
    )
    cancel.add_argument("rescue_id", type=_rescue_id)
    _project_args(cancel)
    cancel.set_defaults(func=_cancel)

    prepare = sub.add_parser(
        "prepare",
        help="parse the project for the configured target where the product reads it (at build "
        "time in a deployment, like dagster-dbt's prepare-and-package)",
    )
    prepare.add_argument("--project-dir")
    prepare.add_argument("--profiles-dir")
    prepare.set_defaults(func=_prepare)
    return p


def _prepare(args: argparse.Namespace) -> int:
    from rescue_defs import parsing
    from rescue_defs.project import (
        ProjectNotReady,
        configured_target,
        load_dbt_project,
        manifest_is_current,
    )

    where = _warehouse(args)
    try:
        project = load_dbt_project(where.project_dir, where.profiles_dir, where.target)
        if not manifest_is_current(
            project.project_dir, project.profiles_dir, project.manifest_path
        ):
            parsing.parse(project)
    except ProjectNotReady as e:
        raise CliError(str(e)) from None
    except Exception as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise CliError(f"dbt parse failed in {where.project_dir}: {first}") from None
    print(f"manifest for target {configured_target() or 'default'}: {project.manifest_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from rescue_defs.planning.manifest import ManifestError
    from rescue_defs.planning.selection import SelectionError
    from rescue_defs.project import ProjectNotReady
    from rescue_defs.settings import SettingError, check

    try:
        check()  # every RESCUE_* variable, before anything is planned or launched
        return args.func(args)
    except (
        CliError,
        SelectionError,
        ManifestError,
        FileNotFoundError,
        SettingError,
        ProjectNotReady,
    ) as e:  # one line, exit 2
        print(f"rescue: error: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    from rescue_defs.console_script import run

    run()
