"""The whole incident loop on one Dagster home, nothing typed by a human: daily loads and the
daily pipeline; two sources down for two days while the pipeline keeps running; recovery with
the backlog and late corrections; source_outage_sensor opens the incident, sees the recovery
and registers one grouped rescue; rescue_sensor runs it (its first stage killed mid-run and
resumed automatically); afterwards every model, the three incremental strategies included,
equals a from-scratch build of the same raw data. Then the sensors are ticked again and again
and replayed from an old cursor: nothing is launched twice."""

import json

import dagster as dg

from rescue_defs import rescues
from rescue_defs.automation.launch import TAG_INCIDENT
from rescue_defs.checks.freshness import FRESHNESS_CHECK
from tests.helpers import evaluate_rescue_sensor, execute_request, raw_config
from tests.incidents import Incidents
from tests.test_soak import make_home

DOWN = ("orders", "web_events")
DAYS = [
    ("2026-03-02", (), 0),  # two months of history land at once
    ("2026-03-03", DOWN, 0),
    ("2026-03-04", DOWN, 0),
    ("2026-03-05", (), 5),  # recovery: the backlog lands, and late returns of January orders
]


class Sensors:
    """The daemon's part: tick a sensor with its saved cursor and run what it asks for."""

    def __init__(self, defs: dg.Definitions):
        self.defs = defs
        self.cursors: dict[str, str | None] = {}
        self.history: list[tuple[str, str | None]] = []

    def tick(self, instance, name: str, cursor: str | None = None, run: bool = True):
        sensor = self.defs.resolve_sensor_def(name)
        saved = self.cursors.get(name) if cursor is None else cursor
        with dg.build_sensor_context(
            instance=instance, definitions=self.defs, cursor=saved
        ) as context:
            result = sensor.evaluate_tick(context)
        if result.cursor is not None and cursor is None:
            self.history.append((name, saved))
            self.cursors[name] = result.cursor
        for request in result.run_requests if run else ():
            execute_request(self.defs, instance, request)
        return result

    def settle_outage(self, instance) -> list[str]:
        """Tick until the sensor asks for nothing more; its messages."""
        said = []
        for _ in range(4):
            result = self.tick(instance, "source_outage_sensor")
            said.append(result.skip_message or "")
            if not result.run_requests:
                return said
        raise AssertionError(f"source_outage_sensor keeps asking: {said}")


def _freshness(instance, source: str) -> dg.AssetCheckEvaluation:
    key = dg.AssetCheckKey(dg.AssetKey(["raw", source]), FRESHNESS_CHECK)
    record = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)[0]
    return record.event.dagster_event.asset_check_evaluation_data


