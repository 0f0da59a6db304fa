"""dbt selection strings resolved by dbt's own selector, with errors that name the culprit.

dbt itself resolves a term that matches nothing to nothing and exits 0 ("Nothing to do"). A
rescue must never do nothing silently, nor fall back to everything: every term of `select` and
`exclude` must match, and something must be left.
"""

import difflib
import re
from contextlib import nullcontext
from dataclasses import dataclass, field

from rescue_defs.planning.dbt_flags import DbtDefaultFlags
from rescue_defs.planning.manifest import DbtManifest

# selector methods that compare with another invocation's artifacts (dbt's --state folder)
NEEDS_ARTIFACTS = {
    "state": "state: selectors compare with a previous manifest, which a rescue's selection "
    "does not take: name the models (merge_sensor rescues what a merge changed, and "
    "`rescue plan --state` advises on it)",
    "result": "result: selectors read a previous run's run_results.json, which a rescue's "
    "selection does not take: name the models",
    "source_status": "source_status: selectors read previous freshness results, which a "
    "rescue's selection does not take: name the models (source_outage_sensor rescues "
    "what an outage left stale)",
}


class SelectionError(ValueError):
    """A selection that cannot be run: names the term at fault."""

    def __init__(self, term: str, problem: str):
        self.term = term
        self.problem = problem
        # a pasted wall of text is named by its start, not echoed whole
        shown = term if len(term) <= 80 else f"{term[:80]}... ({len(term)} characters)"
        super().__init__(f"{shown!r}: {problem}" if term else problem)


@dataclass(frozen=True)
class Resolution:
    select: str
    exclude: str
    models: frozenset[str]
    """Selected model unique_ids (after exclude)."""
    targets: frozenset[str]
    """The models named by the terms themselves, before `+`/`@` widened them: the rescue's
    target, with the rest upstream or downstream of it."""
    terms: dict[str, frozenset[str]] = field(default_factory=dict)
    """Each select term and the models it matched (before exclude)."""


def _ensure_dbt_flags() -> None:
    """Cheap when set; called before each selection: dagster-dbt replaces dbt's global flags
    when it builds an adapter in this process."""
    from dbt.flags import get_flags, set_flags

    flags = get_flags()
    if not (
        hasattr(flags, "INDIRECT_SELECTION")
        and hasattr(flags, "state_modified_compare_more_unrendered_values")
    ):
        # the selector (and state:modified) read global flags that only dbt's CLI sets
        set_flags(DbtDefaultFlags())


class Selector:
    """dbt's NodeSelector over one manifest (built once; selections then take milliseconds)."""

    def __init__(self, manifest: DbtManifest):
        from dbt.graph.graph import Graph
        from dbt.graph.selector import NodeSelector

        _ensure_dbt_flags()
        self.manifest = manifest
        self._selector = NodeSelector(Graph(manifest.graph), manifest.dbt_manifest)
        self._all_nodes = set(self._selector.graph.nodes())
        self._resolved: dict[tuple[str, str], Resolution] = {}

    def _parse(self, term: str):
        from dbt.exceptions import DbtRuntimeError
        from dbt.graph.cli import parse_union
        from dbt.graph.selector_spec import SelectionCriteria

        try:
            union = parse_union([term], expect_exists=True)
        except DbtRuntimeError as e:
            raise SelectionError(term, _first_line(e)) from None
        (intersection,) = union.components
        for criteria in intersection.components:
            assert isinstance(criteria, SelectionCriteria)
            method = str(getattr(criteria.method, "value", criteria.method))
            if not criteria.value:
                raise SelectionError(term, f"the {method} selector has no value")
            if method in NEEDS_ARTIFACTS:
                raise SelectionError(term, NEEDS_ARTIFACTS[method])
            if method == "path" and criteria.value.startswith(("/", "~")):
                raise SelectionError(term, "a path: selector is relative to the project folder")
        return intersection

    def _match(self, term: str, named: bool = True) -> tuple[set[str], set[str]]:
        """(all nodes the term selects, nodes its criteria match before graph operators)."""
        spec = self._parse(term)
        _ensure_dbt_flags()
        uses_paths = any(c.method == "path" for c in spec.components)
        try:
            with self.manifest.project_root() if uses_paths else nullcontext():
                selected, _ = self._selector.select_nodes(spec, warn_on_no_nodes=False)
                direct: set[str] = set()
                for criteria in spec.components if named else ():
                    direct |= self._selector.select_included(self._all_nodes, criteria)
        except Exception as e:  # whatever dbt's selector raises on this term, one line
            raise SelectionError(term, f"dbt cannot select it: {_first_line(e)}") from None
        return set(selected), direct

    def models(self, select: str) -> set[str]:
        """Just the models a selection resolves to (no target analysis)."""
        chosen: set[str] = set()
        for term in select.split():
            chosen |= self._match(term, named=False)[0]
        return chosen & set(self.manifest.models)

    def resolve(self, select: str, exclude: str = "") -> Resolution:
        # planning resolves the same selection twice (the facts to fetch, then the plan)
        key = (select, exclude)
        if key not in self._resolved:
            if len(self._resolved) >= 64:  # a long-lived planner (sensors) stays small
                self._resolved.clear()
            self._resolved[key] = self._resolve(select, exclude)
        return self._resolved[key]

    def _resolve(self, select: str, exclude: str) -> Resolution:
        terms = select.split()
        if not terms:
            raise SelectionError("", "the selection is empty: name at least one model or selector")
        models = set(self.manifest.models)
        matched: dict[str, frozenset[str]] = {}
        targets: set[str] = set()
        for term in terms:
            selected, named = self._match(term)
            if not selected & models:
                raise SelectionError(term, "matches no model in the project" + self._hint(term))
            matched[term] = frozenset(selected & models)
            targets |= named & selected & models
        chosen = set().union(*matched.values())
        for term in exclude.split():
            selected, _ = self._match(term, named=False)
            if not selected:
                raise SelectionError(
                    term, "--exclude term matches nothing in the project" + self._hint(term)
                )
            chosen -= selected
        if not chosen:
            raise SelectionError(exclude, "--exclude removes every selected model")
        return Resolution(
            select=" ".join(terms),
            exclude=" ".join(exclude.split()),
            models=frozenset(chosen),
            targets=frozenset(targets & chosen),
            terms=matched,
        )

    def _hint(self, term: str) -> str:
        """`; did you mean ...?` for a model name with a typo (graph operators kept)."""
        found = re.fullmatch(r"(@|\d*\+)?([A-Za-z0-9_]+)(\+\d*)?", term)
        if not found:
            return ""
        close = difflib.get_close_matches(found.group(2), list(self.manifest.by_name), n=1)
        if not close:
            return ""
        return f"; did you mean `{found.group(1) or ''}{close[0]}{found.group(3) or ''}`?"


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    lines = [line for line in lines if line not in ("Runtime Error", "Compilation Error")]
    return lines[0] if lines else type(error).__name__
