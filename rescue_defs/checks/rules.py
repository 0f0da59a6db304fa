"""What "validated" means for one model, and the verdicts: pure Python, no Dagster.

Every dbt model gets two checks after it is built (the playbook: "a successful dbt run is
necessary but not sufficient"):

- **row count**: not empty (unless allowed), no drop larger than `max_drop` against the last
  passing check, inside `min_rows` / `max_rows` when set;
- **max date**: `max(date_column)` not NULL and not older than the expected date minus
  `max_lag_days`. The expected date is the latest day loaded into the model's upstream
  sources (their `loaded_at_field`), or "today" in the business timezone (injected, or the
  clock) when configured so or when no upstream source has a `loaded_at_field`.

Configuration lives in the model's dbt meta, all optional:

    meta: {rescue: {date_column: order_date, max_lag_days: 1, expected_date: sources,
                    blocking: true, allow_empty: false, min_rows: 1, max_rows: 1000000,
                    max_drop: 0.5}}

Without it, every column that looks like a date is measured and the one with the latest value
is the model's date (never one NULL in every row), which must not fall behind the last
validated build; a check that measured nothing says "not measured" and is never a pass.
Checks are blocking (ERROR severity: a rescue stops) for marts, final models and incremental
models, warnings elsewhere.
"""

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rescue_defs.checks.upstream import final_models, sources_upstream_of_each

ROW_COUNT_CHECK = "row_count_is_expected"
MAX_DATE_CHECK = "max_date_is_current"
DATE_TYPES = re.compile(r"^(date|datetime|timestamp|timestamptz|timestamp_[a-z]+)\b", re.I)
DATE_NAMES = re.compile(r"^(date|day|.+_date|.+_day|.+_at|.+_time|.+_timestamp)$", re.I)
SOURCE_DATE_NAMES = re.compile(r"^(date|day|.+_date|.+_day)$", re.I)
MART_FOLDERS = {"marts", "mart"}
MART_PREFIXES = ("fct_", "fact_", "dim_", "mart_")


class ValidationConfigError(ValueError):
    """A model's `meta.rescue` that cannot be used; the message names the model and key."""


@dataclass(frozen=True)
class Settings:
    """Project-wide defaults (per-model meta overrides the last three)."""

    business_timezone: str = "UTC"
    """Dates are compared as calendar days in this timezone."""
    warehouse_timezone: str = "UTC"
    """How to read timestamps stored without a timezone."""
    today: date | None = None
    """Injected "today" (in the business timezone); None means the clock."""
    expected_date: str = "sources"
    max_lag_days: int = 1
    max_drop: float = 0.5

    def __post_init__(self) -> None:
        for tz in (self.business_timezone, self.warehouse_timezone):
            try:
                ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValidationConfigError(f"unknown timezone {tz!r}") from None
        if self.expected_date not in ("sources", "today"):
            raise ValidationConfigError(
                f"expected_date must be 'sources' or 'today', not {self.expected_date!r}"
            )

    def today_in_business_tz(self, now: datetime | None = None) -> date:
        if self.today is not None:
            return self.today
        return (now or datetime.now(UTC)).astimezone(ZoneInfo(self.business_timezone)).date()


@dataclass(frozen=True, slots=True)
class Relation:
    """Where a model or source lives; `database` None means the connection's own."""

    database: str | None
    schema: str
    identifier: str

    def sql(self) -> str:
        parts = [self.database] if self.database else []
        return ".".join(quote(p) for p in [*parts, self.schema, self.identifier])


@dataclass(frozen=True, slots=True)
class SourceFreshness:
    unique_id: str
    name: str
    relation: Relation
    loaded_at_field: str


