"""Source freshness measured in the warehouse by dbt itself (`dbt source freshness`), in a
queued run: the run queue serializes it with the runs writing the warehouse, and sensors only
ever read its results from the event log (DuckDB refuses even a reader while dbt writes).

One asset check per judged source (`fresh_within_error_after`), on the source's asset: the UI
shows a source in outage as a failing check with the outage's start. Works for sources loaded
outside Dagster (Fivetran, a COPY job): only the warehouse is measured."""

import json
import tempfile
from datetime import datetime
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject

from rescue_defs.assets.dbt import load_manifest
from rescue_defs.assets.dbt_cli import keep_parse_state
from rescue_defs.assets.keys import translator_for
from rescue_defs.assets.rescue_step import wait_for_warehouse
from rescue_defs.checks.freshness import (
    ERROR,
    FRESHNESS_CHECK,
    PASS,
    WARN,
    SourceRule,
    freshness_rules,
    verdict,
)
from rescue_defs.project import WAREHOUSE_POOL
from rescue_defs.rescues.store import TAG_KIND
from rescue_defs.scope import ONE_PROJECT, Scope
from rescue_defs.warehouse_reader import WarehouseTarget

FRESHNESS_JOB = "source_freshness_job"


def source_keys(project: DbtProject) -> dict[str, dg.AssetKey]:
    """unique_id -> asset key of every judged source (the project's translator names them)."""
    manifest = load_manifest(str(project.manifest_path), str(project.project_dir))
    translator = translator_for(project.project_dir)
    return {
        uid: translator.get_asset_key(manifest.raw["sources"][uid])
        for uid in freshness_rules(manifest.raw)
    }


def _now(context) -> tuple[datetime, str]:
    from rescue_defs.project import clock_now, configured_now
    from rescue_defs.published import published_clock

    if configured_now() is not None:
        return configured_now(), "injected clock (RESCUE_NOW / RESCUE_TODAY)"
    simulated = published_clock(context.instance)
    if simulated is not None:
        return simulated, "a simulation's published clock (the bundled shop's last load)"
    return clock_now(), "UTC clock"


def _measure(dbt: DbtCliResource, rules: list[SourceRule], project_dir: Path) -> dict:
    """unique_id -> (max_loaded_at, error) as `dbt source freshness` reported them."""
    (project_dir / "target").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=project_dir / "target") as target:
        invocation = dbt.cli(
            ["source", "freshness", "--select", " ".join(r.selector for r in rules)],
            raise_on_error=False,
            target_path=Path(target),
        )
        invocation.wait()
        keep_parse_state(Path(target))
        path = Path(target) / "sources.json"
        if not path.exists():
            error = invocation.get_error()
            lines = [line.strip() for line in str(error or "").splitlines() if line.strip()]
            first = lines[0] if lines else "it wrote no sources.json"
            raise dg.Failure(f"dbt source freshness failed: {first[:300]}")
        results = json.loads(path.read_text())["results"]
    found = {}
    for result in results:
        newest = result.get("max_loaded_at")
        found[result["unique_id"]] = (
            datetime.fromisoformat(newest).replace(tzinfo=None) if newest else None,
            "" if newest else (result.get("error") or result.get("message") or "no result"),
        )
    return found


def build_freshness_checks(
    project: DbtProject, scope: Scope = ONE_PROJECT, dbt_key: str = "dbt"
) -> dg.AssetChecksDefinition | None:
    """`dbt_key`: the resource key of the project's DbtCliResource (the team's)."""
    manifest_path, project_dir = str(project.manifest_path), str(project.project_dir)
    job_name = scope.named(FRESHNESS_JOB)
    manifest = load_manifest(manifest_path, project_dir)
    rules = freshness_rules(manifest.raw)
    if not rules:
        return None
    keys = source_keys(project)

    @dg.multi_asset_check(
        name=scope.named("source_freshness"),
        specs=[
            dg.AssetCheckSpec(
                FRESHNESS_CHECK,
                asset=keys[uid],
                description=f"dbt source freshness of {rule.label}: newest {rule.loaded_at_field}"
                " against the source's warn_after / error_after, measured in the warehouse.",
            )
            for uid, rule in rules.items()
        ],
        can_subset=True,
        pool=WAREHOUSE_POOL,
        required_resource_keys={dbt_key},
    )
    def source_freshness(context: dg.AssetCheckExecutionContext):
        """Runs `dbt source freshness` on the selected sources and judges each with dbt's
        thresholds, at the business clock's now."""
        if context.run.job_name != job_name:
            # selected with the sources' assets (a UI "Materialize", the implicit job): the
            # measurement belongs to its own queued run, after the load has committed
            context.log.info(f"source freshness is measured by {job_name} runs")
            return
        dbt: DbtCliResource = getattr(context.resources, dbt_key)
        wanted = [
            rules[uid]
            for uid, key in keys.items()
            if dg.AssetCheckKey(key, FRESHNESS_CHECK) in context.selected_asset_check_keys
        ]
        wait_for_warehouse(context, manifest, WarehouseTarget.of_resource(dbt))
        now, clock_label = _now(context)
        measured = _measure(dbt, wanted, Path(project_dir))
        for rule in wanted:
            newest, error = measured.get(rule.unique_id, (None, "dbt reported nothing"))
            judged = verdict(rule, newest, now, error)
            yield dg.AssetCheckResult(
                asset_key=keys[rule.unique_id],
                check_name=FRESHNESS_CHECK,
                passed=judged.status == PASS,
                severity=dg.AssetCheckSeverity.WARN
                if judged.status == WARN
                else dg.AssetCheckSeverity.ERROR,
                description=judged.note,
                metadata={
                    "status": judged.status,
                    "max_loaded_at": newest.isoformat() if newest else "",
                    "measured_at": now.isoformat(),
                    "clock": clock_label,
                    "age_hours": round(judged.age_seconds / 3600, 2)
                    if judged.age_seconds is not None
                    else -1.0,
                    "warn_after_hours": (rule.warn_after or 0) / 3600,
                    "error_after_hours": (rule.error_after or 0) / 3600,
                    "down_since": (newest.isoformat() if newest else "never loaded")
                    if judged.status == ERROR
                    else "",
                },
            )

    return source_freshness


def build_freshness_job(checks: dg.AssetChecksDefinition, scope: Scope = ONE_PROJECT):
    return dg.define_asset_job(
        scope.named(FRESHNESS_JOB),
        selection=dg.AssetSelection.checks(checks),
        description="Measures every judged dbt source's freshness in the warehouse (dbt source "
        "freshness). Requested by source_outage_sensor after loads and at least hourly.",
        tags={TAG_KIND: "freshness"},
        executor_def=dg.in_process_executor,
    )
