"""A dbt manifest as the planner needs it: models, lineage (networkx) and dbt's own selector."""

import functools
import gzip
import json
import tempfile
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import networkx as nx

from rescue_defs.planning.lineage import reached

MODEL = "model"
# node types dbt builds; a rescue rebuilds these
BUILDABLE = ("model", "seed", "snapshot")


class _DictShim(dict):
    """Dot access over manifest dicts: what dbt's selector methods read, without the cost of
    deserialising thousands of nodes into dbt's dataclasses (about 1 s on 2,300 models)."""

    def __getattr__(self, item: str) -> Any:
        value = self.get(item)
        return _DictShim(value) if isinstance(value, dict) else value


class ManifestError(ValueError):
    """A file that is not a dbt manifest; the message says what is wrong with it."""


class DbtManifest:
    """One parsed dbt project: read-only, cheap to query, expensive parts built once."""

    def __init__(self, manifest: Mapping[str, Any], project_dir: Path | None = None):
        self.raw = manifest
        self.project_dir = project_dir
        self.nodes: Mapping[str, Mapping[str, Any]] = manifest["nodes"]
        self.models: dict[str, Mapping[str, Any]] = {
            uid: node
            for uid, node in self.nodes.items()
            if node["resource_type"] == MODEL and node.get("config", {}).get("enabled", True)
        }
        # dbt compiles ephemeral models into their consumers: no table, nothing to run
        self.ephemeral: frozenset[str] = frozenset(
            uid
            for uid, node in self.models.items()
            if node.get("config", {}).get("materialized") == "ephemeral"
        )

    @classmethod
    def load(cls, path: str | Path, project_dir: str | Path | None = None) -> "DbtManifest":
        path = Path(path)
        if path.is_dir():
            raise ManifestError(f"{path} is a folder: give the manifest.json inside target/")
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rt") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"no dbt manifest at {path}") from None
        except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ManifestError(f"{path} is not a readable dbt manifest ({e})") from None
        return cls.read_from(data, path, project_dir)

    @classmethod
    def read_from(
        cls, data: Any, path: str | Path, project_dir: str | Path | None = None
    ) -> "DbtManifest":
        """Over `data`, the JSON of the manifest at `path` parsed already (by dagster-dbt)."""
        if not isinstance(data, dict) or not isinstance(data.get("nodes"), dict):
            raise ManifestError(
                f"{path} is not a dbt manifest (no `nodes`): give target/manifest.json of a "
                "parsed dbt project"
            )
        data.setdefault("child_map", {})
        return cls(data, Path(project_dir).resolve() if project_dir else None)

    @property
    def project_name(self) -> str:
        return self.raw.get("metadata", {}).get("project_name", "")

    def name(self, unique_id: str) -> str:
        return self.nodes[unique_id]["name"] if unique_id in self.nodes else unique_id

    @functools.cached_property
    def graph(self) -> nx.DiGraph:
        """Every node dbt knows (sources, models, tests, ...), edges parent -> child."""
        graph = nx.DiGraph(incoming_graph_data=self.raw["child_map"])
        for collection in (
            "nodes",
            "sources",
            "exposures",
            "metrics",
            "semantic_models",
            "saved_queries",
            "unit_tests",
        ):
            graph.add_nodes_from(self.raw.get(collection, {}))
        return graph

    @functools.cached_property
    def model_graph(self) -> nx.DiGraph:
        """Models that are built (tables, views, incrementals), edges parent -> child; an
        ephemeral model in between becomes an edge from its parents to its children."""
        graph = self.graph.subgraph(self.models).copy()
        for uid in self.ephemeral:
            graph.add_edges_from(
                (p, c) for p in graph.predecessors(uid) for c in graph.successors(uid)
            )
            graph.remove_node(uid)
        return graph

    @functools.cached_property
    def packages(self) -> frozenset[str]:
        """The packages (the project and its dbt deps) that define models."""
        return frozenset(node["fqn"][0] for node in self.models.values())

    @functools.cached_property
    def by_name(self) -> dict[str, list[str]]:
        names: dict[str, list[str]] = {}
        for uid in self.models:
            names.setdefault(self.models[uid]["name"], []).append(uid)
        return names

    def inputs_outside(self, models: Collection[str]) -> frozenset[str]:
        """What dbt builds (models, seeds, snapshots) that `models` read and that is not among
        them: a dbt run of `models` reads these as the warehouse holds them. An ephemeral model
        in between is compiled into its consumers, so what it reads counts instead."""
        inlined = reached(self.graph, models, upward=True, within=self.ephemeral - set(models))
        parents = {p for n in (*models, *inlined) for p in self.graph.predecessors(n)}
        return frozenset(
            p
            for p in parents - set(models) - self.ephemeral
            if self.nodes.get(p, {}).get("resource_type") in BUILDABLE
            and self.nodes[p].get("config", {}).get("enabled", True)
        )

    def sources_read(self, models: Collection[str]) -> frozenset[str]:
        """The sources `models` read (through ephemeral models too): tables landed outside
        dbt that a dbt run of `models` reads as the warehouse holds them."""
        inlined = reached(self.graph, models, upward=True, within=self.ephemeral - set(models))
        sources = self.raw.get("sources", {})
        return frozenset(
            p for n in (*models, *inlined) for p in self.graph.predecessors(n) if p in sources
        )

    def relation(self, unique_id: str) -> tuple[str, str, str]:
        """(database, schema, identifier) of what dbt builds for a node, or of a source's
        table, as the manifest says."""
        source = self.raw.get("sources", {}).get(unique_id)
        if source is not None:
            identifier = source.get("identifier") or source["name"]
            return source.get("database") or "", source["schema"], identifier
        node = self.nodes[unique_id]
        return node.get("database") or "", node["schema"], node.get("alias") or node["name"]

    def topological(self, models: set[str] | frozenset[str]) -> list[str]:
        """Models in an order dbt could build them (parents first), ties by name."""
        sub = self.model_graph.subgraph(models)
        return list(nx.lexicographical_topological_sort(sub, key=self.name))

    def tests_of(self, models: set[str] | frozenset[str]) -> list[str]:
        """dbt tests attached to any of `models`."""
        return sorted(
            child
            for m in models
            for child in self.raw["child_map"].get(m, [])
            if self.nodes.get(child, {}).get("resource_type") == "test"
        )

    @functools.cached_property
    def dbt_manifest(self):
        """dbt's own Manifest object over the shimmed nodes, for dbt's NodeSelector."""
        from dbt.contracts.graph.manifest import Manifest
        from dbt.contracts.graph.nodes import SavedQuery, SemanticModel, UnitTestDefinition

        def shim(collection: str) -> dict:
            return {uid: _DictShim(v) for uid, v in self.raw.get(collection, {}).items()}

        typed = {
            "semantic_models": SemanticModel,
            "saved_queries": SavedQuery,
            "unit_tests": UnitTestDefinition,
        }
        return Manifest(
            nodes=shim("nodes"),
            sources=shim("sources"),
            metrics=shim("metrics"),
            exposures=shim("exposures"),
            selectors=shim("selectors"),
            **{
                key: {uid: cls.from_dict(v) for uid, v in self.raw[key].items()}
                for key, cls in typed.items()
                if self.raw.get(key)
            },
        )

    @functools.cached_property
    def _file_tree(self) -> tempfile.TemporaryDirectory:
        """Empty files where the manifest says the project's files are (built once)."""
        tree = tempfile.TemporaryDirectory(prefix="rescue-manifest-")
        for collection in ("nodes", "sources"):
            for node in self.raw.get(collection, {}).values():
                for rel in (node.get("original_file_path"), _patch_file(node)):
                    if rel:
                        file = Path(tree.name) / rel
                        file.parent.mkdir(parents=True, exist_ok=True)
                        file.touch()
        return tree

    @contextmanager
    def project_root(self) -> Iterator[None]:
        """dbt's `path:` selector globs files under the project root. A bare manifest has no
        files on disk, so it gets a tree of empty ones where the manifest says they are."""
        from dbt_common.events.contextvars import task_contextvars

        root = str(self.project_dir) if self.project_dir is not None else self._file_tree.name
        with task_contextvars(project_root=root):
            yield


def _patch_file(node: Mapping[str, Any]) -> str | None:
    patch = node.get("patch_path")
    return patch.split("://", 1)[1] if patch and "://" in patch else None
