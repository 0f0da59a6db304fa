"""Every setting the product reads from the environment, checked in one place.

Each `RESCUE_*` variable the README documents is parsed here and nowhere else. A bad value is
refused with one line naming the variable, the value and what is allowed (`SettingError`),
both when the code location loads (`check()` in the definitions, so `dagster definitions
validate` fails on it) and when the `rescue` CLI starts, before anything is planned or
launched. An empty value means the variable is unset (the default applies); booleans accept
only the documented spellings; numbers are finite and in range. Pure Python, no Dagster.
"""

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ON, OFF = ("on", "true", "yes", "1"), ("off", "false", "no", "0")
# business dates the product plans for: wide enough for any replay, narrow enough that date
# arithmetic (windows, lookbacks, "three days later") never overflows
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(2199, 12, 31)
_SHOWN = 80  # characters of a bad value echoed back


class SettingError(ValueError):
    """A configuration value that is not allowed; the message is one line for the user."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    allowed: str  # what is allowed, as the refusal says it
    parse: Callable[[str], Any]


WEEK = 7 * 24 * 3600


def _seconds_setting(name: str, default: float, minimum: float, maximum: float) -> Setting:
    def parse(raw: str) -> float:
        value = float(raw)
        if not (math.isfinite(value) and minimum <= value <= maximum):
            raise ValueError(raw)
        return value

    low = "over 0" if 0 < minimum < 1 else f"from {minimum:g}"
    return Setting(name, f"{default:g}", f"a number of seconds {low} to {maximum:g}", parse)


def _whole_seconds_setting(name: str, default: int, minimum: int, maximum: int) -> Setting:
    """Whole seconds (a sensor's interval is whole seconds: 2.5 is refused, not rounded)."""

    def parse(raw: str) -> int:
        value = int(raw.strip())
        if not minimum <= value <= maximum:
            raise ValueError(raw)
        return value

    return Setting(
        name, str(default), f"a whole number of seconds from {minimum} to {maximum}", parse
    )


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ON:
        return True
    if value in OFF:
        return False
    raise ValueError(raw)


def _timezone(raw: str) -> str:
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(raw) from e
    return raw


def in_range(day: date) -> date:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(day)
    return day


def _day(raw: str) -> date:
    return in_range(date.fromisoformat(raw))


def _moment(raw: str) -> datetime:
    value = datetime.fromisoformat(raw)
    in_range(value.date())
    # naive UTC, as the product's clock is kept
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _peak_hours(raw: str) -> tuple[int, int] | None:
    value = raw.strip().lower()
    if value in ("none", "off"):
        return None
    match = re.fullmatch(r"(\d{1,2})-(\d{1,2})", value)
    if not match:
        raise ValueError(raw)
    start, end = int(match[1]), int(match[2])
    if not 0 <= start < end <= 24:
        raise ValueError(raw)
    return start, end


def _url(raw: str) -> str:
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", raw.strip()):
        raise ValueError(raw)
    return raw.strip().rstrip("/")


def _name(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", raw.strip()):
        raise ValueError(raw)
    return raw.strip()


def _path(raw: str) -> str:
    if "\x00" in raw or raw != raw.strip():
        raise ValueError(raw)
    return raw


_SETTINGS = [
    Setting("RESCUE_DBT_PROJECT_DIR", "", "a path to a dbt project folder", _path),
    Setting("RESCUE_DBT_PROFILES_DIR", "", "a path to a folder with profiles.yml", _path),
    Setting("RESCUE_DBT_TARGET", "", "a target name of the profile (letters, digits, _.-)", _name),
    Setting("RESCUE_DUCKDB_PATH", "", "a path to a DuckDB file", _path),
    Setting("RESCUE_SANDBOX_DUCKDB_PATH", "", "a path to a DuckDB file", _path),
    Setting("RESCUE_BUSINESS_TIMEZONE", "UTC", "an IANA time zone, e.g. Europe/Berlin", _timezone),
    Setting("RESCUE_WAREHOUSE_TIMEZONE", "UTC", "an IANA time zone, e.g. UTC", _timezone),
    Setting("RESCUE_TODAY", "", f"a date YYYY-MM-DD from {FIRST_DAY} to {LAST_DAY}", _day),
    Setting(
        "RESCUE_NOW", "", f"an ISO time, e.g. 2026-03-05T06:00:00+00:00, before {LAST_DAY}", _moment
    ),
    Setting(
        "RESCUE_PEAK_HOURS",
        "8-18",
        "START-END hours with 0 <= START < END <= 24 (e.g. 8-18), or none",
        _peak_hours,
    ),
    Setting("RESCUE_PROOF", "on", f"one of {', '.join(ON + OFF)}", _boolean),
    _seconds_setting("RESCUE_PROOF_MAX_SECONDS", 600, 0.001, WEEK),
    # from the parse's start: a stale reload within ~10 s (bench B6)
    _seconds_setting("RESCUE_PARSE_WAIT_SECONDS", 4, 0, 3600),
    _seconds_setting("RESCUE_LOCK_WAIT_SECONDS", 60, 0, 24 * 3600),
    _seconds_setting("RESCUE_FRESHNESS_INTERVAL_SECONDS", 3600, 0, WEEK),
    _seconds_setting("RESCUE_RECOVERY_GROUP_SECONDS", 3600, 0, WEEK),
    # how often the daemon evaluates source_outage_sensor and merge_sensor
    _whole_seconds_setting("RESCUE_OUTAGE_SENSOR_SECONDS", 30, 1, 24 * 3600),
    _whole_seconds_setting("RESCUE_MERGE_SENSOR_SECONDS", 60, 1, 24 * 3600),
    # two beats at least (liveness.BEAT_SECONDS 15): a live worker is never called dead
    _seconds_setting("RESCUE_RUN_SILENT_SECONDS", 90, 30, 24 * 3600),
    Setting("RESCUE_UI_URL", "", "an http(s) address, e.g. http://127.0.0.1:3000", _url),
]
SETTINGS = {s.name: s for s in _SETTINGS}


MAX_REASON = 200


def reason_problem(reason: str) -> str:
    """Why a rescue's reason (its audit trail, a run tag) is refused; "" when it is fine."""
    if not reason.strip():
        return "a reason is needed (why this rescue, for the audit trail)"
    if len(reason) > MAX_REASON:
        return f"a reason of at most {MAX_REASON} characters"
    if any(ord(c) < 32 for c in reason):
        return "a reason on one line, without control characters"
    return ""


def raw(name: str) -> str:
    """The variable's value as set, or '' (empty means unset)."""
    return os.environ.get(name, "").strip()


def get(name: str) -> Any:
    """The parsed value of a setting (its default when unset; None for an unset optional one)."""
    setting = SETTINGS[name]
    value = raw(name) or setting.default
    if not value:
        return None
    try:
        return setting.parse(value)
    except (ValueError, TypeError, OverflowError):
        shown = value if len(value) <= _SHOWN else value[:_SHOWN] + f"... ({len(value)} chars)"
        raise SettingError(f"{name}={shown!r} is not allowed: {setting.allowed}") from None


def problems() -> list[str]:
    """One line per setting whose value is not allowed."""
    found = []
    for name in SETTINGS:
        try:
            get(name)
        except SettingError as e:
            found.append(str(e))
    return found


def check() -> None:
    """Refuse a bad configuration: every bad value, in one line."""
    found = problems()
    if found:
        raise SettingError("; ".join(found))
