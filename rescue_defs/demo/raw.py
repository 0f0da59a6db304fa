"""Loader assets for the bundled warehouse: one asset per raw table, group `raw`."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from dagster_duckdb import DuckDBResource

from rescue_defs.demo import generator
from rescue_defs.project import WAREHOUSE_POOL, business_today
from rescue_defs.published import publish_clock

if TYPE_CHECKING:  # imported where a load needs it (~0.4 s at every code load otherwise)
    import pandas as pd

RAW_SCHEMA = "raw"
MAX_LATE_RETURNS = 1000


class RawLoadConfig(dg.Config):
    """What the loader should take as today, and which sources are broken."""

    through_date: str = ""
    """Load every day not yet loaded, up to and including this one (YYYY-MM-DD). Empty: today."""
    sources_down: list[str] = []
    """Sources in outage for this load: nothing is loaded for them, so their backlog builds up
    and lands whole with the first load after they recover."""
    late_returns: int = 0
    """Returns of 40-60 day old orders landing with this load (0-1000): corrections that fall
    outside any short incremental window."""


def raw_asset_key(source: str) -> dg.AssetKey:
    # the key dagster-dbt gives `source('raw', <table>)`, so raw -> dbt is one lineage
    return dg.AssetKey([RAW_SCHEMA, source])


def today() -> date:
    """The simulated shop's today: RESCUE_TODAY (replays, tests) or the UTC date."""
    return business_today()


def parse_day(value: str) -> date:
    if not value:
        return today()
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise dg.Failure(f"through_date must be YYYY-MM-DD, got {value[:40]!r}") from None
    if day > today():
        raise dg.Failure(
            f"through_date {day} is in the future (today is {today()}): sources cannot land "
            "data that does not exist yet"
        )
    if day < generator.DATA_EPOCH:
        raise dg.Failure(f"through_date {day} is before the shop opened ({generator.DATA_EPOCH})")
    return day


def _sql(conn, sql: str) -> list[tuple]:
    # DuckDB 2 refuses new work on a connection while a result is unread: always drain it
    return conn.execute(sql).fetchall()


def _table(source: str) -> str:
    return f'"{RAW_SCHEMA}"."{source}"'


def ensure_table(conn, source: str) -> None:
    ddl = ", ".join(f'"{c}" {t}' for c, t in generator.COLUMNS[source].items())
    _sql(conn, f'create schema if not exists "{RAW_SCHEMA}"')
    _sql(
        conn,
        f"create table if not exists {_table(source)} "
        f"({ddl}, batch_date DATE, loaded_at TIMESTAMP)",
    )


def _insert(conn, source: str, df: "pd.DataFrame", key: str | None = None) -> int:
    if df.empty:
        return 0
    conn.register("incoming", df)
    try:
        # rows whose key is already there are not landed twice
        where = f' where "{key}" not in (select "{key}" from {_table(source)})' if key else ""
        (inserted,) = _sql(
            conn, f"insert into {_table(source)} by name select * from incoming{where}"
        )[0]
        return int(inserted)
    finally:
        conn.unregister("incoming")


def load_source(conn, source: str, through: date, loaded_at: datetime) -> int:
    """Land every day of `source` after its last loaded batch, through `through`."""
    ensure_table(conn, source)
    ((last,),) = _sql(conn, f"select max(batch_date) from {_table(source)}")
    day = generator.DATA_EPOCH if last is None else last + timedelta(days=1)
    frames = []
    while day <= through:
        rows = generator.rows_arriving(source, day)
        if rows:
            frames.append(generator.frame(source, rows, day, loaded_at))
        day += timedelta(days=1)
    if not frames:
        return 0
    import pandas as pd

    return _insert(conn, source, pd.concat(frames))


