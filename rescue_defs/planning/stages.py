"""Layered stages (upstream -> target -> downstream) and lineage-affinity groups.

The playbook: "If the lineage is deep and the models are heavy, we split the rescue into
multiple runs, ordered by layer", and for big outages "group models by lineage affinity rather
than triggering a single enormous run".
"""

from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx

from rescue_defs.planning.lineage import reached
from rescue_defs.planning.manifest import DbtManifest

UPSTREAM, TARGET, DOWNSTREAM, ALL = "upstream", "target", "downstream", "all"


@dataclass(frozen=True)
class StageRule:
    """When a selection is split into layered stages. Layering pays when a failure half way
    would otherwise cost the whole lineage: so layer when the selection has an upstream or
    downstream part AND it is deep, big or expensive."""

    min_depth: int = 4
    """Longest chain of selected models (in models) at or above which to layer."""
    min_models: int = 40
    """Selected models at or above which to layer."""
    min_seconds: float = 900.0
    """Expected serial rebuild time at or above which to layer."""


@dataclass(frozen=True)
class Stage:
    name: str
    models: tuple[str, ...]


def depth(graph: nx.DiGraph, models: frozenset[str]) -> int:
    """Models on the longest dependency chain inside the selection."""
    sub = graph.subgraph(models)
    return nx.dag_longest_path_length(sub) + 1 if models else 0


def split_layers(manifest: DbtManifest, models: frozenset[str], targets: frozenset[str]):
    """(upstream, target, downstream) parts of a selection around its target models.

    Upstream: ancestors of a target that descend from none; target: the targets and whatever
    lies between two of them; downstream: descendants of a target that feed none. Each part only
    reads from itself and earlier parts, so the three can run one after the other."""
    graph = manifest.model_graph
    above = reached(graph, targets, upward=True, within=models)
    below = reached(graph, targets, within=models)
    upstream = above - below - targets
    downstream = below - above - targets
    middle = models - upstream - downstream
    return frozenset(upstream), frozenset(middle), frozenset(downstream)


def plan_stages(
    manifest: DbtManifest,
    models: frozenset[str],
    targets: frozenset[str],
    seconds: float,
    rule: StageRule,
    layered: bool | None = None,
) -> tuple[list[Stage], str]:
    """The stages and, in words, why."""
    upstream, middle, downstream = split_layers(manifest, models, targets)
    chain = depth(manifest.model_graph, models)
    if not (upstream or downstream):
        return [Stage(ALL, tuple(manifest.topological(models)))], (
            "one stage: the selection has no upstream or downstream part around its targets"
        )
    reasons = []
    if chain >= rule.min_depth:
        reasons.append(f"lineage {chain} models deep (>= {rule.min_depth})")
    if len(models) >= rule.min_models:
        reasons.append(f"{len(models)} models (>= {rule.min_models})")
    if seconds >= rule.min_seconds:
        reasons.append(f"~{seconds / 60:.0f} min expected (>= {rule.min_seconds / 60:.0f} min)")
    if layered is None:
        layered = bool(reasons)
        why = (
            "layered: " + ", ".join(reasons)
            if layered
            else f"one stage: shallow ({chain} deep, {len(models)} models, ~{seconds:.0f} s)"
        )
    else:
        why = "layered: asked for" if layered else "one stage: asked for"
    if not layered:
        return [Stage(ALL, tuple(manifest.topological(models)))], why
    stages = [
        Stage(name, tuple(manifest.topological(part)))
        for name, part in ((UPSTREAM, upstream), (TARGET, middle), (DOWNSTREAM, downstream))
        if part
    ]
    return stages, why


@dataclass(frozen=True)
class Group:
    models: tuple[str, ...]
    after: tuple[int, ...]
    """Indexes of the groups that build parents of this one's models: run those first."""


def lineage_groups(
    manifest: DbtManifest,
    models: frozenset[str],
    max_models: int = 40,
    cost: Callable[[str], float] | None = None,
    max_seconds: float | None = None,
) -> list[Group]:
    """Partition `models` into groups of shared lineage, each within the bounds.

    Models are keyed by the set of root models (selected models with no selected parent, e.g.
    the failed staging models of an outage) they descend from: models fed by the same roots
    share their lineage exactly. Connected components that fit the bounds stay whole; larger
    ones are split along those keys, and small pieces are merged back into a piece they feed
    or are fed by, as long as the bounds hold and the order between groups stays acyclic."""
    # a graph of its own: walks over a subgraph view filter every edge they pass
    graph = manifest.model_graph.subgraph(models).copy()
    cost = cost or (lambda _: 0.0)

    def fits(piece: set[str]) -> bool:
        if len(piece) > max_models:
            return False
        return max_seconds is None or sum(cost(m) for m in piece) <= max_seconds

    pieces: list[set[str]] = []
    small: list[set[str]] = []
    for component in sorted(nx.weakly_connected_components(graph), key=lambda c: min(c)):
        if fits(component):
            small.append(set(component))
        else:
            pieces.extend(_split(manifest, graph.subgraph(component).copy(), fits))
    # components that fit are packed together (first fit, largest first): they share the
    # lineage that made them affected, and disconnected pieces cannot order each other
    bins: list[set[str]] = []
    for component in sorted(small, key=lambda c: (-len(c), min(c))):
        for b in bins:
            if fits(b | component):
                b |= component
                break
        else:
            bins.append(set(component))
    return _order(graph, pieces + bins, manifest)


