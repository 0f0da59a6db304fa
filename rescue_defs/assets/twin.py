"""What the rescuable twin of a team's dbt assets takes from theirs: the dbt resource it uses,
its config, and its own function, called unchanged for every run that is not a rescue's."""

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject

from rescue_defs import compat


class TeamAssetsError(ValueError):
    """The team's dbt assets cannot be made rescuable; the message says why, in one line."""


def project_of(team: dg.AssetsDefinition) -> DbtProject:
    """The DbtProject the team's `@dbt_assets(project=...)` names."""
    from dagster_dbt.asset_utils import get_manifest_and_translator_from_dbt_assets

    found = get_manifest_and_translator_from_dbt_assets([team])[2]
    if found is None:
        raise TeamAssetsError(
            f"dbt assets {team.op.name!r} were defined without project=: pass "
            "@dbt_assets(project=...) or with_rescue(..., project=DbtProject(...))"
        )
    return found


def dbt_resource_key(team: dg.AssetsDefinition) -> str | None:
    """The resource key the team's function gets its DbtCliResource under: the parameter
    annotated DbtCliResource, else the one named `dbt`; None when it takes none (dagster-dbt's
    DbtProjectComponent makes its own from the project: so does the rescue)."""
    found = compat.resource_params(team.op)
    typed = [name for name, annotation in found.items() if _is_dbt_resource(annotation)]
    if len(typed) == 1:
        return typed[0]
    if "dbt" in team.op.required_resource_keys:
        return "dbt"
    if len(typed) > 1:
        raise TeamAssetsError(
            f"dbt assets {team.op.name!r} take several DbtCliResource parameters "
            f"({', '.join(typed)}): name the one that builds `dbt`"
        )
    return None


def _is_dbt_resource(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, DbtCliResource)


def config_fields(team: dg.AssetsDefinition) -> Mapping[str, Any] | None:
    """The team's op config schema as multi_asset takes it (a mapping of fields)."""
    schema = team.op.config_schema
    if schema is None or schema.config_type is None:
        return None
    fields = getattr(schema.config_type, "fields", None)
    return dict(fields) if fields else None


def compute_of(team: dg.AssetsDefinition) -> Callable[[dg.AssetExecutionContext], Iterator]:
    """The team's function, called with the twin's context (same resources, same config) and
    its outputs renamed to the twin's output names."""
    compute = compat.op_compute(team.op)
    keys_by_name = dict(team.keys_by_output_name)

    def call(context: dg.AssetExecutionContext) -> Iterator:
        names = {key: name for name, key in context.assets_def.keys_by_output_name.items()}
        for event in compute(context):
            if isinstance(event, dg.Output) and event.output_name in keys_by_name:
                name = names[keys_by_name[event.output_name]]
                if name != event.output_name:
                    event = dg.Output(
                        event.value,
                        output_name=name,
                        metadata=event.metadata,
                        data_version=event.data_version,
                        tags=event.tags,
                    )
            yield event

    return call
