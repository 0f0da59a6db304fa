"""The `rescue` command line's grammar: its commands, flags and how each value is refused (one
line, exit code 2, nothing done)."""

import argparse
import math
import re
from collections.abc import Callable, Mapping
from datetime import date

EXIT_USAGE = 2


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


def parser(handlers: Mapping[str, Callable], description: str = "") -> argparse.ArgumentParser:
    """The `rescue` command line; `handlers`: the function each command runs (by name)."""
    p = _Parser(prog="rescue", description=description)
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
    plan.set_defaults(func=handlers["plan"])

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
    launch.set_defaults(func=handlers["launch"])

    status = sub.add_parser(
        "status", help="stages, runs, what was rebuilt, what is left (no id: recent rescues)"
    )
    status.add_argument("rescue_id", nargs="?", type=_rescue_id)
    _project_args(status)
    status.set_defaults(func=handlers["status"])

    resume = sub.add_parser("resume", help="rebuild planned minus materialized, same flags")
    resume.add_argument("rescue_id", type=_rescue_id)
    _project_args(resume)
    resume.add_argument(
        "--force", action="store_true", help="resume a dry run whose plan was blocked"
    )
    resume.set_defaults(func=handlers["resume"])

    cancel = sub.add_parser(
        "cancel", help="stop a rescue: terminate its runs in flight, report what is left"
    )
    cancel.add_argument("rescue_id", type=_rescue_id)
    _project_args(cancel)
    cancel.set_defaults(func=handlers["cancel"])

    prepare = sub.add_parser(
        "prepare",
        help="parse the project for the configured target where the product reads it (at build "
        "time in a deployment, like dagster-dbt's prepare-and-package)",
    )
    prepare.add_argument("--project-dir")
    prepare.add_argument("--profiles-dir")
    prepare.set_defaults(func=handlers["prepare"])
    return p
