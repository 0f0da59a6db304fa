"""Where the proof builds from scratch: a scratch schema of the same warehouse, through dbt.

The proof needs the rescued incremental models built again with `--full-refresh`, over the
same upstream tables, somewhere that is not prod, on any adapter. dbt does that itself:

- a **generated profile**: the user's profile with the configured target only, under the same
  target name (models that branch on `target.name` build as in prod), its `schema` suffixed
  with `SUFFIX`. dbt's own `generate_schema_name` then puts every model in a scratch schema
  (`analytics` -> `analytics__rescue_proof`, `analytics_stg` -> `analytics__rescue_proof_stg`);
- `--defer --state <prod manifest> --favor-state`: every model not selected (the upstream
  tables and views) resolves to its prod relation, so the scratch build reads what prod reads.

A project whose `generate_schema_name` ignores the target's schema (a common "custom schema as
is in prod" macro) would write prod's own tables: `collisions` compares the scratch parse with
prod's before anything is built, and the proof refuses, saying why. Sources must resolve to
the same relations in both, else the scratch build would read something else.
"""

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from rescue_defs.checks.rules import default_database, relation_of

SUFFIX = "__rescue_proof"


class ScratchError(RuntimeError):
    """The scratch build cannot be set up safely; the message says why."""


def _profile_name(project_dir: Path, profile: str | None) -> str:
    if profile:
        return profile
    config = yaml.safe_load((project_dir / "dbt_project.yml").read_text()) or {}
    name = config.get("profile")
    if not isinstance(name, str) or not name:
        raise ScratchError(f"{project_dir / 'dbt_project.yml'} names no profile")
    return name


def scratch_profile(
    project_dir: Path, profiles_dir: Path, profile: str | None, target: str | None
) -> dict[str, Any]:
    """{profile: {target, outputs: {target: output with the schema suffixed}}}, unrendered:
    dbt renders env_var() and the rest in the proof's own process, as for prod."""
    name = _profile_name(project_dir, profile)
    path = profiles_dir / "profiles.yml"
    try:
        profiles = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ScratchError(f"cannot read {path}: {e}") from None
    entry = profiles.get(name)
    if not isinstance(entry, Mapping) or not isinstance(entry.get("outputs"), Mapping):
        raise ScratchError(f"{path} has no profile {name!r} with outputs")
    chosen = target or entry.get("target")
    if not isinstance(chosen, str) or "{{" in chosen:
        # a templated default target: which output prod is cannot be known without rendering
        raise ScratchError(f"profile {name!r}: set RESCUE_DBT_TARGET (its default is {chosen!r})")
    output = entry["outputs"].get(chosen)
    if not isinstance(output, Mapping):
        raise ScratchError(f"profile {name!r} has no target {chosen!r}")
    output = dict(output)
    schema = output.get("schema")
    if schema is None and output.get("type") == "duckdb":
        schema = "main"
    if not isinstance(schema, str) or not schema:
        raise ScratchError(f"profile {name!r}, target {chosen!r}: no schema to derive from")
    output["schema"] = schema + SUFFIX
    return {name: {"target": chosen, "outputs": {chosen: output}}}


def write_scratch_profiles(
    project_dir: Path, profiles_dir: Path, profile: str | None, target: str | None
) -> Path:
    """The generated profiles folder. Its path depends on its text only, so dbt's saved parse
    state for it (rescue_defs.assets.dbt_cli) is found again by the next proof."""
    text = yaml.safe_dump(scratch_profile(project_dir, profiles_dir, profile, target))
    digest = hashlib.sha256(f"{project_dir}\n{text}".encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"rescue-proof-profile-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "profiles.yml"
    if not path.exists() or path.read_text() != text:
        partial = folder / f".profiles.{os.getpid()}.yml"
        partial.write_text(text)
        partial.replace(path)  # atomic: a concurrent proof never reads half a file
    return folder


def _folded(relation: tuple[str, ...], own: str | None = None) -> tuple[str, ...]:
    """Case-folded, and without the database when it is the target's own (`own`): a DuckDB
    catalog is named after the file a manifest was parsed with, not a different place."""
    database, *rest = relation
    database = "" if own is not None and database == own else database
    return tuple(part.lower() for part in (database, *rest))


def _own(manifest: Mapping[str, Any]) -> str | None:
    return default_database(manifest)


def relations(manifest: Mapping[str, Any]) -> dict[str, tuple[str, str, str]]:
    """unique_id -> (database, schema, identifier) of every relation dbt builds."""
    found = {}
    for uid, node in manifest.get("nodes", {}).items():
        if node.get("resource_type") in ("model", "seed", "snapshot"):
            if (node.get("config") or {}).get("materialized") == "ephemeral":
                continue
            found[uid] = relation_of(node)
    return found


def collisions(
    prod: Mapping[str, Any], scratch: Mapping[str, Any], models: Iterable[str]
) -> list[str]:
    """Why building `models` from the scratch parse would touch what prod reads or writes:
    a model that would land on a prod relation, a source read from elsewhere than in prod."""
    problems = []
    a, b = _own(prod), _own(scratch)
    prod_relations = {_folded(r, a) for r in relations(prod).values()}
    mine = relations(scratch)
    for uid in models:
        where = mine.get(uid)
        if where is None:
            problems.append(f"{uid} is not in the scratch parse")
        elif _folded(where, b) in prod_relations:
            problems.append(
                f"{uid.split('.')[-1]} would be built in {'.'.join(where[1:])}, a prod relation "
                "(the project's generate_schema_name ignores the target schema)"
            )
    for uid, source in prod.get("sources", {}).items():
        other = scratch.get("sources", {}).get(uid)
        if other is not None and _folded(relation_of(other), b) != _folded(relation_of(source), a):
            problems.append(
                f"source {source['source_name']}.{source['name']} resolves to "
                f"{'.'.join(relation_of(other)[1:])} under the scratch schema, not "
                f"{'.'.join(relation_of(source)[1:])} (it is derived from the target)"
            )
    return problems


def scratch_schemas(
    prod: Mapping[str, Any], scratch: Mapping[str, Any], models: Iterable[str]
) -> list[tuple[str, str]]:
    """(database, schema) of the scratch relations that no prod relation or source uses:
    what the proof may drop when it is done."""
    a, b = _own(prod), _own(scratch)
    used = {_folded(r[:2], a) for r in relations(prod).values()}
    used |= {_folded(relation_of(s)[:2], a) for s in prod.get("sources", {}).values()}
    mine = relations(scratch)
    out: list[tuple[str, str]] = []
    for uid in models:
        if uid not in mine:
            continue
        database, schema, _ = mine[uid]
        if _folded((database, schema), b) in used or SUFFIX not in schema.lower():
            continue
        if (database, schema) not in out:
            out.append((database, schema))
    return out


def state_manifest(prod: Mapping[str, Any], scratch: Mapping[str, Any], folder: Path) -> Path:
    """prod's manifest as dbt's --state for --defer, its own catalog renamed to the scratch
    parse's: a DuckDB catalog is named after the file parsed with, which need not be the file
    the proof connects to (the same database name on any other adapter: nothing changes)."""
    old, new = default_database(prod), default_database(scratch)
    state = json.loads(json.dumps(prod))
    if old and new and old != new:
        for node in state["nodes"].values():
            if node.get("database") == old:
                node["database"] = new
                if node.get("relation_name"):
                    node["relation_name"] = node["relation_name"].replace(
                        f'"{old}".', f'"{new}".', 1
                    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(state))
    return folder
