"""Lineage reached from many models at once.

`nx.ancestors` / `nx.descendants` walk from one node; asking them for each of a selection's
models walks the same lineage again and again (quadratic: ~25 s to plan a 2,000-model rescue,
most of it here). One walk from all of them finds the same union.
"""

from collections.abc import Collection, Iterable

import networkx as nx


def reached(
    graph: nx.DiGraph,
    starts: Iterable[str],
    *,
    upward: bool = False,
    within: Collection[str] | None = None,
) -> set[str]:
    """Every node one edge or more away from any of `starts`: downstream (their descendants)
    or `upward` (their ancestors), through nodes of `within` only when given. The union of
    `nx.descendants` (`nx.ancestors`) of each start on `graph.subgraph(within)`: a start is
    in it only when another start (or itself, through a cycle) reaches it."""
    adjacency = graph.pred if upward else graph.succ
    found: set[str] = set()
    frontier = list(starts)
    while frontier:
        for node in adjacency[frontier.pop()]:
            if node not in found and (within is None or node in within):
                found.add(node)
                frontier.append(node)
    return found
