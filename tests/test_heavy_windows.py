"""Heavy rescues (the playbook's "Scheduling Heavy Reloads"), with an injected clock
(RESCUE_NOW) and peak hours (RESCUE_PEAK_HOURS): inside peak hours a heavy rescue waits, visibly,
for the low-traffic window and starts in it; a light one starts at once; two heavy ones run one
after the other, never side by side; `--now` starts at once and is recorded."""

import dagster as dg

from rescue_defs import rescues
from rescue_defs.assets.dbt import load_manifest, model_asset_keys
from tests.helpers import (
    evaluate_rescue_sensor,
    execute_request,
    materialize_all,
    raw_config,
    rescue_id_of,
    start_rescue,
)

WEDNESDAY_AT_PEAK = "2026-03-04T10:00:00"
WEDNESDAY_EVENING = "2026-03-04T18:30:00"


def _keys(project):
    return model_asset_keys(load_manifest(str(project.manifest_path), str(project.project_dir)))


def _launch(defs, instance, select: str, **config) -> str:
    started = start_rescue(defs, instance, select=select, reason="heavy test", **config)
    assert started.success
    return rescue_id_of(started)


def _first_start(instance, rescue_id: str) -> float:
    return min(
        instance.get_run_record_by_id(r.run_id).start_time
        for r in rescues.step_runs(instance, rescue_id)
        if rescues.TAG_STEP in r.tags
    )


def _last_end(instance, rescue_id: str) -> float:
    return max(
        instance.get_run_record_by_id(r.run_id).end_time
        for r in rescues.step_runs(instance, rescue_id)
    )


def test_heavy_rescues_wait_for_the_low_traffic_window_and_never_run_side_by_side(
    shop_defs, shop_project, instance, monkeypatch
):
    monkeypatch.setenv("RESCUE_PEAK_HOURS", "8-18")
    monkeypatch.setenv("RESCUE_NOW", WEDNESDAY_AT_PEAK)
    monkeypatch.setenv("RESCUE_PROOF", "off")  # proofs are tested elsewhere; not the point here
    # a warehouse built by an earlier deployment (its own Dagster instance): on this one no
    # model has history yet, so a full refresh of an incremental model is expected to take 10x
    # its default: heavy
    with dg.instance_for_test() as earlier:
        materialize_all(shop_defs, earlier, raw_config("2026-03-03"))
    heavy_a = _launch(shop_defs, instance, "fct_orders", full_refresh_models=["fct_orders"])
    heavy_b = _launch(shop_defs, instance, "fct_page_views", full_refresh_models=["fct_page_views"])
    light = _launch(shop_defs, instance, "stg_customers")
    keys = _keys(shop_project)
    for rescue_id in (heavy_a, heavy_b):
        assert rescues.load(instance, rescue_id)["heavy"], "planned heavy"
    assert not rescues.load(instance, light)["heavy"]

    # at peak: only the light one starts; the heavy ones say until when they wait
    requests = evaluate_rescue_sensor(shop_defs, instance).run_requests
    assert {r.tags[rescues.TAG_ID] for r in requests} == {light}
    for rescue_id in (heavy_a, heavy_b):
        line = rescues.status_lines(instance, rescue_id, keys)[0]
        assert "at peak hours: waits for the low-traffic window at 2026-03-04 18:00 UTC" in line
    for request in requests:
        execute_request(shop_defs, instance, request)
    assert not evaluate_rescue_sensor(shop_defs, instance).run_requests  # still peak
    assert rescues.load(instance, light)["status"] == rescues.SUCCEEDED

    # the window opens: one heavy rescue starts, the other waits for it to end
    monkeypatch.setenv("RESCUE_NOW", WEDNESDAY_EVENING)
    waited_for_heavy = False
    for _ in range(20):
        result = evaluate_rescue_sensor(shop_defs, instance)
        launched = {r.tags[rescues.TAG_ID] for r in result.run_requests or []}
        assert len(launched) <= 1, "two heavy rescues never run side by side"
        active = {i for i in (heavy_a, heavy_b) if rescues.load(instance, i)["status"] == "active"}
        if len(active) == 2:
            waiting = (active - launched).pop() if launched else None
            if waiting is not None:
                message = rescues.load(instance, waiting)["message"]
                waited_for_heavy |= "waits for heavy rescue" in message
        for request in result.run_requests or []:
            execute_request(shop_defs, instance, request)
        if not active:
            break
    assert waited_for_heavy
    for rescue_id in (heavy_a, heavy_b):
        record = rescues.load(instance, rescue_id)
        assert record["status"] == rescues.SUCCEEDED, record["message"]
        report = rescues.report_markdown(instance, record, keys)
        assert "- waited: heavy" in report and "18:00 UTC" in report
    first, second = sorted((heavy_a, heavy_b), key=lambda i: _first_start(instance, i))
    assert _last_end(instance, first) <= _first_start(instance, second)
    assert _first_start(instance, first) > _last_end(instance, light)


def test_a_heavy_rescue_launched_with_now_starts_at_peak_and_says_so(
    shop_defs, shop_project, instance, monkeypatch
):
    monkeypatch.setenv("RESCUE_PEAK_HOURS", "8-18")
    monkeypatch.setenv("RESCUE_NOW", WEDNESDAY_AT_PEAK)
    rescue_id = _launch(
        shop_defs, instance, "fct_orders", full_refresh_models=["fct_orders"], now=True
    )
    record = rescues.load(instance, rescue_id)
    assert record["heavy"] and record["start_now"]
    requests = evaluate_rescue_sensor(shop_defs, instance).run_requests
    assert [r.tags[rescues.TAG_ID] for r in requests] == [rescue_id]
    report = rescues.report_markdown(instance, record, _keys(shop_project))
    assert "started with --now" in report
