"""Randomized incidents (tests/incidents.py) on one persistent Dagster home: a seeded schedule
in CI; `bench/incident_soak.py` runs many more."""

import pytest

from tests.incidents import Incidents, schedule
from tests.test_soak import make_home


# seed 77's four days hold what the schedule is for: an outage, late corrections, two rescues
# launched at once, one of them killed mid-run and resumed (seed 1 needed six days for it)
@pytest.mark.parametrize("seed", [77])
def test_after_every_rescue_of_a_random_incident_schedule_models_equal_a_clean_build(
    seed, shop_defs, shop_project, warehouse, tmp_path, monkeypatch
):
    make_home(tmp_path, monkeypatch, None)
    days = schedule(seed, days=4)
    assert any(d.down for d in days) and any(d.late_returns for d in days)
    assert any(len(d.rescues) == 2 for d in days)  # two rescues launched at once
    assert any(d.kill for d in days)  # dbt killed mid-run, the engineer resumes
    incidents = Incidents(shop_defs, shop_project, warehouse, tmp_path)
    ended = incidents.live(days)
    assert ended and all(s == "succeeded" for e in ended for s in e.values()), ended
    assert incidents.resumed_after_kill == 1  # the killed rescue failed, was resumed, held
    assert incidents.checked == len(ended)  # a from-scratch comparison after every rescue
