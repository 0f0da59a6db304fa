"""Which asset key each dbt node has: the one the translator of the project's dbt assets gives
it (the user's: key prefixes, custom keys and groups), never rebuilt by hand.

The code location says which translator a dbt project folder uses (`use`) and publishes the
keys it made on the instance (`publish`); the `rescue` CLI, which never loads the code location,
reads them there (`use_published`), so its runs select the same assets the UI shows.
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg

# the kinds of nodes dagster-dbt makes assets of, and whose keys a test's check hangs on
KEYED = ("model", "seed", "snapshot", "source")

_TRANSLATORS: dict[str, Any] = {}  # project folder -> the translator of its dbt assets
# outside the code location (the CLI): project folder -> what the code location published
_PUBLISHED: dict[str, dict[str, dg.AssetKey]] = {}
_PUBLISHED_CHECKS: dict[str, dict[str, list | None]] = {}


def _folder(project_dir: str | Path | None) -> str:
    return str(Path(project_dir).resolve()) if project_dir else ""


def use(project_dir: str | Path, translator: Any) -> None:
    """The dbt assets of the project in `project_dir` are built with `translator` (a
    DagsterDbtTranslator)."""
    _TRANSLATORS[_folder(project_dir)] = translator


def translator_for(project_dir: str | Path | None):
    """The translator of the project's dbt assets: the one the code location uses, else one
    knowing the keys it published, else the product's default (translators.py)."""
    found = _TRANSLATORS.get(_folder(project_dir))
    if found is not None:
        return found
    from rescue_defs.assets.translators import DEFAULT_TRANSLATOR, KnownKeys

    published = _PUBLISHED.get(_folder(project_dir))
    return KnownKeys(published) if published else DEFAULT_TRANSLATOR


def model_asset_keys(manifest) -> dict[str, dg.AssetKey]:
    """unique_id -> asset key of every model; ephemeral models are no assets (dbt compiles
    them into their consumers). Where the code location published every one of them (the
    CLI), no translator is needed, and dagster-dbt is not imported."""
    wanted = [uid for uid in manifest.models if uid not in manifest.ephemeral]
    folder = _folder(manifest.project_dir)
    published = _PUBLISHED.get(folder) if folder not in _TRANSLATORS else None
    if published is not None and all(uid in published for uid in wanted):
        return {uid: published[uid] for uid in wanted}
    translator = translator_for(manifest.project_dir)
    return {uid: translator.get_asset_key(manifest.models[uid]) for uid in wanted}


def published_test_checks(manifest) -> dict[str, list | None] | None:
    """test unique_id -> [asset key path, check name] (None: no check) as the code location
    published them, when it did (the CLI)."""
    return _PUBLISHED_CHECKS.get(_folder(manifest.project_dir))


def _published_key(manifest, what: str = "asset_keys") -> str:
    name = manifest.raw.get("metadata", {}).get("project_name") or "project"
    return f"rescue/{what}/{name}"


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


# id(manifest) -> (it, the translator, keys, check keys)
_MADE: dict[int, tuple[object, object, str, str]] = {}


def publish(instance: dg.DagsterInstance, manifest) -> None:
    """Record on the instance the key of every node and the check key of every test, as this
    code location makes them (one read per call; made once per manifest)."""
    translator = translator_for(manifest.project_dir)
    made = _MADE.get(id(manifest))
    if made is None or made[0] is not manifest or made[1] is not translator:
        from rescue_defs.assets.translators import test_check_keys

        made = _MADE[id(manifest)] = (
            manifest,
            translator,
            json.dumps(_node_keys(manifest), sort_keys=True),
            json.dumps(test_check_keys(manifest, translator), sort_keys=True),
        )
    from rescue_defs.published import publish as publish_value

    publish_value(instance, _published_key(manifest), made[2])
    publish_value(instance, _published_key(manifest, "asset_check_keys"), made[3])


def use_definitions(
    project_dir: str | Path,
    definitions: Sequence[dg.AssetsDefinition],
    fallback: Any,
) -> None:
    """The project's nodes are keyed as the team's dbt assets definitions key them (a project
    split over several `@dbt_assets`, each with its own translator): by their specs."""
    from dagster_dbt.asset_utils import DAGSTER_DBT_UNIQUE_ID_METADATA_KEY

    from rescue_defs.assets.translators import KnownKeys

    known = {
        spec.metadata[DAGSTER_DBT_UNIQUE_ID_METADATA_KEY]: spec.key
        for definition in definitions
        for spec in definition.specs
        if DAGSTER_DBT_UNIQUE_ID_METADATA_KEY in (spec.metadata or {})
    }
    use(project_dir, KnownKeys(known, fallback))


def use_published(instance: dg.DagsterInstance, manifest) -> None:
    """Outside the code location (the CLI): use the keys it published, if it did."""
    folder = _folder(manifest.project_dir)
    if folder in _TRANSLATORS or not manifest.project_dir:
        return  # this process built the definitions itself
    names = {_published_key(manifest), _published_key(manifest, "asset_check_keys")}
    stored = instance.run_storage.get_cursor_values(names)
    keys = stored.get(_published_key(manifest))
    checks = stored.get(_published_key(manifest, "asset_check_keys"))
    # this instance's, never what another instance of this process published
    _PUBLISHED.pop(folder, None)
    _PUBLISHED_CHECKS.pop(folder, None)
    if keys:
        _PUBLISHED[folder] = {uid: dg.AssetKey(path) for uid, path in json.loads(keys).items()}
    if checks:
        _PUBLISHED_CHECKS[folder] = json.loads(checks)