def live_the_incident_loop(defs, project, warehouse, tmp_path) -> None:
    loop = Incidents(defs, project, warehouse, tmp_path)
    sensors = Sensors(defs)
    with dg.DagsterInstance.get() as instance:
        assert "first deployment" in sensors.tick(instance, "merge_sensor").skip_message
        for through, down, late in DAYS:
            defs.resolve_job_def("daily_pipeline_job").execute_in_process(
                instance=instance, run_config=raw_config(through, down, late), raise_on_error=False
            )
            said = sensors.settle_outage(instance)
            if through == "2026-03-03":  # one day without data: late (warn_after), not down
                assert _freshness(instance, "orders").metadata["status"].value == "warn"
                assert not any("opened" in s for s in said), said
            if through == "2026-03-04":
                # the outage is visible: failing freshness checks naming the outage's start
                for source in DOWN:
                    check = _freshness(instance, source)
                    assert not check.passed
                    assert check.metadata["down_since"].value.startswith("2026-03-02")
                assert any("opened" in s for s in said), said
                assert not rescues.rescue_ids(instance), "nothing launches while sources are down"
        (rescue_id,) = rescues.rescue_ids(instance)
        record = rescues.load(instance, rescue_id)
        assert record["reason"] == "outage" and record["auto"]
        assert sorted(record["trigger"]["sources"]) == ["raw.orders", "raw.web_events"]
        assert record["tags"][TAG_INCIDENT] == record["trigger"]["incident"]
        names = {record["names"][m] for m in record["plan"]["models"]}
        # the three incremental strategies (merge, delete+insert, append) are in the rescue
        assert {"fct_orders", "fct_monthly_revenue", "fct_page_views"} <= names
        # the late January returns put the monthly model on a full refresh by itself
        assert any(m.endswith(".fct_monthly_revenue") for m in record["plan"]["full_refresh"])

        # rescue_sensor runs it; the first stage's dbt is killed mid-run: resumed once, alone
        killed = False
        for _ in range(30):
            result = evaluate_rescue_sensor(defs, instance)
            for request in result.run_requests or []:
                assert request.tags[TAG_INCIDENT] == record["trigger"]["incident"]
                if not killed and request.tags.get(rescues.TAG_STEP) is not None:
                    loop._run_and_kill_dbt(instance, request)
                    killed = True
                else:
                    execute_request(defs, instance, request)
            record = rescues.load(instance, rescue_id)
            if record["status"] != rescues.ACTIVE:
                break
        assert killed and record.get("auto_resumes") == 1, record["message"]
        loop.assert_claims_hold(instance, record)
        report = rescues.report_markdown(instance, record, loop.keys)
        assert f"incident [{record['trigger']['incident']}](" in report
        loop.assert_every_model_equals_a_clean_build()

        # idempotence: a hundred more ticks of each sensor launch nothing and register nothing
        runs_before = len(instance.get_run_records())
        for name in ("source_outage_sensor", "merge_sensor", "rescue_sensor"):
            for _ in range(100):
                assert not sensors.tick(instance, name, run=False).run_requests, name
        assert rescues.rescue_ids(instance) == [rescue_id]
        # a tick replayed from the cursor it had before the recovery (the daemon crashed
        # before saving it): same incident, same rescue id, nothing new
        before_recovery = next(
            saved
            for name, saved in reversed(sensors.history)
            if name == "source_outage_sensor"
            and saved
            and json.loads(saved)["state"]["open"]
            and all(
                e["recovered_at"] is None
                for i in json.loads(saved)["state"]["open"]
                for e in i["sources"].values()
            )
        )
        replay = sensors.tick(instance, "source_outage_sensor", cursor=before_recovery, run=False)
        assert f"rescue {rescue_id} was already registered" in replay.skip_message
        assert not replay.run_requests
        assert rescues.rescue_ids(instance) == [rescue_id]
        assert not evaluate_rescue_sensor(defs, instance).run_requests
        assert len(instance.get_run_records()) == runs_before


def test_outage_sensor_rescues_a_two_source_outage_to_equal_a_from_scratch_build(
    tmp_path, monkeypatch, shop_defs, shop_project, warehouse
):
    make_home(tmp_path, monkeypatch, database=None)
    live_the_incident_loop(shop_defs, shop_project, warehouse, tmp_path)


def test_a_fresh_deployment_measures_its_sources_after_their_first_load_not_before(
    shop_defs, instance
):
    """Nothing red before anything was loaded: the loaders' tables do not exist yet."""
    sensor = shop_defs.resolve_sensor_def("source_outage_sensor")

    def tick() -> dg.SensorResult:
        with dg.build_sensor_context(instance=instance, definitions=shop_defs) as context:
            return sensor.evaluate_tick(context)

    before = tick()
    assert not before.run_requests
    assert "never loaded yet" in before.skip_message
    assert not instance.get_runs(filters=dg.RunsFilter(job_name="source_freshness_job"))
    job = shop_defs.resolve_implicit_global_asset_job_def()
    raw = [
        k for k in shop_defs.resolve_asset_graph().materializable_asset_keys if k.path[0] == "raw"
    ]
    assert job.execute_in_process(
        instance=instance, run_config=raw_config("2026-01-10"), asset_selection=raw
    ).success
    (request,) = tick().run_requests
    assert request.job_name == "source_freshness_job"
