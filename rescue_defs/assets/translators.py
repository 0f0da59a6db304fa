"""The translators that key dbt nodes as Dagster assets (dagster-dbt's DagsterDbtTranslator):
the product's default, and one that knows the keys a team's definitions gave. Imported only
where a translator is used (the code location; the CLI when no keys were published), since
dagster-dbt imports much of dbt."""

import re
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings


class RescueDbtTranslator(DagsterDbtTranslator):
    """Groups models by their top folder (staging / intermediate / marts)."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        if dbt_resource_props["resource_type"] in ("model", "seed", "snapshot") and len(fqn) > 2:
            return re.sub(r"\W", "_", fqn[1])
        return super().get_group_name(dbt_resource_props)


# dbt's source tests become checks of the source assets (raw/*): otherwise every run that
# builds models runs them anyway and dagster-dbt logs a warning for each
DEFAULT_TRANSLATOR = RescueDbtTranslator(
    settings=DagsterDbtTranslatorSettings(enable_source_tests_as_checks=True)
)


class KnownKeys(DagsterDbtTranslator):
    """Keys known per node unique_id (published by the code location, or given by the specs of
    the team's dbt assets definitions); any other node is keyed by `fallback`."""

    def __init__(
        self,
        known: Mapping[str, dg.AssetKey],
        fallback: DagsterDbtTranslator = DEFAULT_TRANSLATOR,
    ):
        super().__init__(settings=fallback.settings)
        self.known = known
        self.fallback = fallback

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        key = self.known.get(dbt_resource_props.get("unique_id", ""))
        return key if key is not None else self.fallback.get_asset_key(dbt_resource_props)


def test_check_keys(manifest, translator: DagsterDbtTranslator) -> dict[str, list | None]:
    """test unique_id -> [asset key path, check name] of the check dagster-dbt makes of it
    (None: no check), for every test of the manifest dagster-dbt can key (a test of a node
    the manifest does not hold, e.g. a disabled package's model, is left out: whoever needs
    it asks dagster-dbt, as before)."""
    from dagster_dbt.asset_utils import get_asset_check_key_for_test

    found: dict[str, list | None] = {}
    for uid, node in manifest.nodes.items():
        if node.get("resource_type") != "test":
            continue
        try:
            key = get_asset_check_key_for_test(manifest.raw, translator, uid, project=None)
        except Exception:
            continue
        found[uid] = [key.asset_key.path, key.name] if key is not None else None
    return found
