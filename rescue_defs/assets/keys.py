"""Which asset key each dbt node has: the one the translator of the project's dbt assets gives
it (the user's: key prefixes, custom keys and groups), never rebuilt by hand.

The code location says which translator a dbt project folder uses (`use`) and publishes the
keys it made on the instance (`publish`); the `rescue` CLI, which never loads the code location,
reads them there (`use_published`), so its runs select the same assets the UI shows.
"""

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings

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


class PublishedTranslator(DagsterDbtTranslator):
    """The keys the code location published; nodes it did not publish (a newer local parse)
    fall back to the default translator."""

    def __init__(self, published: Mapping[str, list[str]]):
        super().__init__(settings=DEFAULT_TRANSLATOR.settings)
        self.published = published

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        path = self.published.get(dbt_resource_props.get("unique_id", ""))
        if path is not None:
            return dg.AssetKey(path)
        return DEFAULT_TRANSLATOR.get_asset_key(dbt_resource_props)


def use_published(instance: dg.DagsterInstance, manifest) -> None:
    """Outside the code location (the CLI): use the keys it published, if it did."""
    if _folder(manifest.project_dir) in _TRANSLATORS:
        return  # this process built the definitions itself
    key = _published_key(manifest)
    stored = instance.run_storage.get_cursor_values({key}).get(key)
    if stored and manifest.project_dir:
        use(manifest.project_dir, PublishedTranslator(json.loads(stored)))
