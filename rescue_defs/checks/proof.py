"""The proof a rescue ends with: its incremental models equal a from-scratch build.

Counts and dates cannot see a wrong value (a January revenue row off by ten returns passes
both). After a rescue's stages, in the run of its last steps (or a `rescue_proof_job` run when
it proves again), the rescue's incremental models are rebuilt
with `--full-refresh` in a scratch schema of the same warehouse, over the same upstream tables
(checks/scratch.py), and compares each with the rescued table row for row through the dbt
adapter (checks/equality.py): any warehouse dbt reaches. Build-time columns are left out and
named (checks/build_time.py). The verdict is the asset check `equals_a_from_scratch_build`;
a model that differs is rebuilt with `--full-refresh` by the rescue itself, then proven again.
"""

from collections.abc import Mapping
from typing import Any

from rescue_defs import settings as configured

PROOF_CHECK = "equals_a_from_scratch_build"


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
    if sandbox:
        return {**record, "status": "skipped", "reason": "a sandbox rescue leaves prod as it was"}
    if not settings["on"]:
        return {**record, "status": "skipped", "reason": settings["why_off"]}
    if expected > settings["max_seconds"]:
        return {
            **record,
            "status": "skipped",
            "reason": f"a from-scratch build is expected to take ~{expected:.0f} s, over the "
            f"limit of {settings['max_seconds']:.0f} s (RESCUE_PROOF_MAX_SECONDS)",
        }
    return {**record, "status": "pending", "attempt": 0}