def _split(manifest: DbtManifest, graph: nx.DiGraph, fits) -> list[set[str]]:
    roots = [m for m in graph if graph.in_degree(m) == 0]
    index = {r: i for i, r in enumerate(sorted(roots))}
    keys: dict[str, frozenset[int]] = {}
    for m in nx.topological_sort(graph):
        own = {index[m]} if m in index else set()
        keys[m] = frozenset(own.union(*(keys[p] for p in graph.predecessors(m))))
    by_key: dict[frozenset[int], set[str]] = {}
    for m, key in keys.items():
        by_key.setdefault(key, set()).add(m)
    pieces: list[set[str]] = []
    for key in sorted(by_key, key=lambda k: (len(k), sorted(k))):
        members = by_key[key]
        if fits(members):
            pieces.append(members)
        else:
            # one lineage key too big on its own: cut it in topological order
            chunk: set[str] = set()
            for m in manifest.topological(frozenset(members)):
                if chunk and not fits(chunk | {m}):
                    pieces.append(chunk)
                    chunk = set()
                chunk.add(m)
            pieces.append(chunk)
    return _merge_small(graph, pieces, fits)


def _merge_small(graph: nx.DiGraph, pieces: list[set[str]], fits) -> list[set[str]]:
    by_id = dict(enumerate(pieces))
    owner = {m: i for i, p in by_id.items() for m in p}
    q = _quotient(graph, owner)  # acyclic; kept so by each merge (hundreds at 2,000 models)
    merged = True
    while merged:
        merged = False
        for i in sorted(by_id, key=lambda i: len(by_id[i])):
            neighbours = {*q.predecessors(i), *q.successors(i)}
            for j in sorted(neighbours, key=lambda j: (len(by_id[j]), j)):
                candidate = by_id[i] | by_id[j]
                if fits(candidate) and _acyclic_after_merge(q, i, j):
                    by_id[j] = candidate
                    del by_id[i]
                    # j takes over i's edges (none between them: self_loops off)
                    nx.contracted_nodes(q, j, i, self_loops=False, copy=False)
                    merged = True
                    break
            if merged:
                break
    return list(by_id.values())


def _quotient(graph: nx.DiGraph, owner: dict[str, int]) -> nx.DiGraph:
    q = nx.DiGraph()
    q.add_nodes_from(set(owner.values()))
    q.add_edges_from((owner[a], owner[b]) for a, b in graph.edges if owner[a] != owner[b])
    return q


def _acyclic_after_merge(q: nx.DiGraph, i: int, j: int) -> bool:
    """Whether the acyclic order `q` between pieces stays acyclic with i and j as one: it
    does unless a path joins them through a third piece (i -> k -> ... -> j, or back), which
    would then run from the merged piece to itself (a direct edge i -> j merges away)."""
    for a, b in ((i, j), (j, i)):
        for k in q.successors(a):
            if k != b and (b in nx.descendants(q, k)):
                return False
    return True


def _order(graph: nx.DiGraph, pieces: list[set[str]], manifest: DbtManifest) -> list[Group]:
    owner = {m: i for i, p in enumerate(pieces) for m in p}
    q = _quotient(graph, owner)
    order = list(nx.lexicographical_topological_sort(q, key=lambda i: min(pieces[i])))
    position = {piece: n for n, piece in enumerate(order)}
    return [
        Group(
            models=tuple(manifest.topological(frozenset(pieces[i]))),
            after=tuple(sorted(position[p] for p in q.predecessors(i))),
        )
        for i in order
    ]


def group_selection(manifest: DbtManifest, group: tuple[str, ...]) -> str:
    """A compact dbt selection for exactly `group`: `root+ ...` when that covers exactly the
    group, else the models one by one.

    Exact by construction: `+` is computed on the graph dbt's own `+` walks, and each name is
    one only that model answers to. (Re-running it through dbt's selector costs ~50 ms a term
    on a 2,000-model manifest; the tests do that instead, for every group.)"""
    packages = manifest.packages

    def token(m: str) -> str:
        name = manifest.name(m)
        # a name two packages share, or a package's own name, needs the model's full path
        if len(manifest.by_name[name]) == 1 and name not in packages:
            return name
        return ".".join(manifest.models[m]["fqn"])

    wanted = set(group)
    sub = manifest.model_graph.subgraph(group)
    roots = sorted(m for m in group if sub.in_degree(m) == 0)
    # `+` walks dbt's whole graph (through snapshots and seeds too), so cover on that graph
    covered = set(roots) | reached(manifest.graph, roots)
    if covered & set(manifest.models) == wanted:
        return " ".join(f"{token(r)}+" for r in sorted(roots, key=token))
    return " ".join(sorted(token(m) for m in group))
