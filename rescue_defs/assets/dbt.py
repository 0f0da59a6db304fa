"""dbt models, seeds and snapshots as Dagster assets; dbt tests as asset checks."""

import re
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

# dbt exits 0 on a selection that matches nothing; a rescue must never silently do nothing
WARN_ERROR_ARGS = ["--warn-error-options", '{"error": ["NoNodesForSelectionCriteria"]}']


class RescueDbtTranslator(DagsterDbtTranslator):
    """Groups models by their top folder (staging / intermediate / marts)."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        if dbt_resource_props["resource_type"] in ("model", "seed", "snapshot") and len(fqn) > 2:
            return re.sub(r"\W", "_", fqn[1])
        return super().get_group_name(dbt_resource_props)


def build_dbt_models(project: DbtProject) -> dg.AssetsDefinition:
    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=RescueDbtTranslator(),
        name="dbt_models",
    )
    def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
        """Builds the selected dbt models and runs their tests."""
        yield from dbt.cli(["build", *WARN_ERROR_ARGS], context=context).stream()

    return dbt_models
