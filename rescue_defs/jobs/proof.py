"""The proof's step: a rescue's incremental models, rebuilt from scratch in a scratch schema of
the same warehouse and compared with the rescued tables through the dbt adapter (see
checks/proof.py). It is the dbt assets' own step (assets/dbt.py), whose check specs include the
proof's: in the run of a rescue's last steps, right after them, or in a `rescue_step_job` run
that selects the proof's checks alone (a proof that runs again, after `rescue resume`)."""

import contextlib
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject

from rescue_defs.checks.build_time import clock_columns, declared
from rescue_defs.checks.equality import columns_of, compare_relations, verdict_text
from rescue_defs.checks.proof import BY_CONSTRUCTION, PROOF_CHECK
from rescue_defs.checks.rules import default_database
from rescue_defs.checks.validation import release_adapter
from rescue_defs.checks.verdicts import emitted
from rescue_defs.jobs.scratch_build import ProofAhead
from rescue_defs.planning.advice import is_incremental


def proof_specs(manifest, keys, team_keys) -> list[dg.AssetCheckSpec]:
    """The proof's check on each incremental model of the team's dbt assets. Part of their
    dbt assets definition, not an op of its own: a plain run ("Materialize selected") then
    runs the same steps as without rescue; only a proof run (RescueRun.proof_of) yields it."""
    return [
        dg.AssetCheckSpec(
            PROOF_CHECK,
            asset=key,
            description="Equal, row for row, to a from-scratch (--full-refresh) build over "
            "the same upstream tables; run after each rescue that rebuilt this model (one "
            "the rescue itself rebuilt with --full-refresh is that build: passes, saying so).",
        )
        for uid, key in keys.items()
        if key in team_keys and is_incremental(manifest.models[uid])
    ]


def proven_models(context, keys, named: Sequence[str] = ()) -> set[str]:
    """The models whose proof check the step runs: those a rescue's run names (`named`: its
    config's proof_models, checks it does not plan), else those whose check the run selected
    (a proof that runs again, "Execute checks")."""
    if named:
        return {uid for uid in named if uid in keys}
    selected = context.selected_asset_check_keys
    return {uid for uid, key in keys.items() if dg.AssetCheckKey(key, PROOF_CHECK) in selected}


@dataclass(frozen=True)
class FromScratch:
    """The models the proving run itself rebuilt from scratch (checks/proof.py): `planned`, left
    out of the scratch build; `built`, those its --full-refresh invocations materialized."""

    planned: set[str] = field(default_factory=set)
    built: set[str] = field(default_factory=set)


def prove(
    context,
    dbt: DbtCliResource,
    project: DbtProject,
    manifest,
    rules,
    keys,
    rescue_id,
    ahead: ProofAhead | None = None,
    named: Sequence[str] = (),
    scratch: FromScratch | None = None,
):
    """Reads the rescued tables, never writes them: rebuilds the selected incremental models
    with --full-refresh in a scratch schema of the same warehouse (over prod's upstream
    tables, dropped afterwards) and compares each with the rescued table, row for row,
    through the dbt adapter. `ahead`: the scratch parse and build, started while the stages
    built (jobs/scratch_build.py). `named`: the models a rescue's run proves (its checks not
    planned). `scratch`: those this run rebuilt from scratch itself, proven by that."""
    wanted = proven_models(context, keys, named)
    scratch = scratch or FromScratch()
    own = wanted & scratch.planned
    yield from _by_construction(context, manifest, keys, own, scratch.built, rescue_id)
    wanted -= own
    if wanted:
        yield from _prove(context, dbt, project, manifest, rules, keys, wanted, rescue_id, ahead)
    elif ahead is not None:
        ahead.close(manifest)


def _by_construction(context, manifest, keys, own: set[str], built: set[str], rescue_id: str):
    """The verdict of each model this run rebuilt with --full-refresh: its own from-scratch
    build, backed by the run's materialization of it (marked full refresh). One planned so
    that the run has no such materialization is not proven."""
    planned = context.selected_asset_check_keys
    run = context.run_id
    for uid in manifest.topological(own):
        name = manifest.models[uid]["name"]
        if uid not in built:
            why = f"this run was to rebuild {name} with --full-refresh, and did not"
            yield from _refused(context, keys, [uid], rescue_id, why, planned)
            continue
        text = (
            f"{name}: equal to a from-scratch build by construction: this rescue's run "
            f"{run[:8]} rebuilt it with --full-refresh, so it is that build (not built again "
            "to compare)"
        )
        metadata = {"status": BY_CONSTRUCTION, "built_by_run": run, "rescue_id": rescue_id}
        yield _verdict(keys[uid], True, text, metadata, planned)


def _verdict(key: dg.AssetKey, passed: bool, description: str, metadata: dict, planned):
    """One model's proof verdict as the step reports it (checks/verdicts.py)."""
    evaluation = dg.AssetCheckEvaluation(
        asset_key=key,
        check_name=PROOF_CHECK,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata=metadata,
    )
    return emitted(evaluation, planned)


def _refused(context, keys, wanted, rescue_id: str, why: str, planned=None) -> Iterator:
    planned = context.selected_asset_check_keys if planned is None else planned
    for uid in wanted:
        metadata = {"status": "not run", "rescue_id": rescue_id}
        yield _verdict(keys[uid], False, f"not proven: {why}", metadata, planned)


