"""Every RESCUE_* variable the README documents is checked once, at the edges: a bad value is
refused with one line naming the variable, the value and what is allowed, by the `rescue` CLI
before it plans anything and by the code location before it builds anything (so `dagster
definitions validate` fails on it). Empty means unset; booleans take only the documented
spellings; numbers are finite and in range."""

import subprocess
import sys
from pathlib import Path

import pytest

from rescue_defs import settings

REPO = Path(__file__).resolve().parents[1]

BAD = [
    ("RESCUE_PEAK_HOURS", "25-3"),
    ("RESCUE_PEAK_HOURS", "18-8"),
    ("RESCUE_PEAK_HOURS", "evenings"),
    ("RESCUE_BUSINESS_TIMEZONE", "Mars/Olympus"),
    ("RESCUE_WAREHOUSE_TIMEZONE", "../../etc/passwd"),
    ("RESCUE_NOW", "garbage"),
    ("RESCUE_TODAY", "2026-02-30"),
    ("RESCUE_TODAY", "9999-12-31"),
    ("RESCUE_PROOF", "maybe"),
    ("RESCUE_PROOF_MAX_SECONDS", "-1"),
    ("RESCUE_PROOF_MAX_SECONDS", "nan"),
    ("RESCUE_PROOF_MAX_SECONDS", "inf"),
    ("RESCUE_PARSE_WAIT_SECONDS", "soon"),
    ("RESCUE_LOCK_WAIT_SECONDS", "-5"),
    ("RESCUE_FRESHNESS_INTERVAL_SECONDS", "1e400"),
    ("RESCUE_RECOVERY_GROUP_SECONDS", "an hour"),
    ("RESCUE_OUTAGE_SENSOR_SECONDS", "0"),
    ("RESCUE_MERGE_SENSOR_SECONDS", "2.5"),
    ("RESCUE_RUN_SILENT_SECONDS", "5"),
    ("RESCUE_UI_URL", "localhost:3000"),
    ("RESCUE_DBT_TARGET", "prod; drop table x"),
]


@pytest.mark.parametrize(("name", "value"), BAD, ids=[f"{n}={v}" for n, v in BAD])
def test_a_bad_value_is_refused_by_the_cli_in_one_line_before_anything_is_planned(
    name, value, shop_project, monkeypatch, capsys
):
    from rescue_defs.cli import main

    monkeypatch.setenv(name, value)
    code = main(["plan", "--manifest", str(shop_project.manifest_path), "--select", "stg_orders"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith(f"rescue: error: {name}={value!r} is not allowed: ")


@pytest.mark.parametrize(("name", "value"), BAD, ids=[f"{n}={v}" for n, v in BAD])
def test_a_bad_value_stops_the_code_location_before_it_builds_anything(name, value, monkeypatch):
    from rescue_defs.definitions import defs

    monkeypatch.setenv(name, value)
    with pytest.raises(settings.SettingError, match=f"^{name}=") as refused:
        defs()
    assert "\n" not in str(refused.value)


def test_dagster_definitions_validate_fails_naming_the_variable(monkeypatch):
    monkeypatch.setenv("RESCUE_PROOF", "maybe")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    said = result.stdout + result.stderr
    assert result.returncode != 0, said
    assert "SettingError: RESCUE_PROOF='maybe' is not allowed: one of on, true" in said


def test_every_bad_value_is_named_at_once(monkeypatch):
    monkeypatch.setenv("RESCUE_PROOF", "maybe")
    monkeypatch.setenv("RESCUE_TODAY", "yesterday")
    with pytest.raises(settings.SettingError) as refused:
        settings.check()
    assert "RESCUE_PROOF='maybe'" in str(refused.value)
    assert "RESCUE_TODAY='yesterday'" in str(refused.value)


def test_a_huge_value_is_not_echoed_whole(monkeypatch):
    monkeypatch.setenv("RESCUE_PEAK_HOURS", "9" * 100_000)
    (problem,) = settings.problems()
    assert len(problem) < 300 and "(100000 chars)" in problem


@pytest.mark.parametrize("spelling", settings.ON + settings.OFF + ("ON", " Off "))
def test_the_documented_boolean_spellings_are_accepted(spelling, monkeypatch):
    monkeypatch.setenv("RESCUE_PROOF", spelling)
    assert settings.get("RESCUE_PROOF") is (spelling.strip().lower() in settings.ON)


def test_empty_means_unset_and_the_defaults_apply(monkeypatch):
    for name in settings.SETTINGS:
        monkeypatch.setenv(name, "")
    assert settings.problems() == []
    assert settings.get("RESCUE_PROOF") is True
    assert settings.get("RESCUE_PROOF_MAX_SECONDS") == 600
    assert settings.get("RESCUE_PEAK_HOURS") == (8, 18)
    assert settings.get("RESCUE_BUSINESS_TIMEZONE") == "UTC"
    assert settings.get("RESCUE_TODAY") is None
    assert settings.get("RESCUE_RUN_SILENT_SECONDS") == 90


def test_peak_hours_none_turns_them_off(monkeypatch):
    from rescue_defs.project import peak_hours

    monkeypatch.setenv("RESCUE_PEAK_HOURS", "none")
    assert peak_hours() is None
    monkeypatch.setenv("RESCUE_PEAK_HOURS", "22-24")
    assert peak_hours() == (22, 24)


def test_an_injected_clock_with_a_zone_is_kept_as_naive_utc(monkeypatch):
    from datetime import datetime

    from rescue_defs.project import business_today, configured_now

    monkeypatch.setenv("RESCUE_NOW", "2026-03-05T01:30:00+02:00")
    assert configured_now() == datetime(2026, 3, 4, 23, 30)
    assert str(business_today()) == "2026-03-04"


def test_the_sensors_are_evaluated_as_often_as_set(monkeypatch):
    from rescue_defs.definitions import defs

    def intervals() -> dict[str, int | None]:
        built = defs()
        return {
            name: built.get_sensor_def(name).minimum_interval_seconds
            for name in ("source_outage_sensor", "merge_sensor")
        }

    monkeypatch.delenv("RESCUE_OUTAGE_SENSOR_SECONDS", raising=False)
    monkeypatch.delenv("RESCUE_MERGE_SENSOR_SECONDS", raising=False)
    assert intervals() == {"source_outage_sensor": 30, "merge_sensor": 60}
    monkeypatch.setenv("RESCUE_OUTAGE_SENSOR_SECONDS", "5")
    monkeypatch.setenv("RESCUE_MERGE_SENSOR_SECONDS", "600")
    assert intervals() == {"source_outage_sensor": 5, "merge_sensor": 600}
