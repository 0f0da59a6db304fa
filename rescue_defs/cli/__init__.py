"""`rescue`: plan, launch, follow, resume and cancel rescues of a dbt project from the terminal."""

import argparse
import json
import sys
from datetime import UTC, datetime

from rescue_defs.cli import inputs
from rescue_defs.cli.args import EXIT_USAGE
from rescue_defs.cli.args import parser as args_parser
from rescue_defs.cli.follow import report_url, start_and_follow, ui_address


def _launch(args: argparse.Namespace) -> int:
    from rescue_defs import rescues
    from rescue_defs.checks.proof import proof_line, proof_settings
    from rescue_defs.planning.plan import Planner
    from rescue_defs.planning.render import render_text
    from rescue_defs.published import published_schedules
    from rescue_defs.rescues import kickoff

    proof = proof_settings()  # a bad RESCUE_PROOF* refuses before anything is planned
    manifest = inputs.read_manifest(args)
    previous = inputs.previous_manifest(args, manifest)
    instance = inputs.open_instance()
    keys = inputs.model_keys(instance, manifest)
    now = datetime.now(UTC)
    plan = rescues.plan_for(
        Planner(manifest),
        instance,
        inputs.plan_request(args),
        keys,
        previous=previous,
        # the code location's scheduled pipeline, as its rescue_sensor published it
        schedules=rescues.next_ticks(published_schedules(instance, manifest.project_name), now),
        warehouse=inputs.warehouse_of(args),
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
        raise inputs.CliError(str(e)) from None
    print(proof_line(plan, record.get("proof")))
    rescue_id = record["id"]
    print(f"\nrescue {rescue_id}: {record['status']}")
    ui = ui_address(args, instance)
    if args.dry_run:  # its plan is on its report partition
        print(f"report: {report_url(ui, rescue_id)}")
        return 0
    print(f"runs: {ui}/runs?q%5B0%5D=tag%3Arescue%2Fid%3D{rescue_id}")
    print(f"report: {report_url(ui, rescue_id)}")
    return start_and_follow(args, instance, rescue_id, keys, manifest, ui)


def _status(args: argparse.Namespace) -> int:
    from rescue_defs import rescues

    instance = inputs.open_instance()
    if not args.rescue_id:
        return _list(instance)
    try:
        keys = inputs.model_keys(instance, inputs.read_manifest(args))
        print("\n".join(rescues.status_lines(instance, args.rescue_id, keys)))
        record = rescues.load(instance, args.rescue_id)
        # the report as the rescue_report partition shows it (without the plan)
        print("\n" + rescues.report_markdown(instance, record, keys, with_plan=False))
    except rescues.RescueError as e:
        raise inputs.CliError(str(e)) from None
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

    instance = inputs.open_instance()
    manifest = inputs.read_manifest(args)
    keys = inputs.model_keys(instance, manifest)
    try:
        record = rescues.resume(
            instance, args.rescue_id, keys, force=args.force, reserve=kickoff.BY_CLI
        )
    except rescues.RescueError as e:
        raise inputs.CliError(str(e)) from None
    print(f"rescue {record['id']}: {record['message']}")
    if record["status"] != rescues.ACTIVE:
        return 0
    return start_and_follow(
        args, instance, record["id"], keys, manifest, ui_address(args, instance)
    )


def _cancel(args: argparse.Namespace) -> int:
    from rescue_defs import rescues

    instance = inputs.open_instance()
    keys = inputs.model_keys(instance, inputs.read_manifest(args))
    try:
        record = rescues.cancel(instance, args.rescue_id, keys)
    except rescues.RescueError as e:
        raise inputs.CliError(str(e)) from None
    print(f"rescue {record['id']}: {record['message']}")
    print("\n".join(rescues.status_lines(instance, record["id"], keys)[1:]))
    return 0


def _plan(args: argparse.Namespace) -> int:
    from rescue_defs.planning.plan import Planner
    from rescue_defs.planning.render import render_text

    manifest = inputs.read_manifest(args)
    previous = inputs.previous_manifest(args, manifest)
    request = inputs.plan_request(args)
    plan = Planner(manifest).plan(request, previous=previous)
    print(json.dumps(plan.to_dict(), indent=2) if args.json else render_text(plan))
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from rescue_defs import parsing
    from rescue_defs.project import (
        ProjectNotReady,
        configured_target,
        load_dbt_project,
        manifest_is_current,
    )

    where = inputs.warehouse_of(args)
    try:
        project = load_dbt_project(where.project_dir, where.profiles_dir, where.target)
        if not manifest_is_current(
            project.project_dir, project.profiles_dir, project.manifest_path
        ):
            parsing.parse(project)
    except ProjectNotReady as e:
        raise inputs.CliError(str(e)) from None
    except Exception as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise inputs.CliError(f"dbt parse failed in {where.project_dir}: {first}") from None
    print(f"manifest for target {configured_target() or 'default'}: {project.manifest_path}")
    return 0


def parser():
    return args_parser(
        {
            "plan": _plan,
            "launch": _launch,
            "status": _status,
            "resume": _resume,
            "cancel": _cancel,
            "prepare": _prepare,
        },
        description=__doc__,
    )


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
        inputs.CliError,
        SelectionError,
        ManifestError,
        FileNotFoundError,
        SettingError,
        ProjectNotReady,
    ) as e:  # one line, exit 2
        print(f"rescue: error: {e}", file=sys.stderr)
        return EXIT_USAGE
