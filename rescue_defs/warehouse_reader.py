"""Reading the warehouse while planning, through dbt's own adapter for the configured target.

Planning asks the warehouse two things before a rescue is registered: rows landed late for
periods an incremental model's window no longer restates (rescues/late.py), and the playbook's
"are SQL queues saturated / am I about to overlap" as the warehouse sees it: other sessions at
work and locks on the rescue's relations (PostgreSQL: `pg_stat_activity`, `pg_locks`; DuckDB:
the file's lock holder, asked of the OS in warehouse_lock.py; other adapters: "not measured").
The adapter is the one dagster-dbt builds for a step (read-only on DuckDB), so any adapter dbt
supports is reached the same way, with the profile's own credentials.
"""

import dataclasses
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rescue_defs.planning.warehouse_items import WarehouseLoad

LONG_SECONDS = 60  # an active session running longer than this counts as load


class WarehouseUnavailable(RuntimeError):
    """The warehouse cannot be reached now; the message says why, in one line."""


@dataclass(frozen=True)
class WarehouseTarget:
    """Which warehouse: the dbt project, its profiles folder and target."""

    project_dir: str
    profiles_dir: str | None = None
    target: str | None = None
    profile: str | None = None

    @classmethod
    def of(cls, project) -> "WarehouseTarget":
        """From a dagster-dbt DbtProject."""
        profiles = getattr(project, "profiles_dir", None)
        return cls(str(project.project_dir), str(profiles) if profiles else None, project.target)

    @classmethod
    def of_resource(cls, dbt, target: str | None = None) -> "WarehouseTarget":
        """From a dagster-dbt DbtCliResource, as its dbt commands run (`target`: another)."""
        return cls(str(dbt.project_dir), dbt.profiles_dir, target or dbt.target, dbt.profile)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if ln not in ("Runtime Error", "Database Error")]
    return (lines[0] if lines else type(error).__name__)[:300]


def _profile(where: WarehouseTarget):
    """dbt's profile for the target, rendered as dbt renders it (env_var and all)."""
    import os
    from argparse import Namespace

    from dbt.config.runtime import load_profile
    from dbt.flags import set_from_args
    from dbt_common.context import set_invocation_context

    set_invocation_context(os.environ.copy())
    set_from_args(Namespace(profiles_dir=where.profiles_dir or where.project_dir), None)
    return load_profile(where.project_dir, {}, where.profile, where.target)


def _local_file(where: WarehouseTarget, path: str) -> Path | None:
    """A DuckDB `path` as dbt opens it (relative to the project folder, where dbt runs), or
    None when it is no file here (in memory, MotherDuck, a URL)."""
    if not path or path == ":memory:" or path.startswith("md:") or "://" in path:
        return None
    return (Path(where.project_dir) / Path(path).expanduser()).resolve()


def duckdb_file(where: WarehouseTarget) -> Path | None:
    """The DuckDB file the target's profile writes, None on another adapter (or a profile
    that does not load: opening the adapter says why, in one line)."""
    try:
        credentials = _profile(where).credentials
    except Exception:
        return None
    if credentials.type != "duckdb":
        return None
    return _local_file(where, str(credentials.path))


def planning_adapter(where: WarehouseTarget):
    """dbt's adapter for the profile's target, built as dagster-dbt builds a step's (dbt's
    own profile, project and adapter classes; DuckDB opened read-only) but without parsing
    the adapter's macros (~1.1 s of a `rescue launch`): planning runs its own bound queries
    and calls no macro. Not registered in dbt's adapter factory, whose adapters the steps'
    dbt macros run on."""
    from dbt.adapters.factory import FACTORY
    from dbt.config import RuntimeConfig
    from dbt.config.runtime import load_project
    from dbt.flags import get_flags
    from dbt.mp_context import get_mp_context

    profile = _profile(where)
    project = load_project(where.project_dir, False, profile, {})
    config = RuntimeConfig.from_parts(project, profile, get_flags())
    credentials = config.credentials
    if credentials.type == "duckdb":
        # a reader beside dbt runs that may be writing the file (as dagster-dbt opens it)
        credentials.config_options = {
            **(credentials.config_options or {}),
            "access_mode": "READ_ONLY",
        }
        local = _local_file(where, str(credentials.path))
        if local is not None:
            credentials.path = str(local)
    return FACTORY.get_adapter_class_by_name(credentials.type)(config, get_mp_context())


@contextmanager
def open_adapter(where: WarehouseTarget) -> Iterator:
    """A dbt adapter with an open connection; raises WarehouseUnavailable."""
    from rescue_defs.checks.validation import release_adapter

    try:
        adapter = planning_adapter(where)
    except Exception as e:  # a profile that does not load: say so, in one line
        raise WarehouseUnavailable(f"the dbt profile does not load: {first_line(e)}") from None
    try:
        with adapter.connection_named("rescue_planning"):
            try:
                adapter.execute("select 1", auto_begin=False, fetch=True)
            except Exception as e:
                raise WarehouseUnavailable(first_line(e)) from None
            yield adapter
    finally:
        release_adapter(adapter)


