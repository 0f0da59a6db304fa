"""How a step reports a check's verdict: one protocol for validation and the proof."""

from collections.abc import Collection

import dagster as dg


def emitted(
    evaluation: dg.AssetCheckEvaluation, planned: Collection[dg.AssetCheckKey]
) -> dg.AssetCheckEvaluation | dg.AssetCheckResult:
    """A check the run planned is an output of the step: an AssetCheckResult (else Dagster
    logs it as "did not yield expected outputs"). One a rescue's run did not plan is its
    evaluation event alone: the same record for the UI and the check's history, one stored
    event instead of three (planned, step output, evaluation); at ~13 ms an event on SQLite,
    most of what checks cost a large rescue."""
    key = dg.AssetCheckKey(evaluation.asset_key, evaluation.check_name)
    if key not in planned:
        return evaluation
    return dg.AssetCheckResult(
        asset_key=evaluation.asset_key,
        check_name=evaluation.check_name,
        passed=evaluation.passed,
        severity=evaluation.severity,
        metadata=evaluation.metadata,
        description=evaluation.description,
    )
