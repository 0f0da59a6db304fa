"""The README's first command, end to end: `./dev demo` serves the UI; everything materializes;
a rescue launched from the UI's launchpad in a real headless Chromium runs to its report."""

import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from rescue_defs.rescues.kickoff import UI_URL_KEY
from tests.demo_server import ASSET_GROUPS, LAUNCH, REPO, start, stop
from tests.demo_server import wait_for as _wait_for


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    """`./dev demo` in its own Dagster home and warehouse, shared by this module's tests."""
    tmp_path = tmp_path_factory.mktemp("demo")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "RESCUE_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
    }
    server = start(env, tmp_path / "dagster-dev.log")
    try:
        yield server.client(), server.log, server.port, {**env, "PORT": str(server.port)}
    finally:
        stop(server)


MATERIALIZABLE = """
{ assetNodes { assetKey { path } isMaterializable repository { name location { name } } } }
"""


@pytest.fixture(scope="module")
def materialized(demo) -> str:
    """What "Materialize all" in the UI launches (the implicit asset job over every asset that
    can be materialized, with their checks), once per demo: each test of this module can then
    run alone."""
    client, log, _, _ = demo
    nodes = [n for n in client._execute(MATERIALIZABLE)["assetNodes"] if n["isMaterializable"]]
    repository = nodes[0]["repository"]
    params = {
        "selector": {
            "repositoryLocationName": repository["location"]["name"],
            "repositoryName": repository["name"],
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": n["assetKey"]["path"]} for n in nodes],
        },
        "runConfigData": {"ops": {"raw_sources": {"config": {"through_date": "2026-01-12"}}}},
    }
    launched = client._execute(LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    return _wait_for(
        lambda: (
            (s := client.get_run_status(run_id).value) in ("SUCCESS", "FAILURE", "CANCELED") and s
        ),
        300,
        "the run",
        log,
    )


def test_demo_serves_the_lineage_and_materializes_everything(demo, materialized):
    client, log, _, env = demo
    nodes = client._execute(ASSET_GROUPS)["assetNodes"]
    # the CLI finds this UI: rescue_sensor recorded the address ./dev demo gave it
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        recorded = instance.run_storage.get_cursor_values({UI_URL_KEY})[UI_URL_KEY]
    assert recorded == f"http://127.0.0.1:{env['PORT']}"
    group_of = {"/".join(n["assetKey"]["path"]): n["groupName"] for n in nodes}
    assert set(group_of.values()) == {"raw", "staging", "intermediate", "marts", "rescue"}
    deps = {"/".join(n["assetKey"]["path"]): n["dependencyKeys"] for n in nodes}
    assert {"path": ["raw", "orders"]} in deps["stg_order_status_changes"]
    assert materialized == "SUCCESS"


RUN_STEPS = """
query ($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run { status stepStats { stepKey } assetCheckSelection { name } }
  }
}
"""

CHECK_EVALUATIONS = """
query ($runId: ID!) {
  logsForRun(runId: $runId, limit: 5000) {
    ... on EventConnection {
      events { __typename ... on AssetCheckEvaluationEvent { evaluation { checkName } } }
    }
  }
}
"""


def test_materialize_in_the_ui_runs_the_dbt_step_alone_and_leaves_the_proof_out(
    demo, materialized, tmp_path
):
    """ "Materialize" on an incremental model's page, clicked in the browser: the run has the
    steps a plain dagster-dbt location has (the dbt assets' step) and evaluates the dbt tests
    and the row-count and max-date checks, never the proof (a rescue's proof run does)."""
    from playwright.sync_api import sync_playwright

    client, log, port, _ = demo
    assert materialized == "SUCCESS"
    before = {r["runId"] for r in _runs(client, "__ASSET_JOB")}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        try:
            page.goto(f"http://127.0.0.1:{port}/assets/fct_orders")
            _dismiss_welcome(page)
            # the page's own button (an icon, then its label), not its dropdown's
            button = page.get_by_role("button", name="Materialize").first
            button.wait_for(timeout=120_000)
            button.click()
        except Exception:
            page.screenshot(path=str(tmp_path / "materialize.png"))
            raise

        def launched():
            new = [r for r in _runs(client, "__ASSET_JOB") if r["runId"] not in before]
            return new and new[0]["status"] in ("SUCCESS", "FAILURE") and new[0]

        run = _wait_for(launched, 180, "the UI's materialization", log)
        browser.close()
    found = client._execute(RUN_STEPS, {"runId": run["runId"]})["runOrError"]
    assert {s["stepKey"] for s in found["stepStats"]} == {"dbt_models"}, found
    # the UI selected every check of the asset, the proof's among them
    selected = {c["name"] for c in found["assetCheckSelection"]}
    assert {"equals_a_from_scratch_build", "row_count_is_expected"} <= selected, selected
    events = client._execute(CHECK_EVALUATIONS, {"runId": run["runId"]})["logsForRun"]["events"]
    evaluated = {e["evaluation"]["checkName"] for e in events if e.get("evaluation")}
    assert {"row_count_is_expected", "max_date_is_current"} <= evaluated, evaluated
    assert "equals_a_from_scratch_build" not in evaluated
    assert run["status"] == "SUCCESS"


RESCUE_RUNS = """
query ($job: String!) {
  runsOrError(filter: {pipelineName: $job}) {
    ... on Runs { results { runId status tags { key value } } }
  }
}
"""


def _runs(client, job: str) -> list[dict]:
    return client._execute(RESCUE_RUNS, {"job": job})["runsOrError"]["results"]


def _chromium() -> str:
    for path in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(path).exists():
            return path
    pytest.fail("the UI test needs Chromium: `./dev test` installs Debian's chromium package")


def _dismiss_welcome(page) -> None:
    """A fresh Dagster home greets the first visitor with a community dialog."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=10_000)
    except PlaywrightTimeout:
        return
    skip.click()
    skip.wait_for(state="hidden", timeout=10_000)


def test_a_rescue_launched_from_the_launchpad_runs_its_stages_and_reports(
    demo, materialized, tmp_path
):
    from playwright.sync_api import sync_playwright

    client, log, port, _ = demo
    assert materialized == "SUCCESS"  # the warehouse has raw data and models to rescue
    base = f"http://127.0.0.1:{port}"
    # what an on-call engineer types into rescue_job's launchpad
    config = (
        'ops: {start_rescue: {config: {select: "+fct_daily_revenue", layered: false, '
        'reason: "launched from the UI"}}}'
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        try:
            page.goto(f"{base}/locations/rescue_defs/jobs/rescue_job/playground")
            editor = page.locator(".CodeMirror").first
            editor.wait_for(timeout=120_000)
            _dismiss_welcome(page)
            editor.click()
            page.keyboard.press("Control+A")
            page.keyboard.press("Delete")
            # inserted as text: typing would trigger the editor's bracket auto-closing
            page.keyboard.insert_text(config)
            launch = page.get_by_role("button", name="Launch Run")
            launch.wait_for(timeout=60_000)
            launch.click()
            page.wait_for_url("**/runs/**", timeout=60_000)
        except Exception:
            page.screenshot(path=str(tmp_path / "launchpad.png"))
            raise

        def start_run():
            runs = _runs(client, "rescue_job")
            return runs and runs[0]["status"] in ("SUCCESS", "FAILURE") and runs[0]

        start = _wait_for(start_run, 180, "rescue_job's run", log)
        assert start["status"] == "SUCCESS"

        # the form's op submits the stage run (rescue_sensor would at its next tick)
        def stage_done():
            runs = _runs(client, "rescue_step_job")
            return runs and all(r["status"] in ("SUCCESS", "FAILURE") for r in runs) and runs

        stages = _wait_for(stage_done, 400, "the rescue's stage run", log)
        assert [r["status"] for r in stages] == ["SUCCESS"]
        tags = {t["key"]: t["value"] for t in stages[0]["tags"]}
        assert tags["rescue/reason"] == "launched from the UI"
        rescue_id = tags["rescue/id"]
        # the run that started it is found by the same tag
        assert {"key": "rescue/id", "value": rescue_id} in start["tags"]

        # the report, as the UI shows it on the rescue_report asset
        report_page = browser.new_page(viewport={"width": 1600, "height": 1000})

        def report_shown():
            report_page.goto(f"{base}/assets/rescue_report?view=partitions&partition={rescue_id}")
            report_page.wait_for_load_state("networkidle")
            return rescue_id in report_page.content() and "succeeded" in report_page.content()

        try:
            _wait_for(report_shown, 120, "the rescue report in the UI", log)
        except BaseException:
            report_page.screenshot(path=str(tmp_path / "report.png"))
            raise
        browser.close()


SENSOR = {
    "repositoryLocationName": "rescue_defs",
    "repositoryName": "__repository__",
    "sensorName": "rescue_sensor",
}
SENSOR_STATE = """
query ($s: SensorSelector!) {
  sensorOrError(sensorSelector: $s) {
    ... on Sensor { jobOriginId sensorState { selectorId status } }
  }
}
"""
STOP_SENSOR = """
mutation ($origin: String, $selector: String) {
  stopSensor(jobOriginId: $origin, jobSelectorId: $selector) { __typename }
}
"""
START_SENSOR = """
mutation ($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename } }
"""


def _sensor_status(client) -> str:
    return client._execute(SENSOR_STATE, {"s": SENSOR})["sensorOrError"]["sensorState"]["status"]


@contextmanager
def _sensor_off(client):
    """rescue_sensor stopped (every run must come from elsewhere than a tick), then back on."""
    state = client._execute(SENSOR_STATE, {"s": SENSOR})["sensorOrError"]
    client._execute(
        STOP_SENSOR,
        {"origin": state["jobOriginId"], "selector": state["sensorState"]["selectorId"]},
    )
    assert _sensor_status(client) == "STOPPED"
    try:
        yield
    finally:
        client._execute(START_SENSOR, {"s": SENSOR})
        assert _sensor_status(client) == "RUNNING"


def test_rescue_launch_wait_starts_every_run_itself_through_the_ui(demo, materialized):
    client, log, port, env = demo
    assert materialized == "SUCCESS"
    with _sensor_off(client):
        _launch_with_the_sensor_off(client, port, env)


def test_the_launchpad_form_starts_the_first_run_itself_without_a_sensor_tick(demo, materialized):
    client, log, _, env = demo
    assert materialized == "SUCCESS"
    with _sensor_off(client):
        # what the launchpad's "Launch Run" sends
        start_id = client.submit_job_execution(
            "rescue_job",
            run_config={
                "ops": {"start_rescue": {"config": {"select": "stg_payments+", "layered": False}}}
            },
        )

        def started():
            runs = [r for r in _runs(client, "rescue_job") if r["runId"] == start_id]
            return runs and runs[0]["status"] in ("SUCCESS", "FAILURE") and runs[0]

        start = _wait_for(started, 180, "rescue_job's run", log)
        assert start["status"] == "SUCCESS", _failure_messages(client, start_id)
        rescue_id = {t["key"]: t["value"] for t in start["tags"]}["rescue/id"]

        def stage_run():
            runs = [
                r
                for r in _runs(client, "rescue_step_job")
                if {"key": "rescue/id", "value": rescue_id} in r["tags"]
            ]
            return runs and runs[0]["status"] in ("SUCCESS", "FAILURE") and runs

        # with no tick to launch it, the run exists because the form's op submitted it
        runs = _wait_for(stage_run, 300, "the rescue's run", log)
        assert [r["status"] for r in runs] == ["SUCCESS"]
        assert "dagster/sensor_name" not in {t["key"] for t in runs[0]["tags"]}
        # the UI's "Launched by" says who, not "Manually launched"
        assert {"key": "user", "value": "rescue_job (launchpad)"} in runs[0]["tags"]
    # the sensor back on ends the rescue (report, proof): nothing is left active for the others
    rescue = [str(REPO / ".venv" / "bin" / "rescue"), "status"]

    def ended():
        listed = subprocess.run(rescue, env=env, capture_output=True, text=True).stdout
        return re.search(rf"^{rescue_id}\s+succeeded", listed, re.M)

    _wait_for(ended, 300, f"rescue {rescue_id} to end", log)


def _launch_with_the_sensor_off(client, port, env) -> None:
    launched = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "rescue"),
            "launch",
            "--select",
            "int_orders_enriched+",
            "--now",
            "--wait",
            "--wait-timeout",
            "400",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
    )
    out = launched.stdout
    assert launched.returncode == 0, out + launched.stderr
    rescue_id = re.search(r"^rescue (\S+): active$", out, re.M).group(1)
    # the CLI found the demo's webserver (./dev demo wrote its address) and submitted the run
    ui = f"http://127.0.0.1:{port}"
    started = re.search(rf"^launched run\(s\) (\w{{8}}) through {ui}$", out, re.M)
    assert started, out
    assert re.search(rf"^rescue {rescue_id}: succeeded", out, re.M), out
    runs = [
        r
        for r in _runs(client, "rescue_step_job")
        if {"key": "rescue/id", "value": rescue_id} in r["tags"]
    ]
    # one run, stage after stage, the one the CLI submitted: no tick launched it again
    assert [r["runId"][:8] for r in runs] == [started.group(1)], runs
    assert runs[0]["status"] == "SUCCESS"
    assert "dagster/sensor_name" not in {t["key"] for t in runs[0]["tags"]}
    # the UI's "Launched by" says who, not "Manually launched"
    user = {t["key"]: t["value"] for t in runs[0]["tags"]}["user"]
    assert user.endswith("(rescue CLI)"), user
    # the same run proved its incremental models after its last stage: no proof run apart
    proofs = [
        r
        for r in _runs(client, "rescue_step_job")
        if {"key": "rescue/id", "value": rescue_id} in r["tags"]
        and {"key": "rescue/kind", "value": "proof"} in r["tags"]
    ]
    assert proofs == [], proofs
    assert {"key": "rescue/proof", "value": "0"} in runs[0]["tags"]
    assert "equal a from-scratch build, row for row" in out


def test_while_a_rescue_runs_a_typo_is_refused_at_once_and_cancel_terminates_its_run(
    demo, materialized
):
    client, log, _, env = demo
    assert materialized == "SUCCESS"
    rescue = [str(REPO / ".venv" / "bin" / "rescue")]
    # an analyst's notebook holds the warehouse open: the run's dbt step waits for it (up to
    # RESCUE_LOCK_WAIT_SECONDS) before any dbt command, so the run is surely still running when
    # the cancel comes (a whole build alone can end first: it takes ~10 s)
    code = (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('open', flush=True); "
        "time.sleep(300)"
    )
    notebook = subprocess.Popen(
        [sys.executable, "-c", code, env["RESCUE_DUCKDB_PATH"]], stdout=subprocess.PIPE, text=True
    )
    assert notebook.stdout.readline().strip() == "open"
    try:
        _launch_then_cancel(client, log, env, rescue)
    finally:
        notebook.kill()
        notebook.wait()


FAILURE_MESSAGES = """
query ($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run {
      eventConnection {
        events { __typename ... on ExecutionStepFailureEvent { error { message } } }
      }
    }
  }
}
"""


def _failure_messages(client, run_id: str) -> list[str]:
    events = client._execute(FAILURE_MESSAGES, {"runId": run_id})["runOrError"]
    return [
        e["error"]["message"]
        for e in events["eventConnection"]["events"]
        if e["__typename"] == "ExecutionStepFailureEvent"
    ]


def _a_launchpad_typo_is_refused_at_once(client, log, rescue_run_id: str) -> None:
    """While a rescue's run holds the warehouse: the launchpad's form with a typo."""
    submitted = time.monotonic()
    run_id = client.submit_job_execution(
        "rescue_job",
        run_config={"ops": {"start_rescue": {"config": {"select": "int_order_enriched+"}}}},
    )

    def ended():
        status = client.get_run_status(run_id).value
        return status in ("SUCCESS", "FAILURE", "CANCELED") and status

    assert _wait_for(ended, 120, "the typo's run to end", log) == "FAILURE"
    took = time.monotonic() - submitted
    (message,) = _failure_messages(client, run_id)
    assert "did you mean `int_orders_enriched+`?" in message, message
    assert len(message.strip().splitlines()) == 1, message
    print(f"launchpad typo refused {took:.1f} s after submission, beside a running rescue")
    # not a wait in the queue behind the running rescue (it holds the warehouse for minutes)
    assert took < 60, took
    tags = {
        t["key"] for r in _runs(client, "rescue_job") if r["runId"] == run_id for t in r["tags"]
    }
    assert "rescue/id" not in tags, "no rescue was registered: no id to tag"


def _launch_then_cancel(client, log, env, rescue) -> None:
    # every model, one run, each incremental rebuilt from scratch; --force: the checklist
    # blocks on the notebook's open connection
    launched = subprocess.run(
        [
            *rescue,
            "launch",
            "--select",
            "fqn:*",
            "--single-stage",
            "--full-refresh",
            "--force",
            "--reason",
            "to be canceled",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert launched.returncode == 0, launched.stdout + launched.stderr
    rescue_id = re.search(r"^rescue (\S+): active$", launched.stdout, re.M).group(1)

    def running():
        runs = [
            r
            for r in _runs(client, "rescue_step_job")
            if {"key": "rescue/id", "value": rescue_id} in r["tags"]
        ]
        return runs and runs[0]["status"] == "STARTED" and runs[0]

    run = _wait_for(running, 300, "the rescue's run to start", log)
    _a_launchpad_typo_is_refused_at_once(client, log, run["runId"])
    canceled = subprocess.run(
        [*rescue, "cancel", rescue_id], env=env, capture_output=True, text=True, timeout=120
    )
    assert canceled.returncode == 0, canceled.stdout + canceled.stderr
    assert f"terminated run(s) {run['runId'][:8]}" in canceled.stdout, canceled.stdout

    def ended():
        status = client.get_run_status(run["runId"]).value
        return status in ("CANCELED", "SUCCESS", "FAILURE") and status

    assert _wait_for(ended, 120, "the run to end", log) == "CANCELED"
    status = subprocess.run(
        [*rescue, "status", rescue_id], env=env, capture_output=True, text=True, timeout=120
    )
    assert f"rescue {rescue_id}: canceled" in status.stdout, status.stdout + status.stderr


def test_the_report_link_the_cli_prints_opens_that_rescue_not_the_latest(demo, tmp_path):
    from playwright.sync_api import sync_playwright

    client, log, port, env = demo
    rescue = [str(REPO / ".venv" / "bin" / "rescue"), "launch", "--dry-run", "--select"]
    links = {}
    for select in ("stg_customers", "stg_products"):  # two plans, the second one the latest
        out = subprocess.run(
            [*rescue, select], env=env, capture_output=True, text=True, check=True
        ).stdout
        rescue_id = re.search(r"^rescue (\S+): dry_run$", out, re.M).group(1)
        links[rescue_id] = re.search(r"^report: (\S+)$", out, re.M).group(1)
    (first, link), latest = next(iter(links.items())), list(links)[-1]
    assert link.startswith(f"http://127.0.0.1:{port}/")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        try:
            page.goto(link)
            _dismiss_welcome(page)
            # the materialization shown: its metadata row naming the rescue
            shown = page.locator("tr", has_text="rescue_id").first
            shown.wait_for(timeout=60_000)
            text = shown.inner_text()
            assert first in text and latest not in text, text
        finally:
            page.screenshot(path=str(tmp_path / "report-link.png"))
            browser.close()


def _screenshot(page, name: str) -> None:
    """Kept for people (CI keeps the folder as an artifact); never committed."""
    folder = Path(os.environ.get("RESCUE_TEST_ARTIFACTS", REPO / "test-artifacts")) / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"))


def test_succeeded_and_canceled_rescues_are_told_apart_in_the_check_partitions(demo, materialized):
    from playwright.sync_api import sync_playwright

    client, log, port, env = demo
    assert materialized == "SUCCESS"
    rescue = [str(REPO / ".venv" / "bin" / "rescue")]

    def run(*args: str) -> str:
        done = subprocess.run([*rescue, *args], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    succeeded = re.search(
        r"^rescue (\S+): succeeded",
        run("launch", "--select", "stg_customers", "--now", "--wait"),
        re.M,
    ).group(1)
    # 17 models in two stages: still running when the cancel comes (one model alone was
    # done before it once, on a busy machine)
    canceled = re.search(
        r"^rescue (\S+): active$", run("launch", "--select", "stg_products+", "--force"), re.M
    ).group(1)
    run("cancel", canceled)
    evaluated = """
    query ($name: String!) {
      assetCheckExecutions(assetKey: {path: ["rescue_report"]}, checkName: $name, limit: 50) {
        status evaluation { partition }
      }
    }
    """

    def both_evaluated():
        found = client._execute(evaluated, {"name": "rescue_succeeded"})["assetCheckExecutions"]
        status = {e["evaluation"]["partition"]: e["status"] for e in found if e["evaluation"]}
        return {succeeded, canceled} <= set(status) and status

    status = _wait_for(both_evaluated, 120, "rescue_report_sensor's evaluations", log)
    assert (status[succeeded], status[canceled]) == ("SUCCEEDED", "FAILED")
    base = f"http://127.0.0.1:{port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        try:
            page.goto(f"{base}/assets/rescue_report?view=checks&checkDetail=rescue_succeeded")
            _dismiss_welcome(page)
            # the check's own tabs, once its detail has loaded (the asset has a Partitions tab too)
            page.get_by_role("tab", name="Execution history").wait_for(timeout=60_000)
            page.get_by_role("tab", name="Partitions").last.click()
            # the list's own status filters count them apart, without opening one
            page.get_by_text("Passed (").first.wait_for(timeout=60_000)
            body = page.inner_text("body")
            assert re.search(r"Failed\s*\(([1-9]\d*)\)", body), body
            assert re.search(r"Passed\s*\(([1-9]\d*)\)", body), body
            _screenshot(page, "rescue-succeeded-partitions")
        finally:
            browser.close()
