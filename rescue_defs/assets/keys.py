"""Which asset key each dbt node has: the one the translator of the project's dbt assets gives
it (the user's: key prefixes, custom keys and groups), never rebuilt by hand.

The code location says which translator a dbt project folder uses (`use`) and publishes the
keys it made on the instance (`publish`); the `rescue` CLI, which never loads the code location,
reads them there (`use_published`), so its runs select the same assets the UI shows.
"""

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings
from dagster_dbt.asset_utils import DAGSTER_DBT_UNIQUE_ID_METADATA_KEY

# the kinds of nodes dagster-dbt makes assets of, and whose keys a test's check hangs on
KEYED = ("model", "seed", "snapshot", "source")


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

_TRANSLATORS: dict[str, DagsterDbtTranslator] = {}


def _folder(project_dir: str | Path | None) -> str:
    return str(Path(project_dir).resolve()) if project_dir else ""


def use(project_dir: str | Path, translator: DagsterDbtTranslator) -> None:
    """The dbt assets of the project in `project_dir` are built with `translator`."""
    _TRANSLATORS[_folder(project_dir)] = translator


def translator_for(project_dir: str | Path | None) -> DagsterDbtTranslator:
    return _TRANSLATORS.get(_folder(project_dir), DEFAULT_TRANSLATOR)


def model_asset_keys(manifest) -> dict[str, dg.AssetKey]:
    """unique_id -> asset key of every model; ephemeral models are no assets (dbt compiles
    them into their consumers)."""
    translator = translator_for(manifest.project_dir)
    return {
        uid: translator.get_asset_key(node)
        for uid, node in manifest.models.items()
        if uid not in manifest.ephemeral
    }


def _published_key(manifest) -> str:
    name = manifest.raw.get("metadata", {}).get("project_name") or "project"
    return f"rescue/asset_keys/{name}"


def _node_keys(manifest) -> dict[str, list[str]]:
    translator = translator_for(manifest.project_dir)
    found = {
        uid: translator.get_asset_key(node).path
        for uid, node in manifest.nodes.items()
        if node.get("resource_type") in KEYED and uid not in manifest.ephemeral
    }
    for uid, source in manifest.raw.get("sources", {}).items():
        found[uid] = translator.get_asset_key(source).path
    return found


_MADE: dict[int, tuple[object, str]] = {}  # id(manifest) -> (manifest, its keys as JSON)


def publish(instance: dg.DagsterInstance, manifest) -> None:
    """Record on the instance the key of every node, as this code location makes them (one
    read per call; the keys are made once per manifest)."""
    made = _MADE.get(id(manifest))
    if made is None or made[0] is not manifest:
        made = _MADE[id(manifest)] = (manifest, json.dumps(_node_keys(manifest), sort_keys=True))
    from rescue_defs.published import publish as publish_value

    publish_value(instance, _published_key(manifest), made[1])


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


def use_definitions(
    project_dir: str | Path,
    definitions: Sequence[dg.AssetsDefinition],
    fallback: DagsterDbtTranslator,
) -> None:
    """The project's nodes are keyed as the team's dbt assets definitions key them (a project
    split over several `@dbt_assets`, each with its own translator): by their specs."""
    known = {
        spec.metadata[DAGSTER_DBT_UNIQUE_ID_METADATA_KEY]: spec.key
        for definition in definitions
        for spec in definition.specs
        if DAGSTER_DBT_UNIQUE_ID_METADATA_KEY in (spec.metadata or {})
    }
    use(project_dir, KnownKeys(known, fallback))


def use_published(instance: dg.DagsterInstance, manifest) -> None:
    """Outside the code location (the CLI): use the keys it published, if it did."""
    if _folder(manifest.project_dir) in _TRANSLATORS:
        return  # this process built the definitions itself
    key = _published_key(manifest)
    stored = instance.run_storage.get_cursor_values({key}).get(key)
    if stored and manifest.project_dir:
        known = {uid: dg.AssetKey(path) for uid, path in json.loads(stored).items()}
        use(manifest.project_dir, KnownKeys(known))
