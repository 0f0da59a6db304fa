"""dagster-dbt's DbtProjectComponent with rescue added: a team on components changes one line
of its `defs.yaml` (`type: rescue_defs.component.RescueDbtProjectComponent`), every attribute
(project, translation, select, cli_args, ...) keeps its meaning."""

import dagster as dg
from dagster_dbt import DbtProjectComponent

from rescue_defs.api import with_rescue


class RescueDbtProjectComponent(DbtProjectComponent):
    """A dbt project as assets (dagster-dbt's DbtProjectComponent), with rescue: row-count and
    max-date checks on its models, and rescue's jobs, sensors, checks and report."""

    def build_defs_from_state(self, context: dg.ComponentLoadContext, state_path) -> dg.Definitions:
        defs = super().build_defs_from_state(context, state_path)
        # the schedules of the rest of the project are not this component's to see: a merge
        # or plan does not wait for them (with_rescue(schedules=...) in Python does)
        return with_rescue(defs, project=self._project_manager.get_project(state_path))
