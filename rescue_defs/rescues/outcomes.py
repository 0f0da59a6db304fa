"""What a rescue's runs did to each planned model, read from the event log (never assumed)."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import dagster as dg

from rescue_defs import compat
from rescue_defs.rescues.store import TAG_ATTEMPT, TAG_ID, TAG_SANDBOX, TAG_STEP, TAG_STEPS


def step_runs(instance: dg.DagsterInstance, rescue_id: str) -> list[dg.DagsterRun]:
    """Every run tagged with the rescue, oldest first."""
    records = instance.get_run_records(filters=dg.RunsFilter(tags={TAG_ID: rescue_id}))
    return [r.dagster_run for r in sorted(records, key=lambda r: r.create_timestamp)]


def latest_by_step(runs: list[dg.DagsterRun]) -> dict[tuple[int, int], dg.DagsterRun]:
    """(step index, attempt) -> the newest run of it."""
    latest: dict[tuple[int, int], dg.DagsterRun] = {}
    for run in runs:  # oldest first: later runs win
        for step in covered_steps(run):
            latest[step] = run
    return latest


def covered_steps(run: dg.DagsterRun | dg.RunRequest) -> list[tuple[int, int]]:
    """(step index, attempt) of each step a run (or the request for it) builds: one, or
    several stage after stage."""
    if TAG_STEPS in run.tags:
        pairs = (part.split(":") for part in run.tags[TAG_STEPS].split(","))
        return [(int(index), int(attempt)) for index, attempt in pairs]
    if TAG_STEP in run.tags:
        return [(int(run.tags[TAG_STEP]), int(run.tags.get(TAG_ATTEMPT, 0)))]
    return []


def failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[dg.AssetCheckKey]:
    """Blocking (ERROR severity) checks that failed in a run."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    failed = []
    for record in records:
        data = record.event_log_entry.dagster_event.asset_check_evaluation_data
        if not data.passed and data.severity == dg.AssetCheckSeverity.ERROR:
            failed.append(dg.AssetCheckKey(data.asset_key, data.check_name))
    return failed


def materialized(instance: dg.DagsterInstance, run_ids: Iterable[str]) -> set[dg.AssetKey]:
    done: set[dg.AssetKey] = set()
    for run_id in run_ids:
        done |= compat.materialized_keys(instance, run_id)
    return done


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    blocking: bool
    description: str
    status: str = ""
    """The validation checks' verdict: passed / failed / not configured / off ("" for dbt
    tests)."""


@dataclass
class ModelOutcome:
    """What the rescue's runs did to one planned model (latest run wins)."""

    rebuilt: bool = False
    checks: dict[str, CheckOutcome] = field(default_factory=dict)

    @property
    def failed(self) -> list[CheckOutcome]:
        """Checks that measured something and failed ("not configured" measured nothing: a
        warning in the UI, never validated, but nothing a rebuild would change)."""
        return [c for c in self.checks.values() if not c.passed and c.status != "not configured"]

    @property
    def blocked(self) -> bool:
        return any(c.blocking for c in self.failed)

    @property
    def validated(self) -> bool:
        """Rebuilt, and its row-count and max-date checks ran and passed (a check that is "not
        configured" proves nothing; one its owner turned "off" in meta counts), and its dbt
        tests passed."""
        from rescue_defs.checks.rules import MAX_DATE_CHECK, ROW_COUNT_CHECK

        return (
            self.rebuilt
            and all(
                name in self.checks and self.checks[name].status in ("passed", "off", "")
                for name in (ROW_COUNT_CHECK, MAX_DATE_CHECK)
            )
            and not self.failed
        )

    @property
    def unchecked(self) -> bool:
        """Rebuilt, but its row-count / max-date checks never ran (a run killed after dbt built
        it and before validation; dbt tests that did run do not make up for them)."""
        from rescue_defs.checks.rules import MAX_DATE_CHECK, ROW_COUNT_CHECK

        return self.rebuilt and not (
            ROW_COUNT_CHECK in self.checks and MAX_DATE_CHECK in self.checks
        )

    @property
    def unconfigured(self) -> list[str]:
        return [c.name for c in self.checks.values() if c.status == "not configured"]


def model_outcomes(
    instance: dg.DagsterInstance,
    runs: Iterable[dg.DagsterRun],
    keys: Mapping[str, dg.AssetKey],
) -> dict[str, ModelOutcome]:
    """unique_id -> outcome, from the runs (oldest first) of one rescue."""
    by_key = {k: uid for uid, k in keys.items()}
    outcomes = {uid: ModelOutcome() for uid in keys}
    for run in runs:
        if run.tags.get(TAG_SANDBOX) == "true":
            _sandbox_outcomes(instance, run.run_id, by_key, outcomes)
            continue
        for key in materialized(instance, [run.run_id]):
            if key in by_key:
                outcomes[by_key[key]].rebuilt = True
        records = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
        for record in records:
            data = record.event_log_entry.dagster_event.asset_check_evaluation_data
            uid = by_key.get(data.asset_key)
            if uid is None:
                continue
            status = data.metadata.get("status")
            outcomes[uid].checks[data.check_name] = CheckOutcome(
                data.check_name,
                data.passed,
                data.severity == dg.AssetCheckSeverity.ERROR,
                data.description or "",
                str(status.value) if status is not None else "",
            )
    return outcomes


def _sandbox_outcomes(instance, run_id: str, by_key, outcomes) -> None:
    """Sandbox runs report observations carrying their verdicts (rescue_defs.sandbox)."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION
    ).records
    for record in records:
        observation = record.event_log_entry.dagster_event.asset_observation_data.asset_observation
        uid = by_key.get(observation.asset_key)
        if uid is None or "sandbox" not in observation.metadata:
            continue
        outcome = outcomes[uid]
        outcome.rebuilt = True
        outcome.checks = {}
        for name, value in observation.metadata.items():
            text = str(value.value)
            if text.startswith(("passed", "FAILED")):
                passed = text.startswith("passed")
                outcome.checks[name] = CheckOutcome(name, passed, not passed, text)