@dataclass(frozen=True, slots=True)
class ModelRule:
    unique_id: str
    name: str
    relation: Relation
    blocking: bool
    allow_empty: bool = False
    min_rows: int | None = None
    max_rows: int | None = None
    max_drop: float = 0.5
    date_column: str | None = None
    date_column_from: str = ""  # "meta" | "inferred" | "off" (meta says none) | ""
    date_candidates: tuple[str, ...] = ()
    """Inferred rules: every column that looks like a date; the one with the latest non-NULL
    value is measured (a column NULL in every row is never chosen)."""
    date_note: str = ""  # why there is no date column
    max_lag_days: int = 1
    expected_date: str = "sources"
    sources: tuple[SourceFreshness, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    description: str
    metadata: dict[str, Any]
    status: str  # "passed" | "failed" | "not configured"


def quote(identifier: str) -> str:
    """A SQL identifier, double-quoted with embedded quotes doubled: whatever a manifest holds
    (quotes, semicolons), it stays one identifier."""
    return '"' + str(identifier).replace('"', '""') + '"'


def stats_sql(rule: ModelRule, candidates: tuple[str, ...] | None = None) -> str:
    """One query per model: count and max date together (with `candidates`, the max of each
    column that looks like a date)."""
    if candidates is not None:
        maxima = "".join(f", max({quote(c)})" for c in candidates)
        return f"select count(*){maxima} from {rule.relation.sql()}"
    latest = f"max({quote(rule.date_column)})" if rule.date_column else "null"
    return f"select count(*), {latest} from {rule.relation.sql()}"


def source_sql(source: SourceFreshness) -> str:
    return f"select max({quote(source.loaded_at_field)}) from {source.relation.sql()}"


# ---------------------------------------------------------------- rules from the manifest


def default_database(manifest: Mapping[str, Any]) -> str | None:
    """The database most models were parsed into: the target's own. The manifest holds the
    name seen at parse time (for DuckDB, the file's stem), which need not be the one a run
    uses, so relations in it are addressed without a database."""
    counts = Counter(
        n.get("database") for n in manifest["nodes"].values() if n["resource_type"] == "model"
    )
    return counts.most_common(1)[0][0] if counts else None


def relation_of(node: Mapping[str, Any]) -> tuple[str, str, str]:
    """(database, schema, identifier) where a manifest node (model, seed, snapshot, source)
    lives: a source's table is its identifier, a built node's its alias."""
    identifier = node.get("identifier") or node.get("alias") or node["name"]
    if node.get("resource_type") == "model":
        identifier = node.get("alias") or node["name"]
    return (str(node.get("database") or ""), str(node["schema"]), str(identifier))


def _relation(node: Mapping[str, Any], default_db: str | None) -> Relation:
    database, schema, identifier = relation_of(node)
    own = not database or database == default_db
    return Relation(None if own else database, schema, identifier)


def _meta(node: Mapping[str, Any]) -> dict[str, Any]:
    meta = (node.get("config") or {}).get("meta") or node.get("meta") or {}
    rescue = meta.get("rescue") or {}
    if not isinstance(rescue, Mapping):
        raise ValidationConfigError(f"{node['name']}: meta.rescue must be a mapping")
    return dict(rescue)


def _is_mart(node: Mapping[str, Any]) -> bool:
    folders = set(node.get("fqn", [])[1:-1])
    return bool(folders & MART_FOLDERS) or node["name"].startswith(MART_PREFIXES)


def _date_candidates(node: Mapping[str, Any]) -> tuple[str, ...]:
    """Documented columns that look like dates: data_type date/timestamp, or named `date`,
    `day`, `*_date`, `*_day`, `*_at`, `*_time`, `*_timestamp`. Sync stamps of a loader
    (`_fivetran_synced`, `_loaded_at`) say when rows landed, not what period they describe."""
    columns = node.get("columns") or {}
    return tuple(
        name
        for name, col in columns.items()
        if not name.startswith("_")
        and (DATE_TYPES.match(str(col.get("data_type") or "")) or DATE_NAMES.match(name))
    )


def _infer_date_column(node: Mapping[str, Any]) -> tuple[str | None, str]:
    """A source's business date for late-row tracking: its one documented date column."""
    columns = node.get("columns") or {}
    candidates = [
        name
        for name, col in columns.items()
        if DATE_TYPES.match(str(col.get("data_type") or "")) or SOURCE_DATE_NAMES.match(name)
    ]
    if len(candidates) == 1:
        return candidates[0], ""
    return None, "no single date column"


def columns_looking_like_dates(columns: list[tuple[str, str]]) -> tuple[str, ...]:
    """The same choice over a relation's columns as the warehouse lists them (name, type)."""
    return tuple(
        name
        for name, data_type in columns
        if not name.startswith("_")
        and (DATE_TYPES.match(data_type or "") or DATE_NAMES.match(name))
    )


def _number(rescue: Mapping[str, Any], key: str, name: str, kind: type, default=None):
    value = rescue.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationConfigError(f"{name}: meta.rescue.{key} must be a number, not {value!r}")
    if value < 0:
        raise ValidationConfigError(f"{name}: meta.rescue.{key} must not be negative")
    return kind(value)


def _has_freshness_policy(source: Mapping[str, Any]) -> bool:
    policy = source.get("freshness") or (source.get("config") or {}).get("freshness") or {}
    return any((policy.get(k) or {}).get("count") for k in ("warn_after", "error_after"))


def model_rules(manifest: Mapping[str, Any], settings: Settings) -> dict[str, ModelRule]:
    """unique_id -> rule, for every enabled model that is built as a relation."""
    default_db = default_database(manifest)
    freshness: dict[str, SourceFreshness] = {}
    for uid, source in manifest.get("sources", {}).items():
        field_name = source.get("loaded_at_field") or (source.get("config") or {}).get(
            "loaded_at_field"
        )
        # a source without a freshness policy (`freshness: null`, e.g. a static catalogue) says
        # nothing by its loaded_at: it neither sets the expected date nor is named as behind
        if field_name and _has_freshness_policy(source):
            freshness[uid] = SourceFreshness(
                uid,
                f"{source['source_name']}.{source['name']}",
                _relation(source, default_db),
                field_name,
            )
    final = final_models(manifest)
    upstream = sources_upstream_of_each(manifest)
    rules = {}
    for uid, node in manifest["nodes"].items():
        config = node.get("config") or {}
        if node["resource_type"] != "model" or not config.get("enabled", True):
            continue
        if config.get("materialized") == "ephemeral":
            continue
        name = node["name"]
        rescue = _meta(node)
        incremental = config.get("materialized") == "incremental"
        date_column: str | None
        if "date_column" in rescue:
            date_column = rescue["date_column"] or None
            origin, note = ("meta", "") if date_column else ("off", "date check turned off in meta")
            if date_column is not None and not isinstance(date_column, str):
                raise ValidationConfigError(f"{name}: meta.rescue.date_column must be a string")
        else:
            # measured after the build: the candidate with the latest value (validation.py)
            date_column, note, origin = None, "", "inferred"
        expected = rescue.get("expected_date", settings.expected_date)
        if expected not in ("sources", "today"):
            raise ValidationConfigError(
                f"{name}: meta.rescue.expected_date must be 'sources' or 'today'"
            )
        blocking = rescue.get("blocking", incremental or _is_mart(node) or uid in final)
        rules[uid] = ModelRule(
            unique_id=uid,
            name=name,
            relation=_relation(node, default_db),
            blocking=bool(blocking),
            allow_empty=bool(rescue.get("allow_empty", False)),
            min_rows=_number(rescue, "min_rows", name, int),
            max_rows=_number(rescue, "max_rows", name, int),
            max_drop=_number(rescue, "max_drop", name, float, settings.max_drop),
            date_column=date_column,
            date_column_from=origin,
            date_candidates=_date_candidates(node) if origin == "inferred" else (),
            date_note=note,
            max_lag_days=_number(rescue, "max_lag_days", name, int, settings.max_lag_days),
            expected_date=expected,
            sources=tuple(freshness[s] for s in sorted(upstream.get(uid, ())) if s in freshness),
        )
    return rules
