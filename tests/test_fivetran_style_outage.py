"""An outage on a project we did not write, in process on DuckDB (the same scenario on the real
PostgreSQL warehouse runs in a real deployment: test_team_deployment.py).

`tests/fixtures/ticket_analytics` is written like a public Fivetran transform package: a local
source package installed by `dbt deps` (`tickets_source`, its own schema), sources landed
outside Dagster with `_fivetran_synced`, ephemeral intermediates, two incremental
delete+insert models whose `is_incremental()` filter is a lookback on business dates, columns
computed at build time, and profiles with a second target. Its connector goes down for five
days and comes back with a backlog that a lookback cannot see (a resynced correction of an old
ticket, a comment dated years back). The automatic rescue, with default settings, must end
`succeeded` only with every table equal to a from-scratch build: its proof finds both
incremental models different, the rescue rebuilds them with --full-refresh itself and proves
them again.
"""

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from rescue_defs import rescues
from rescue_defs.definitions import build_definitions
from rescue_defs.project import load_dbt_project
from tests.helpers import (
    drive_rescue,
    materialize_all,
    outage_ticker,
)
from tests.tickets import (
    RAW,
    Landing,
    differences_from_a_from_scratch_build,
    installed,
    synced_after,
)


@pytest.fixture(params=["duckdb"])
def tickets(request, tmp_path: Path, warehouse: Path, monkeypatch) -> Iterator[dict]:
    """The two packages copied as a user has them, profiles for this test's own warehouse."""
    with installed(request.param, tmp_path, warehouse, monkeypatch) as found:
        yield found


def test_an_outage_backlog_a_lookback_misses_is_rebuilt_and_proven_on_any_warehouse(
    tickets, instance, monkeypatch, tmp_path
):
    landing: Landing = tickets["landing"]
    project = load_dbt_project(str(tickets["project"]), str(tickets["profiles"]))
    assert (tickets["project"] / "dbt_packages" / "tickets_source").exists(), "dbt deps ran"
    defs = build_definitions(project)
    tick = outage_ticker(defs, instance)

    # five normal days, then the nightly pipeline's incremental run of the sixth
    first = date(2026, 2, 1)
    for n in range(5):
        landing.land_day(first + timedelta(days=n), synced_after(first + timedelta(days=n)))
    monkeypatch.setenv("RESCUE_NOW", "2026-02-06T06:00:00")
    assert materialize_all(defs, instance).success
    assert tick() == []
    landing.land_day(date(2026, 2, 6), synced_after(date(2026, 2, 6)))
    monkeypatch.setenv("RESCUE_NOW", "2026-02-07T06:00:00")
    assert materialize_all(defs, instance).success

    # the connector is down from 02-07: two days later an incident is open, nothing launched
    monkeypatch.setenv("RESCUE_NOW", "2026-02-09T06:00:00")
    (incident,) = tick()
    assert set(incident["sources"]) == {"tickets.ticket", "tickets.ticket_comment"}
    assert rescues.rescue_ids(instance) == []

    # it comes back on 02-12 with five days of backlog, a resynced correction of an old ticket
    # (its updated_at unchanged) and a comment dated years back: both outside the lookback
    recovered = datetime(2026, 2, 12, 5)
    for n in range(5):
        landing.land_day(date(2026, 2, 7) + timedelta(days=n), recovered)
    old = list(landing.tickets["T02010"])
    old[3], old[7] = "urgent", recovered
    landing.write_tickets([old])
    landing.run(
        [
            (
                f"insert into {RAW}.ticket_comment values (%s, %s, %s, %s, %s)",
                ["C-2019", "T02011", "found in an old export", datetime(2019, 5, 4, 12), recovered],
            )
        ]
    )
    monkeypatch.setenv("RESCUE_NOW", "2026-02-12T06:00:00")
    assert tick() == []
    (rescue_id,) = rescues.rescue_ids(instance)
    record = drive_rescue(defs, instance, rescue_id, max_ticks=16)

    assert record["status"] == rescues.SUCCEEDED, record["message"]
    (first_proof,) = record["proof_history"]
    assert first_proof["status"] == "differs"
    assert {record["names"][m] for m in record["escalated"]} == {
        "tickets__ticket_enhanced",
        "tickets__daily_activity",
    }
    assert record["proof"]["status"] == "equal"
    compared = " ".join(first_proof["verdicts"].values())
    assert "seconds_open" in compared and "_run_started_at" in compared  # named, left out
    # the second proof: the rescue rebuilt both with --full-refresh itself, which is that build
    for name in ("tickets__ticket_enhanced", "tickets__daily_activity"):
        assert "by construction" in record["proof"]["verdicts"][name]
    report = rescues.report_markdown(instance, record, _keys(project))
    assert "proof 1: differs" in report and "proof 2: equal" in report

    # every table equals a from-scratch build of the user's other target (build-time
    # columns excepted), and the proof left no scratch schema behind
    assert differences_from_a_from_scratch_build(tickets, project, tmp_path) == {}
    schemas = landing.rows("select schema_name from information_schema.schemata")
    assert not [s for (s,) in schemas if "rescue_proof" in s]


def _keys(project):
    from rescue_defs.assets.dbt import load_manifest, model_asset_keys

    return model_asset_keys(load_manifest(str(project.manifest_path), str(project.project_dir)))
