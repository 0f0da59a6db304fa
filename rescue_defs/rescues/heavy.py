"""When a heavy rescue may start: the playbook's "Scheduling Heavy Reloads"."""

from collections.abc import Mapping
from datetime import UTC
from typing import Any

from rescue_defs.planning.windows import at_peak, window_opens


def heavy_wait(record: Mapping[str, Any], heavy_busy: set[str]) -> str:
    """Why a heavy rescue may not start yet ("" when it may): peak hours (the playbook's
    "Scheduling Heavy Reloads"), or another heavy rescue running (heavy ones never overlap)."""
    # project.py builds on the rescues package: imported when first needed
    from rescue_defs.project import business_timezone, clock_now, peak_hours

    names = ", ".join(record["names"].get(m, m) for m in record["heavy"][:3])
    others = sorted(heavy_busy - {record["id"]})
    if others:
        return f"heavy ({names}): waits for heavy rescue {others[0]} to end"
    now, zone, peak = clock_now().replace(tzinfo=UTC), business_timezone(), peak_hours()
    if at_peak(now, zone, peak):
        opens = window_opens(now, zone, peak)
        return (
            f"heavy ({names}) at peak hours: waits for the low-traffic window at "
            f"{opens:%Y-%m-%d %H:%M} {zone} (`rescue launch --now` starts at once)"
        )
    return ""