def load_late_returns(conn, source: str, through: date, count: int, loaded_at: datetime) -> int:
    """Land the late returns' rows of `source` (orders or payments), once each."""
    rows = generator.late_returns(through, count).get(source, [])
    key = "payment_id" if source == "payments" else None
    return _insert(conn, source, generator.frame(source, rows, through, loaded_at), key)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            raw_asset_key(source),
            group_name="raw",
            description=f"Raw `{source}` as landed from the shop's systems (simulated, "
            "deterministic by day). Run config can simulate an outage of this source.",
            skippable=True,
            kinds={"duckdb"},
        )
        for source in generator.SOURCES
    ],
    can_subset=True,
    pool=WAREHOUSE_POOL,
)
def raw_sources(
    context: dg.AssetExecutionContext, config: RawLoadConfig, warehouse: DuckDBResource
):
    """Lands each selected raw table up to `through_date`, all in one transaction; sources in
    `sources_down` land nothing (reported with `source_down: true`, 0 rows), their backlog
    arrives with the first load after they recover."""
    unknown = sorted(set(config.sources_down) - set(generator.SOURCES))
    if unknown:
        raise dg.Failure(
            f"sources_down names unknown sources {unknown}; known: {list(generator.SOURCES)}"
        )
    if not 0 <= config.late_returns <= MAX_LATE_RETURNS:
        raise dg.Failure(f"late_returns must be 0 to {MAX_LATE_RETURNS}, not {config.late_returns}")
    through = parse_day(config.through_date)
    # the load happens on the simulated day `through`, at the clock's time of day: loaded_at
    # then tells freshness and max-date checks the simulated date, and keeps rising from one
    # load to the next (incremental models use it as their cursor)
    now = datetime.now(UTC).replace(tzinfo=None)
    selected = [s for s in generator.SOURCES if raw_asset_key(s) in context.selected_asset_keys]
    results: list[dg.MaterializeResult] = []
    _wait_for_warehouse(context, warehouse.database)
    with warehouse.get_connection() as conn:
        for source in selected:
            ensure_table(conn, source)
        last_batch = {
            s: _sql(conn, f"select max(batch_date) from {_table(s)}")[0][0] for s in selected
        }
        ahead = {
            s: d
            for s, d in last_batch.items()
            if d and d > through and s not in config.sources_down
        }
        if not ahead:
            results = _land(conn, selected, config, through, now, last_batch)
    if ahead:  # refused once the connection is closed: nothing landed, nothing held open
        raise dg.Failure(
            f"through_date {through} is before what is already loaded ("
            + ", ".join(f"raw.{s} through {d}" for s, d in sorted(ahead.items()))
            + "): loads only add days. Use a later date, or a fresh warehouse "
            "(RESCUE_DUCKDB_PATH) to replay from an earlier day."
        )
    if results:
        # the shop's business day is `through`: freshness and planning judge by it, in every
        # process (the CLI too), until the next load (published.py)
        at = now.replace(tzinfo=UTC).timestamp()
        publish_clock(context.instance, datetime.combine(through, now.time()), at)
    for result in results:
        if result.metadata["source_down"]:
            context.log.warning(
                f"source {result.asset_key.path[-1]} is down: nothing landed, backlog grows"
            )
        yield result


def _wait_for_warehouse(context, database: str) -> None:
    """A notebook holding the file would make the load fail with DuckDB's lock error."""
    from rescue_defs.warehouse_lock import WarehouseHeld, require_free

    try:
        require_free(Path(database), "run again; nothing was loaded", context.log.warning)
    except WarehouseHeld as e:
        raise dg.Failure(str(e)) from None


def _land(conn, selected, config, through, now, last_batch) -> list[dg.MaterializeResult]:
    """Land the selected sources in one transaction: a killed load lands none, never some."""
    results = []
    _sql(conn, "begin transaction")
    try:
        for source in selected:
            if source in config.sources_down:
                results.append(_down(source, last_batch[source], through))
                continue
            ((last_load,),) = _sql(conn, f"select max(loaded_at) from {_table(source)}")
            loaded_at = datetime.combine(through, now.time())
            if last_load is not None and loaded_at <= last_load:
                loaded_at = last_load + timedelta(milliseconds=1)
            rows = load_source(conn, source, through, loaded_at)
            if config.late_returns:
                rows += load_late_returns(conn, source, through, config.late_returns, loaded_at)
            ((batch,),) = _sql(conn, f"select max(batch_date) from {_table(source)}")
            results.append(
                dg.MaterializeResult(
                    asset_key=raw_asset_key(source),
                    metadata={
                        "rows_landed": rows,
                        "source_down": False,
                        "last_batch_date": str(batch) if batch else "",
                        "through_date": str(through),
                    },
                )
            )
        _sql(conn, "commit")
    except BaseException:
        _sql(conn, "rollback")
        raise
    return results


def _down(source: str, last_batch: date | None, through: date) -> dg.MaterializeResult:
    """A load attempt on a source that is down lands nothing, and says so. It is still
    reported: a loader that yields nothing makes Dagster skip the whole dbt step downstream
    (dagster-io/dagster#9408), so the healthy lineages would not build and no check would say
    what is stale. Freshness is measured in the warehouse, never from these events."""
    return dg.MaterializeResult(
        asset_key=raw_asset_key(source),
        metadata={
            "rows_landed": 0,
            "source_down": True,
            "last_batch_date": str(last_batch) if last_batch else "",
            "through_date": str(through),
        },
    )
