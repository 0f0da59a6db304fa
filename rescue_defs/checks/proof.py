"""The proof a rescue ends with: its incremental models equal a from-scratch build.

Counts and dates cannot see a wrong value (a January revenue row off by ten returns passes
both). After a rescue's stages, in the run of its last steps (or a `rescue_step_job` run of the
proof's checks alone when it proves again), the rescue's incremental models are rebuilt
with `--full-refresh` in a scratch schema of the same warehouse, over the same upstream tables
(checks/scratch.py), and compares each with the rescued table row for row through the dbt
adapter (checks/equality.py): any warehouse dbt reaches. Build-time columns are left out and
named (checks/build_time.py). The verdict is the asset check `equals_a_from_scratch_build`;
a model that differs is rebuilt with `--full-refresh` by the rescue itself, then proven again.

A model that the proving run itself rebuilt with `--full-refresh` is its own from-scratch build:
building it a second time in the scratch schema could only repeat that build (or differ by a
clock). Its verdict passes by construction, says so, and rests on the run's own materialization
of it, marked full refresh; the scratch build leaves it out. The heaviest rescues (a full
refresh after a `unique_key` change) then build once, not twice.
"""

from collections.abc import Iterable, Mapping
from typing import Any

from rescue_defs import settings as configured

PROOF_CHECK = "equals_a_from_scratch_build"
# one model's comparison and its stored verdict (bench/README.md: 22 ms a model at 100 models,
# 36 ms at 1,000, on SQLite storage beside a scratch build)
COMPARE_SECONDS = 0.04
BY_CONSTRUCTION = "built from scratch"  # a verdict's metadata status, beside "equal", "differs"


def rebuilt_from_scratch(
    nodes: Mapping[str, Mapping[str, Any]], refreshed: Iterable[str]
) -> set[str]:
    """Of the models built in a `--full-refresh` dbt invocation, those dbt rebuilt from scratch.
    A model configured `full_refresh: false` ignores the flag and runs incrementally: its proof
    still compares. (`full_refresh: true` rebuilds it on every run, flag or not.)"""
    found = set()
    for uid in refreshed:
        node = nodes.get(uid)
        if node is not None and (node.get("config") or {}).get("full_refresh") is not False:
            found.add(uid)
    return found


def proof_settings() -> dict[str, Any]:
    """{"on", "max_seconds", "why_off"}: RESCUE_PROOF=on|off (default on, for any project and
    any adapter: the proof runs through dbt), RESCUE_PROOF_MAX_SECONDS (default 600). A bad
    value raises settings.SettingError."""
    on = configured.get("RESCUE_PROOF")
    max_seconds = configured.get("RESCUE_PROOF_MAX_SECONDS")
    return {
        "on": on,
        "max_seconds": max_seconds,
        "why_off": "" if on else "turned off (RESCUE_PROOF=off)",
    }


def proof_record(plan, settings: Mapping[str, Any], sandbox: bool) -> dict[str, Any] | None:
    """What the rescue will prove, decided when it is registered (None: no incremental model)."""
    models = sorted(plan.advice)  # the plan's incremental models
    if not models:
        return None
    expected = sum(plan.scratch_seconds[m] for m in models)
    record: dict[str, Any] = {"models": models, "expected_seconds": round(expected, 1)}
    # what the proof would build: not the models the rescue rebuilds from scratch itself
    # (`expected_seconds`, the run's time limit, still counts them: a run other than the one
    # that rebuilt them would compare them)
    to_build = sum(plan.scratch_seconds[m] for m in models if m not in plan.full_refresh)
    if sandbox:
        return {**record, "status": "skipped", "reason": "a sandbox rescue leaves prod as it was"}
    if not settings["on"]:
        return {**record, "status": "skipped", "reason": settings["why_off"]}
    if to_build > settings["max_seconds"]:
        return {
            **record,
            "status": "skipped",
            "reason": f"a from-scratch build is expected to take ~{to_build:.0f} s, over the "
            f"limit of {settings['max_seconds']:.0f} s (RESCUE_PROOF_MAX_SECONDS)",
        }
    return {**record, "status": "pending", "attempt": 0}


def _added(plan, proof: Mapping[str, Any] | None) -> tuple[float, int]:
    """(seconds, models compared) a proof adds to its rescue: nothing unless it will run."""
    if not proof or proof.get("status") != "pending":
        return 0.0, 0
    compared = [m for m in proof["models"] if m not in plan.full_refresh]
    build = sum(plan.scratch_seconds.get(m, 0.0) for m in compared)
    return build + COMPARE_SECONDS * len(compared), len(compared)


def expected_seconds(plan, proof: Mapping[str, Any] | None) -> float:
    """The rescue's launch to end: its plan's, and the proof its last run ends with."""
    return round(plan.total_seconds + _added(plan, proof)[0], 1)


def proof_line(plan, proof: Mapping[str, Any] | None) -> str:
    """What the proof adds, as `rescue launch` says it after the plan."""
    if not proof:
        return "proof: none (no incremental model)"
    if proof.get("status") != "pending":
        return f"proof: skipped ({proof.get('reason', '')})"
    seconds, compared = _added(plan, proof)
    total = expected_seconds(plan, proof)
    own = len(proof["models"]) - compared
    if not compared:
        return (
            f"proof: the rescue rebuilds its {own} incremental model(s) from scratch itself, "
            "and that build is their proof: nothing more to build"
        )
    mine = f"; {own} rebuilt from scratch by the rescue itself" if own else ""
    when = f"{total:.0f} s" if total < 90 else f"{total / 60:.1f} min"
    return (
        f"proof: {compared} incremental model(s) built from scratch and compared{mine}: "
        f"~{seconds:.0f} s more, ~{when} launch to end with it"
    )
