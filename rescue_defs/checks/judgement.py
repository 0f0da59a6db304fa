"""The verdicts: what one rebuilt model's row count and max date say against its rule
(rules.py), with the reason in words. Pure Python, no Dagster, no warehouse."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from rescue_defs.checks.rules import ModelRule, Settings, Verdict


def row_count_verdict(rule: ModelRule, count: int, previous: int | None) -> Verdict:
    meta: dict[str, Any] = {"row_count": count}
    if previous is not None:
        meta["previous_row_count"] = previous
        meta["change"] = round((count - previous) / previous, 4) if previous else None
    problems = []
    if count == 0 and not rule.allow_empty:
        problems.append("the table is empty")
    if rule.min_rows is not None and count < rule.min_rows:
        problems.append(f"{count} rows is below min_rows {rule.min_rows}")
    if rule.max_rows is not None and count > rule.max_rows:
        problems.append(f"{count} rows is above max_rows {rule.max_rows}")
    if previous and count < previous * (1 - rule.max_drop):
        drop = (previous - count) / previous
        problems.append(
            f"{count} rows is {drop:.0%} fewer than {previous} at the last passing check "
            f"(allowed drop {rule.max_drop:.0%})"
        )
    if problems:
        return Verdict(False, f"{rule.name}: " + "; ".join(problems), meta, "failed")
    against = f" (last passing check: {previous})" if previous is not None else ""
    return Verdict(True, f"{count} row(s){against}", meta, "passed")


def business_date(value: Any, settings: Settings) -> date:
    """A date, timestamp (naive: read in the warehouse timezone) or ISO string as a calendar
    day in the business timezone. Raises TypeError for anything else."""
    business = ZoneInfo(settings.business_timezone)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=ZoneInfo(settings.warehouse_timezone))
        return value.astimezone(business).date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            if len(value.strip()) == 10:  # a plain day, not a midnight to shift
                return date.fromisoformat(value.strip())
            return business_date(datetime.fromisoformat(value), settings)
        except ValueError:
            pass
    raise TypeError(f"{type(value).__name__} value {value!r} is not a date")


@dataclass(frozen=True)
class Expected:
    day: date
    basis: str  # words for the report: where the expected date comes from
    sources: tuple[tuple[str, date], ...] = ()  # each upstream source's latest load day

    def stale_sources(self) -> list[str]:
        return [
            f"{name} last loaded {day.isoformat()}" for name, day in self.sources if day < self.day
        ]


def expected_date(
    rule: ModelRule,
    settings: Settings,
    source_latest: Mapping[str, Any],
    now: datetime | None = None,
) -> Expected:
    """The day the model should reach: its upstream sources' latest load, else today."""
    if rule.expected_date == "sources":
        days = []
        for source in rule.sources:
            value = source_latest.get(source.unique_id)
            if value is None:
                continue
            try:
                days.append((business_date(value, settings), source.name))
            except TypeError:
                continue
        if days:
            day, name = max(days)
            loads = tuple(sorted((n, d) for d, n in days))
            return Expected(day, f"latest load of upstream source {name}", loads)
    today = settings.today_in_business_tz(now)
    where = "injected" if settings.today is not None else "clock"
    return Expected(today, f"today in {settings.business_timezone} ({where})")


def max_date_verdict(
    rule: ModelRule, count: int, value: Any, expected: Expected | None, settings: Settings
) -> Verdict:
    if not rule.date_column:
        if rule.date_column_from == "off":  # the model's owner said no date applies
            return Verdict(True, f"off: {rule.date_note}", {}, "off")
        return Verdict(False, f"not measured: {rule.date_note}", {}, "not configured")
    column = rule.date_column
    meta: dict[str, Any] = {"date_column": column, "date_column_from": rule.date_column_from}
    if expected is not None:
        meta.update(expected_date=expected.day.isoformat(), expected_from=expected.basis)
    if count == 0:
        return Verdict(False, f"{rule.name}: no rows, so no max({column})", meta, "failed")
    if value is None:
        return Verdict(
            False,
            f"{rule.name}: max({column}) is NULL: all {count} rows have no date",
            meta,
            "failed",
        )
    try:
        day = business_date(value, settings)
    except TypeError as e:
        return Verdict(False, f"{rule.name}: {column}: {e}", meta, "failed")
    meta["max_date"] = day.isoformat()
    if isinstance(value, datetime):
        meta["max_value"] = value.isoformat()
    assert expected is not None
    lag = (expected.day - day).days
    meta.update(lag_days=lag, max_lag_days=rule.max_lag_days)
    shown = f"max({column}) = {day.isoformat()}"
    if isinstance(value, datetime):
        local = (
            value if value.tzinfo else value.replace(tzinfo=ZoneInfo(settings.warehouse_timezone))
        )
        local = local.astimezone(ZoneInfo(settings.business_timezone))
        shown += f" ({local.isoformat()} in {settings.business_timezone})"
    if expected.sources:
        meta["upstream_loads"] = {name: day.isoformat() for name, day in expected.sources}
    if lag > rule.max_lag_days:
        stale = expected.stale_sources()
        return Verdict(
            False,
            f"{rule.name}: {shown} is {lag} days behind {expected.day.isoformat()} "
            f"({expected.basis}); allowed lag {rule.max_lag_days}"
            + (f"; behind: {', '.join(stale)}" if stale else ""),
            meta,
            "failed",
        )
    return Verdict(
        True, f"{shown}, {max(lag, 0)} day(s) behind {expected.day.isoformat()}", meta, "passed"
    )


def inferred_date_verdict(
    rule: ModelRule,
    count: int,
    latest: Mapping[str, Any],
    previous: str | None,
    settings: Settings,
) -> Verdict:
    """A model without `meta.rescue.date_column`: of the columns that look like dates, the one
    with the latest value is measured (a column NULL in every row is never chosen), and it must
    not fall behind the last validated build's. Nothing is compared with the sources' loads:
    what the column means (a due date, a sprint day, a sync time) is not known here."""
    names = ", ".join(latest) or "none"
    meta: dict[str, Any] = {"date_column_from": "inferred", "candidates": list(latest)}
    if count == 0:
        return Verdict(False, f"{rule.name}: no rows, so no max date", meta, "failed")
    days = {}
    for column, value in latest.items():
        if value is None:
            continue
        try:
            days[column] = business_date(value, settings)
        except TypeError:
            continue
    if not latest:
        return Verdict(
            False,
            "not measured: no column looks like a date; set meta.rescue.date_column (null: "
            "no date applies)",
            meta,
            "not configured",
        )
    if not days:
        return Verdict(
            False,
            f"not measured: the columns that look like dates ({names}) are NULL in all {count} "
            "rows; set meta.rescue.date_column",
            meta,
            "not configured",
        )
    column, day = max(days.items(), key=lambda item: (item[1], item[0]))
    meta.update(date_column=column, max_date=day.isoformat())
    how = f"max({column}) = {day.isoformat()} (inferred from {names})"
    if previous:
        meta["previous_max_date"] = previous
        if day < date.fromisoformat(previous):
            return Verdict(
                False,
                f"{rule.name}: {how} is before {previous}, the last validated build's: rows were "
                "lost",
                meta,
                "failed",
            )
        return Verdict(
            True,
            f"{how}, not behind the last validated build ({previous}); set "
            "meta.rescue.date_column to compare with the sources' loads",
            meta,
            "passed",
        )
    return Verdict(
        True,
        f"{how}; the first measurement: later builds must not fall behind it",
        meta,
        "passed",
    )