def _prove(context, dbt, project: DbtProject, manifest, rules, keys, wanted, rid, ahead=None):
    ahead = ahead if ahead is not None else ProofAhead(dbt, project)
    try:
        if ahead.profiles is None:  # no scratch profile could be made: ahead.error says why
            yield from _refused(context, keys, wanted, rid, str(ahead.error))
            return
        ordered = manifest.topological(wanted)
        done = ahead.take(manifest, ordered)  # raises what the scratch parse raised
        if done.problems:
            yield from _refused(context, keys, wanted, rid, "; ".join(done.problems))
            return
        try:
            if done.error is not None:
                raise done.error
            built = done.run.get_artifact("manifest.json")
            yield from _compare(
                context, done.run.adapter, manifest, rules, done.scratch, built, keys, ordered, rid
            )
        finally:  # also when the scratch build failed half way: nothing of it stays
            ahead.drop(manifest, done)
    finally:
        ahead.close(manifest)


def _compare(context, adapter, manifest, rules, scratch, built, keys, ordered, rescue_id):
    """Each model's verdict, in order. The queries run in a thread of their own (its own
    connection), up to two models ahead of the step, which stores each verdict meanwhile."""
    kind = adapter.type()
    planned = context.selected_asset_check_keys
    start, verdicts = time.monotonic(), {"equal": 0, "differ": 0, "not compared": 0}
    compared: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    args = (adapter, manifest, rules, scratch, built, ordered, compared, stop)
    worker = threading.Thread(target=_queries, args=args, name="rescue-proof-compare")
    worker.start()
    try:
        for uid in ordered:
            item = compared.get()
            if isinstance(item, BaseException):
                raise item  # not a comparison's failure: the proof cannot go on
            _, rescued, rebuilt, diff, why = item
            node = manifest.models[uid]
            if diff is None:
                verdicts["not compared"] += 1
                why = f"comparison failed: {why}"
                yield from _refused(context, keys, [uid], rescue_id, why, planned)
                continue
            passed, text = verdict_text(node["name"], diff)
            verdicts["equal" if passed else "differ"] += 1
            if not passed:  # the check says each verdict; the log names what needs a look
                context.log.warning(f"rescue {rescue_id}: {text}")
            metadata = {
                "status": "equal" if passed else "differs",
                "rows": diff["rows"],
                "only_rescued": diff["only_rescued"],
                "only_from_scratch": diff["only_from_scratch"],
                "compared_columns": diff["columns"],
                "differing_columns": diff["differing_columns"],
                "build_time_columns": {
                    c: "declared in meta.rescue" if c in declared(node) else "reads the clock"
                    for c in diff["excluded"]
                },
                "missing_columns": diff["missing_columns"],
                "differing_periods": diff["periods"],
                "compared": f"{rescued} against {rebuilt} ({kind}, through dbt)",
                "rescue_id": rescue_id,
            }
            yield _verdict(keys[uid], passed, text, metadata, planned)
        counted = ", ".join(f"{n} {what}" for what, n in verdicts.items() if n)
        context.log.info(
            f"rescue {rescue_id}: compared {len(ordered)} model(s) with their from-scratch "
            f"build in {time.monotonic() - start:.1f} s: {counted}"
        )
    finally:
        stop.set()
        while worker.is_alive():  # unblock a worker waiting to hand over a verdict
            with contextlib.suppress(queue.Empty):
                compared.get(timeout=0.05)
        release_adapter(adapter)


def _queries(adapter, manifest, rules, scratch, built, ordered, compared, stop) -> None:
    """The comparison's queries, model after model, each in a connection of its own released
    before the next: (uid, rescued, rebuilt, diff or None, why) per model on `compared`."""
    prod_db, here_db = default_database(manifest.raw), default_database(scratch)
    kind = adapter.type()
    try:
        for uid in ordered:
            if stop.is_set():
                return
            why = ""
            with adapter.connection_named("rescue_proof"):
                node, mine = manifest.models[uid], scratch["nodes"][uid]
                database = node.get("database")
                rescued = adapter.Relation.create(
                    database=here_db if database == prod_db else database,
                    schema=node["schema"],
                    identifier=node.get("alias") or node["name"],
                )
                rebuilt = adapter.Relation.create(
                    database=mine.get("database"),
                    schema=mine["schema"],
                    identifier=mine.get("alias") or mine["name"],
                )
                columns = columns_of(adapter, rebuilt)
                found = clock_columns(
                    (built["nodes"].get(uid) or {}).get("compiled_code") or "", columns, kind
                )
                build_time = sorted({*declared(node), *found}, key=str.lower)
                rule = rules.get(uid)
                try:
                    diff = compare_relations(
                        adapter,
                        rescued,
                        rebuilt,
                        build_time,
                        rule.date_column if rule else None,
                        scratch_columns=columns,
                    )
                except Exception as e:  # a query that fails proves nothing: say so
                    why = str(e).strip().splitlines()[0][:300] if str(e).strip() else repr(e)
                    diff = None
            _hand_over(compared, stop, (uid, rescued, rebuilt, diff, why))
    except Exception as e:  # the step raises it
        _hand_over(compared, stop, e)


def _hand_over(compared: queue.Queue, stop: threading.Event, item) -> None:
    while not stop.is_set():
        with contextlib.suppress(queue.Full):
            compared.put(item, timeout=0.05)
            return
