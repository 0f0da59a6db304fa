"""The one Definitions of the code location."""

from rescue_defs import dbt_warm, parsing

# A reload of a project edited since its last parse: dbt parses it on the other core while
# this process spends 2-3 s importing Dagster below (parsing.py; only under `dagster dev`)
parsing.start_for_environment()
# A rescue's run worker: its first dbt imports itself on the other core meanwhile (dbt_warm.py)
dbt_warm.start_for_run_worker()


import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtProject

from rescue_defs import dbt_child, settings
from rescue_defs.api import rescue_only_checks, with_rescue
from rescue_defs.assets.dbt import plain_dbt_assets
from rescue_defs.assets.dbt_cli import RescueDbtCliResource
from rescue_defs.demo.pipeline import (
    RECORD_ASSETS,
    build_daily_pipeline_job,
    daily_pipeline_schedule,
)
from rescue_defs.project import (
    ProjectNotReady,
    configure_warehouse_env,
    dbt_project,
    is_bundled,
)


def _shop_loaders(warehouse) -> tuple[list, dict]:
    """The simulated shop systems' raw loaders and the DuckDB they write: they only feed the
    bundled warehouse, so a location serving another project (its code server and every run
    worker) does not import DuckDB's client for them."""
    from dagster_duckdb import DuckDBResource

    from rescue_defs.demo.raw import raw_sources

    return [raw_sources], {"warehouse": DuckDBResource(database=str(warehouse))}


def build_definitions(
    project: DbtProject, translator: DagsterDbtTranslator | None = None
) -> dg.Definitions:
    """The bundled shop (or any project named by RESCUE_DBT_PROJECT_DIR) as a team would run
    it: its `@dbt_assets` (named by `translator`), its raw loaders, nightly job and schedule,
    with rescue added through the public API (api.py) like any team's Definitions."""
    warehouse = configure_warehouse_env()
    loaders, loaders_resources = _shop_loaders(warehouse) if is_bundled(project) else ([], {})
    team = dg.Definitions(
        assets=[*loaders, plain_dbt_assets(project, translator)],
        schedules=[daily_pipeline_schedule],
        resources={
            # dbt dies with its run worker (dbt_child.py): no writer outlives a killed run
            "dbt": RescueDbtCliResource(project_dir=project, dbt_executable=dbt_child.executable()),
            **loaders_resources,
        },
        # One dbt step does the work of a run; separate processes per step only add start-up
        # time (4-7 s each here), so runs execute in one process.
        executor=dg.in_process_executor,
    )
    defs = with_rescue(team)
    # the nightly job: every asset but rescue's records, without the checks only a rescue runs
    records = [
        a.key for a in defs.assets or () if isinstance(a, dg.AssetSpec) and a.key in RECORD_ASSETS
    ]
    nightly = build_daily_pipeline_job(rescue_only_checks(defs), records)
    return dg.Definitions.merge(defs, dg.Definitions(jobs=[nightly]))


@dg.definitions
def defs() -> dg.Definitions:
    # every RESCUE_* value checked before anything is built: one line naming each bad one
    # (`dagster definitions validate` fails on it), never a stack trace from deep inside
    settings.check()
    try:
        project = dbt_project()
    except ProjectNotReady as e:  # one line naming the dbt command that says why
        raise ProjectNotReady(str(e)) from None
    return build_definitions(project)
