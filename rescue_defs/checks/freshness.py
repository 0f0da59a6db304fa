"""Source freshness, judged as `dbt source freshness` judges it: the age of the source's newest
`loaded_at_field` against the source's own `warn_after` / `error_after`.

Pure: the measurement (max(loaded_at_field) per source) comes from dbt itself in a queued run
(jobs/freshness.py); this module only knows the rules and the verdict.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

FRESHNESS_CHECK = "fresh_within_error_after"
PASS, WARN, ERROR = "pass", "warn", "error"
PERIOD_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class SourceRule:
    unique_id: str
    source_name: str
    name: str
    loaded_at_field: str
    warn_after: float | None
    """Seconds; None: never warns."""
    error_after: float | None
    """Seconds; None: never in error (no outage is ever opened for it)."""

    @property
    def label(self) -> str:
        return f"{self.source_name}.{self.name}"

    @property
    def selector(self) -> str:
        return f"source:{self.source_name}.{self.name}"


def _seconds(threshold: Mapping[str, Any] | None) -> float | None:
    if not threshold or threshold.get("count") is None or not threshold.get("period"):
        return None
    return float(threshold["count"]) * PERIOD_SECONDS[threshold["period"]]


def freshness_rules(manifest: Mapping[str, Any]) -> dict[str, SourceRule]:
    """Sources dbt would judge: a loaded_at field (or query) and at least one threshold."""
    rules = {}
    for uid, source in manifest.get("sources", {}).items():
        config = source.get("config") or {}
        if config.get("enabled") is False:
            continue
        freshness = source.get("freshness") or config.get("freshness") or {}
        field = source.get("loaded_at_field") or config.get("loaded_at_field")
        if not (field or source.get("loaded_at_query") or config.get("loaded_at_query")):
            continue
        warn, error = _seconds(freshness.get("warn_after")), _seconds(freshness.get("error_after"))
        if warn is None and error is None:
            continue
        rules[uid] = SourceRule(
            uid, source["source_name"], source["name"], field or "(loaded_at_query)", warn, error
        )
    return rules


@dataclass(frozen=True)
class Verdict:
    status: str
    age_seconds: float | None
    note: str


def describe_seconds(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 60:.0f} minutes"


def verdict(
    rule: SourceRule, max_loaded_at: datetime | None, now: datetime, error: str = ""
) -> Verdict:
    """`now` and `max_loaded_at` are naive UTC (what dbt reports)."""
    if error or max_loaded_at is None:
        why = error or "the table has no rows"
        status = ERROR if rule.error_after is not None else WARN
        return Verdict(status, None, f"{rule.label} cannot be measured: {why}")
    age = max(0.0, (now - max_loaded_at).total_seconds())
    newest = f"newest {rule.loaded_at_field} {max_loaded_at.isoformat(sep=' ')}"
    if rule.error_after is not None and age > rule.error_after:
        return Verdict(
            ERROR,
            age,
            f"{rule.label} is down: nothing landed for {describe_seconds(age)} ({newest}; "
            f"error_after {describe_seconds(rule.error_after)})",
        )
    if rule.warn_after is not None and age > rule.warn_after:
        return Verdict(
            WARN,
            age,
            f"{rule.label} is late: {describe_seconds(age)} ({newest}; "
            f"warn_after {describe_seconds(rule.warn_after)})",
        )
    return Verdict(PASS, age, f"{rule.label} is fresh: {describe_seconds(age)} old ({newest})")
