"""What a merge changed, by dbt's own state comparison (`state:modified` with the previous
manifest as state), then narrowed to changes of logic: a model whose only difference is
comments, whitespace or formatting compiles to the same query and needs no rebuild. Pure of
Dagster."""

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rescue_defs.planning.manifest import DbtManifest

# dbt's state:modified sub-selectors; `body` alone may be a formatting-only change
ASPECTS = ("body", "configs", "relation", "persisted_descriptions", "macros", "contract")
LOGIC_FREE = frozenset({"persisted_descriptions"})


def code_checksum(manifest: Mapping[str, Any]) -> str:
    """Identity of the deployed code: models', macros' and sources' contents and configs (not
    the parse time or invocation id, which change on every parse)."""
    digest = hashlib.sha256()
    for collection in ("nodes", "sources", "macros"):
        for uid in sorted(manifest.get(collection, {})):
            node = manifest[collection][uid]
            if collection == "macros" and node.get("package_name") not in (
                manifest.get("metadata", {}).get("project_name"),
            ):
                continue  # dbt's own and adapters' macros change with dbt, not with a merge
            part = {
                "checksum": (node.get("checksum") or {}).get("checksum")
                or node.get("macro_sql", ""),
                "config": node.get("config"),
                "depends_on": node.get("depends_on"),
                "relation": node.get("relation_name"),
            }
            digest.update(uid.encode())
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def normalized_sql(code: str) -> str:
    """The query with comments (SQL and Jinja) and formatting taken out."""
    import sqlparse

    code = re.sub(r"\{#.*?#\}", " ", code, flags=re.DOTALL)
    code = sqlparse.format(code, strip_comments=True)
    code = re.sub(r"\s+", " ", code).strip()
    return re.sub(r"\s*([,()=;])\s*", r"\1", code)


@dataclass(frozen=True)
class Change:
    changed: dict[str, tuple[str, ...]]
    """Models whose logic changed: unique_id -> dbt's aspects (body, configs, ...)."""
    same_logic: tuple[str, ...]
    """Models dbt calls modified whose query and config are the same (comments, formatting)."""


def _real_manifest(path: Path):
    from dbt.contracts.graph.manifest import Manifest, WritableManifest

    return Manifest.from_writable_manifest(WritableManifest.read_and_check_versions(str(path)))


def changes(current: DbtManifest, current_path: Path, previous_dir: Path) -> Change:
    """`previous_dir` holds the previous manifest.json (dbt's --state folder)."""
    from dbt.contracts.state import PreviousState
    from dbt.graph.cli import parse_union
    from dbt.graph.graph import Graph
    from dbt.graph.selector import NodeSelector

    from rescue_defs.planning.selection import _ensure_dbt_flags

    _ensure_dbt_flags()
    state = PreviousState(previous_dir, Path(current_path).parent, previous_dir)
    selector = NodeSelector(Graph(current.graph), _real_manifest(current_path), state)
    aspects: dict[str, set[str]] = {}
    for aspect in ASPECTS:
        spec = parse_union([f"state:modified.{aspect}"], expect_exists=False)
        selected, _ = selector.select_nodes(spec.components[0], warn_on_no_nodes=False)
        for uid in set(selected) & set(current.models):
            aspects.setdefault(uid, set()).add(aspect)
    previous_nodes = state.manifest.nodes
    for uid in set(current.models) - set(previous_nodes):
        aspects.setdefault(uid, set()).add("new")
    changed, same = {}, []
    for uid, found in sorted(aspects.items()):
        found -= LOGIC_FREE
        if found == {"body"} and uid in previous_nodes:
            before = normalized_sql(previous_nodes[uid].raw_code)
            if before == normalized_sql(current.models[uid].get("raw_code", "")):
                same.append(uid)
                continue
        if found:
            changed[uid] = tuple(sorted(found))
        else:
            same.append(uid)
    return Change(changed, tuple(same))
