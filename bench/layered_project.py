"""The generated layered project the benchmarks build (DuckDB, or PostgreSQL when asked):
layers of 20 table models, each model reading two models of the layer before (every other
layer incremental when asked), every model with an `id` and a date column `d`."""

from pathlib import Path

WIDTH = 20


def write_layered_project(
    root: Path,
    models: int,
    name: str = "bench",
    incremental: bool = False,
    tag_sizes: tuple[int, ...] = (),
    date_meta: bool = False,
    postgres_database: str = "",
) -> Path:
    """`incremental`: odd layers are incremental models (unique_key id); `tag_sizes`: model i
    carries tag nN for each N > i (so `tag:nN` selects the first N models); `date_meta`: the
    rescue meta that makes validation check the max date of `d`; `postgres_database`: the
    warehouse is that database on the local PostgreSQL server, not RESCUE_DUCKDB_PATH."""
    project = root / name
    (project / "models").mkdir(parents=True)
    meta = (
        "    +meta: {rescue: {date_column: d, expected_date: today, max_lag_days: 1}}\n"
        if date_meta
        else ""
    )
    (project / "dbt_project.yml").write_text(
        f"name: {name}\nversion: '1.0.0'\nconfig-version: 2\nprofile: {name}\n"
        f"models:\n  {name}:\n    +materialized: table\n{meta}"
    )
    if postgres_database:
        output = (
            "      type: postgres\n      host: 127.0.0.1\n      port: 5432\n      user: postgres\n"
            f"      password: ''\n      dbname: {postgres_database}\n      schema: bench\n"
        )
    else:
        output = "      type: duckdb\n      path: \"{{ env_var('RESCUE_DUCKDB_PATH') }}\"\n"
    (project / "profiles.yml").write_text(
        f"{name}:\n  target: dev\n  outputs:\n    dev:\n{output}      threads: 2\n"
    )
    for i in range(models):
        layer, slot = divmod(i, WIDTH)
        model = f"m_{layer:02d}_{slot:02d}"
        tags = [f"n{size}" for size in tag_sizes if i < size]
        is_incremental = incremental and layer % 2 == 1
        options = (["materialized='incremental'", "unique_key='id'"] if is_incremental else []) + (
            [f"tags={tags}"] if tags else []
        )
        config = f"{{{{ config({', '.join(options)}) }}}}\n" if options else ""
        if layer == 0:
            rows = 1000 + slot * 50
            # dated up to today: validation's max-date check (date_meta) passes on any day
            body = (
                f"select g as id, current_date - g % 30 as d from generate_series(0, {rows - 1}) g"
                if postgres_database
                else f"select range as id, current_date - cast(range % 30 as integer) as d "
                f"from range({rows})"
            )
        else:
            a = f"m_{layer - 1:02d}_{slot:02d}"
            b = f"m_{layer - 1:02d}_{(slot + 7) % WIDTH:02d}"
            body = (
                f"select * from (select id, d from {{{{ ref('{a}') }}}} where id % 2 = 0\n"
                f"union all select id, d from {{{{ ref('{b}') }}}} where id % 2 = 1) u"
            )
            if is_incremental:
                body += (
                    "\n{% if is_incremental() %}"
                    " where d >= (select max(d) from {{ this }}){% endif %}"
                )
        (project / "models" / f"{model}.sql").write_text(config + body + "\n")
    return project
