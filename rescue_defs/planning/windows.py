"""Peak hours and low-traffic windows (the playbook's "Scheduling Heavy Reloads"): a heavy
rescue does not start at peak; it waits for the next low-traffic window. Pure."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo


def at_peak(now: datetime, timezone: str, peak: tuple[int, int] | None) -> bool:
    """`now` aware. Peak hours are local hours [start, end) on weekdays."""
    if peak is None:
        return False
    local = now.astimezone(ZoneInfo(timezone))
    start, end = peak
    return start <= local.hour < end and local.weekday() < 5


def window_opens(now: datetime, timezone: str, peak: tuple[int, int] | None) -> datetime:
    """When the next low-traffic window opens (aware; `now` itself when outside peak)."""
    if not at_peak(now, timezone, peak):
        return now
    assert peak is not None
    local = now.astimezone(ZoneInfo(timezone))
    opens = local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(hours=peak[1])
    return opens.astimezone(now.tzinfo)
