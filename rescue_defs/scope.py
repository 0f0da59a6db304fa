"""Several dbt projects in one code location: what is each project's own.

Each project gets its own rescue_job, sensors (rescue, merge, source outage) and freshness
checks and job, named after it (`<project>_rescue_sensor`), and each sensor advances only the
rescues of its project (the record's `project`). What is shared stays one: the rescue step
and proof jobs (a run selects one project's assets), the report and incident assets, the
records and their partition sets, cancel_rescue_job and rescue_report_sensor. With one
project every name stays as it was, so an existing deployment keeps its sensors' cursors.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Scope:
    project: str = ""
    """The dbt project's name when the location holds several; empty when it holds one."""
    primary: bool = True
    """Owns the records written before records named their project (the first project)."""

    def named(self, base: str) -> str:
        return f"{self.project}_{base}" if self.project else base

    def owns(self, record: Mapping[str, Any]) -> bool:
        if not self.project:
            return True
        return record.get("project") == self.project or (self.primary and not record.get("project"))


ONE_PROJECT = Scope()