def placeholder(adapter) -> str:
    """Bound parameters in the adapter's own style (psycopg `%s`, DuckDB `?`)."""
    return "%s" if adapter.type() in ("postgres", "redshift") else "?"


def query(adapter, sql: str, params: list | None = None) -> list[tuple]:
    _, cursor = adapter.connections.add_query(sql, auto_begin=False, bindings=params or None)
    return [tuple(row) for row in cursor.fetchall()]


SESSIONS_SQL = """
select pid, coalesce(application_name, ''), state,
       extract(epoch from (now() - query_start)), left(query, 120)
from pg_stat_activity
where datname = current_database() and pid <> pg_backend_pid()
  and state is not null and state <> 'idle' and backend_type = 'client backend'
order by query_start
"""


def warehouse_load(adapter, relations: Iterable[tuple[str, str]]) -> WarehouseLoad:
    """Other sessions at work and locks on `relations` ((schema, identifier) pairs)."""
    kind = adapter.type()
    if kind != "postgres":
        return WarehouseLoad(note=f"not measured on the {kind} adapter")
    sessions = tuple(
        (int(pid), app, float(seconds or 0), " ".join(str(text or "").split()))
        for pid, app, _, seconds, text in query(adapter, SESSIONS_SQL)
    )
    pairs = sorted(set(relations))
    locks: tuple = ()
    if pairs:
        where = " or ".join("(n.nspname = %s and c.relname = %s)" for _ in pairs)
        rows = query(
            adapter,
            "select distinct l.pid, coalesce(a.application_name, ''), n.nspname, c.relname, "
            "l.mode from pg_locks l join pg_class c on c.oid = l.relation "
            "join pg_namespace n on n.oid = c.relnamespace "
            "left join pg_stat_activity a on a.pid = l.pid "
            f"where l.pid <> pg_backend_pid() and ({where}) order by 3, 4, 1",
            [part for pair in pairs for part in pair],
        )
        locks = tuple((int(pid), app, f"{s}.{t}", mode) for pid, app, s, t, mode in rows)
    return WarehouseLoad(sessions=sessions, locks=locks, long_seconds=LONG_SECONDS)


def relations_of(manifest, models: Iterable[str]) -> list[tuple[str, str]]:
    return [
        manifest.relation(uid)[1:]
        for uid in models
        if uid in manifest.models and uid not in manifest.ephemeral
    ]


# ANSI: PostgreSQL, DuckDB, Snowflake, Redshift, ... list tables and views here; an adapter
# without it (BigQuery: per dataset) refuses the query and the checklist says "not checked"
TABLES_SQL = "select table_schema, table_name from information_schema.tables where {}"
NOT_LISTED = ("materialized_view",)  # materializations information_schema.tables may not list


def with_inputs(load: WarehouseLoad, adapter, manifest, models: Iterable[str]) -> WarehouseLoad:
    """`load` with what `models` read from outside themselves that the warehouse does not hold
    (a dbt run of `models` fails at the first model reading one): what dbt builds (models,
    seeds, snapshots), and source tables; and the names of what was not asked. Compared by
    schema and name, case-insensitively (quoting rules differ between warehouses). Not asked:
    what lives in another database than the models' own (information_schema is per database
    on Snowflake), and materialized views (PostgreSQL lists them in `pg_matviews`, not in
    information_schema)."""
    models = frozenset(models)
    databases = {manifest.relation(m)[0].lower() for m in models if m in manifest.nodes}
    asked: dict[str, tuple[str, str]] = {}
    unasked = []
    sources = manifest.sources_read(models)
    for uid in (*manifest.inputs_outside(models), *sources):
        database, schema, name = manifest.relation(uid)
        materialized = manifest.nodes.get(uid, {}).get("config", {}).get("materialized")
        if database.lower() in databases and materialized not in NOT_LISTED:
            asked[uid] = (schema.lower(), name.lower())
        else:
            unasked.append(_input_name(manifest, uid))
    held: set[tuple[str, str]] = set()
    if asked:
        schemas = sorted({schema for schema, _ in asked.values()})
        mark = placeholder(adapter)
        rows = query(
            adapter,
            TABLES_SQL.format(f"lower(table_schema) in ({', '.join([mark] * len(schemas))})"),
            schemas,
        )
        held = {(str(schema).lower(), str(name).lower()) for schema, name in rows}
    absent = [uid for uid, pair in asked.items() if pair not in held]
    return dataclasses.replace(
        load,
        missing=tuple(sorted(_input_name(manifest, u) for u in absent if u not in sources)),
        missing_sources=tuple(sorted(_input_name(manifest, u) for u in absent if u in sources)),
        sources_asked=sum(uid in sources for uid in asked),
        unasked=tuple(sorted(unasked)),
    )


def _input_name(manifest, uid: str) -> str:
    """A model by its name; a seed or snapshot with its kind; a source table as source.table."""
    source = manifest.raw.get("sources", {}).get(uid)
    if source is not None:
        return f"{source['source_name']}.{source['name']}"
    kind = manifest.nodes[uid].get("resource_type")
    return manifest.name(uid) if kind == "model" else f"{kind} {manifest.name(uid)}"
