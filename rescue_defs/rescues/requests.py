"""The run requests of a rescue: one step, or several steps stage after stage in one run."""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dagster as dg

from rescue_defs.rescues.proving import TAG_PROOF
from rescue_defs.rescues.store import (
    RESCUE_RUN,
    STEP_JOB,
    TAG_ATTEMPT,
    TAG_GROUP,
    TAG_ID,
    TAG_REASON,
    TAG_SANDBOX,
    TAG_STAGE,
    TAG_STEP,
    TAG_STEPS,
)


def in_check_order(checks: Iterable[dg.AssetCheckKey]) -> list[dg.AssetCheckKey]:
    """A run's planned checks in one order, whoever requests it (rescue_sensor or a launch
    through the webserver): by asset, then check name."""
    return sorted(checks, key=lambda c: (c.asset_key.to_user_string(), c.name))


def step_request(
    record: Mapping[str, Any],
    step: Mapping[str, Any],
    keys: Mapping[str, dg.AssetKey],
    checks_of=None,
    prove: bool = False,
) -> dg.RunRequest:
    """The run of one step. `checks_of(asset keys) -> check keys` lists the asset checks of the
    step's models, to plan only the dbt tests among them (None: plan every check)."""
    return steps_request(record, [step], keys, checks_of, prove)


def steps_request(
    record: Mapping[str, Any],
    steps: Sequence[Mapping[str, Any]],
    keys: Mapping[str, dg.AssetKey],
    checks_of=None,
    prove: bool = False,
) -> dg.RunRequest:
    """One run of consecutive steps (in dependency order): each step a stage of the run's
    dbt_models step, built and validated before the next starts, so one run worker, one code
    load and one queue wait serve the whole rescue when nothing else writes its models.

    `prove`: the run builds the rescue's last steps; once they are built and validated, the
    same step proves the rescue's incremental models (no proof run of its own to wait for)."""
    from rescue_defs.checks.coverage import VALIDATION_CHECKS

    first, n = steps[0], len(record["steps"])
    remaining = [m for step in steps for m in step["remaining"]]
    full_refresh = [m for step in steps for m in step["full_refresh"] if m in step["remaining"]]
    selection = [keys[m] for m in remaining]
    # the models' dbt tests are planned as usual; the validation checks run anyway in rescue
    # runs (see checks/validation.py) without a stored "planned" event each
    check_keys = (
        [c for c in checks_of(selection) if c.name not in VALIDATION_CHECKS]
        if checks_of is not None
        else None
    )
    numbers = f"{first['index'] + 1}" + (f"-{steps[-1]['index'] + 1}" if len(steps) > 1 else "")
    stage_names = list(dict.fromkeys(step["stage"] for step in steps))
    config: dict[str, Any] = {
        "full_refresh": full_refresh,
        "sandbox": bool(record.get("sandbox")),
        "reason": f"rescue {record['id']} ({record['reason']}), "
        f"step(s) {numbers}/{n} [{', '.join(stage_names)}]",
    }
    tags = {
        TAG_ID: record["id"],
        TAG_STAGE: "+".join(stage_names),
        TAG_GROUP: str(first["index"]),
        TAG_STEP: str(first["index"]),
        TAG_ATTEMPT: str(max(step["attempt"] for step in steps)),
    }
    if len(steps) > 1:
        tags[TAG_STEPS] = ",".join(f"{step['index']}:{step['attempt']}" for step in steps)
    # consecutive steps of one stage (lineage groups) share one dbt invocation: dbt orders
    # them and skips what depends on a failed test; stages are gated by validation in between
    stages: list[tuple[str, list[int], list[str]]] = []
    for step in steps:
        if stages and stages[-1][0] == step["stage"]:
            stages[-1][1].append(step["index"] + 1)
            stages[-1][2].extend(step["remaining"])
        else:
            stages.append((step["stage"], [step["index"] + 1], list(step["remaining"])))
    if len(stages) > 1:
        config["stages"] = [models for _, _, models in stages]
        config["stage_names"] = [
            f"{stage} (step {numbers[0]}" + (f"-{numbers[-1]})" if len(numbers) > 1 else ")")
            for stage, numbers, _ in stages
        ]
    indices = "-".join(str(step["index"]) for step in (steps[0], steps[-1])[: len(steps)])
    attempts = ".".join(str(step["attempt"]) for step in steps)
    limit = sum(record.get("max_runtime") or default_max_runtime(record, step) for step in steps)
    if prove:
        proof = record["proof"]
        config["proof_of"] = record["id"]
        # named, not planned: like validation's, each verdict is then one stored event
        config["proof_models"] = list(proof["models"])
        tags[TAG_PROOF] = str(proof.get("attempt", 0))
        limit += int(max(MIN_MAX_RUNTIME, RUNTIME_FACTOR * proof.get("expected_seconds", 0)))
    return dg.RunRequest(
        run_key=f"{record['id']}:{indices}:{attempts}",
        job_name=STEP_JOB,
        asset_selection=selection,
        asset_check_keys=check_keys,
        # a resource's config, not the op's: the op keeps the team's own config schema
        run_config={"resources": {RESCUE_RUN: {"config": config}}},
        tags={
            **tags,
            TAG_REASON: "resume" if any(step["attempt"] for step in steps) else record["reason"],
            **record.get("tags", {}),
            **({TAG_SANDBOX: "true"} if record.get("sandbox") else {}),
            # run monitoring fails a run that outlives this (a dead run worker leaves its run
            # STARTED for good, holding the queue); `rescue resume` continues from there
            "dagster/max_runtime": str(limit),
        },
    )


MIN_MAX_RUNTIME = 900
RUNTIME_FACTOR = 6


def default_max_runtime(record: Mapping[str, Any], step: Mapping[str, Any]) -> int:
    """Six times the step's estimate, at least 15 minutes: far from a slow run, near enough
    that a dead one does not hold the queue through the night."""
    groups = record.get("plan", {}).get("groups", [])
    expected = next(
        (g.get("expected_seconds", 0) for g in groups if g.get("index") == step["index"]), 0
    )
    return int(max(MIN_MAX_RUNTIME, RUNTIME_FACTOR * float(expected or 0)))
