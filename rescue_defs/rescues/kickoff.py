"""`rescue launch` (and `resume`, `--wait`) and the launchpad's `rescue_job` start a rescue's
runs themselves, through the Dagster webserver.

Waiting for rescue_sensor costs the sensor daemon's loop (a tick every 5 s) and the tick's own
evaluation before anything runs (B1: 2-4 s of a 10-model rescue's 13 s). The CLI (or the
rescue_job op) instead decides exactly as a tick would (`advance`), records the decision with a
*launch marker*, and submits the run through the webserver's GraphQL API (neither has the code
location a run is built from; the webserver has the one the daemon uses).

The launch markers that keep launchers from racing are in markers.py.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from rescue_defs import settings
from rescue_defs.rescues.markers import (  # noqa: F401  (who launches: kickoff.BY_CLI, ...)
    BY_CLI,
    BY_JOB,
    BY_SENSOR,
    MARKER,
    mark,
    pending,
    release,
    reservation,
)
from rescue_defs.rescues.requests import in_check_order
from rescue_defs.rescues.store import (
    ACTIVE,
    ConcurrentUpdate,
    active_ids,
    load,
)

LOOKUP_TIMEOUT_SECONDS = 10
SUBMIT_TIMEOUT_SECONDS = 60
DEFAULT_UI_URL = "http://127.0.0.1:3000"


UI_URL_KEY = "rescue/ui_url"


def ui_url(instance: dg.DagsterInstance | None = None, explicit: str | None = None) -> str:
    """The Dagster UI's address: `explicit`, else RESCUE_UI_URL, else the one the deployment's
    sensors recorded in the instance's storage (remember_ui_url), else dagster dev's default."""
    if explicit:
        return explicit.rstrip("/")
    if settings.get("RESCUE_UI_URL"):
        return settings.get("RESCUE_UI_URL")
    if instance is not None:
        recorded = instance.run_storage.get_cursor_values({UI_URL_KEY}).get(UI_URL_KEY)
        if recorded:
            return recorded
    return DEFAULT_UI_URL


def remember_ui_url(instance: dg.DagsterInstance) -> None:
    """Record this process's RESCUE_UI_URL in the instance's storage, where a CLI on another
    machine (same instance, no such variable) finds it: no file on any one process's disk."""
    from rescue_defs.published import publish

    url = settings.get("RESCUE_UI_URL")
    if url:
        publish(instance, UI_URL_KEY, url)


class Unavailable(Exception):
    """The webserver cannot launch this rescue's run; the sensor will."""


def _graphql(url: str, query: str, variables: Mapping[str, Any], timeout: float) -> dict:
    import requests

    try:
        response = requests.post(
            f"{url}/graphql", json={"query": query, "variables": variables}, timeout=timeout
        )
        response.raise_for_status()
        body = response.json()
    except (requests.RequestException, ValueError) as e:
        raise Unavailable(f"no Dagster webserver answered at {url} ({type(e).__name__})") from e
    if body.get("errors"):
        raise Unavailable(f"the webserver at {url} refused: {body['errors'][0].get('message')}")
    return body["data"]


LOOKUP = """
query ($report: AssetKeyInput!, $models: [AssetKeyInput!]) {
  assetNodeOrError(assetKey: $report) {
    ... on AssetNode {
      partitionKeyConnection(limit: 200, ascending: false) { results }
      repository { name location { name } }
    }
  }
  assetNodes(assetKeys: $models) {
    assetKey { path }
    assetChecksOrError { ... on AssetChecks { checks { name } } }
  }
}
"""

SUBMIT = """
mutation ($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


def _lookup(url: str, rescue_id: str, report: dg.AssetKey, models: list[dg.AssetKey]):
    """(location, repository, checks by asset) of the webserver's code, when it serves this
    instance (it lists the rescue just registered) and every model of the rescue."""
    data = _graphql(
        url,
        LOOKUP,
        {"report": {"path": report.path}, "models": [{"path": k.path} for k in models]},
        LOOKUP_TIMEOUT_SECONDS,
    )
    node = data.get("assetNodeOrError") or {}
    if "repository" not in node:
        raise Unavailable(f"the webserver at {url} serves no {report.to_user_string()}")
    if rescue_id not in (node.get("partitionKeyConnection") or {}).get("results", []):
        raise Unavailable(f"the webserver at {url} serves another Dagster instance")
    checks: dict[dg.AssetKey, set[dg.AssetCheckKey]] = {}
    for found in data["assetNodes"]:
        key = dg.AssetKey(found["assetKey"]["path"])
        listed = (found.get("assetChecksOrError") or {}).get("checks", [])
        checks[key] = {dg.AssetCheckKey(key, c["name"]) for c in listed}
    missing = [k for k in models if k not in checks]
    if missing:
        raise Unavailable(
            f"the webserver at {url} serves another project (no {missing[0].to_user_string()})"
        )
    repository = node["repository"]
    return repository["location"]["name"], repository["name"], checks


# Dagster's UI shows a run's "Launched by" from its `user` tag (else "Manually launched"); the
# runs rescue_sensor requests carry dagster/sensor_name already
TAG_USER = "user"


def launched_by(by: str) -> str:
    """Who started a run the CLI or the launchpad's rescue_job submits, as the UI shows it."""
    if by == BY_CLI:
        import getpass

        try:
            return f"{getpass.getuser()} (rescue CLI)"
        except Exception:  # no user name in a container
            return "rescue CLI"
    return f"{by} (launchpad)" if by == BY_JOB else by


def _submit(
    url: str, location: str, repository: str, request: dg.RunRequest, by: str = BY_CLI
) -> str:
    selector: dict[str, Any] = {
        "repositoryLocationName": location,
        "repositoryName": repository,
        "jobName": request.job_name,
        "assetSelection": [{"path": k.path} for k in request.asset_selection or []],
    }
    if request.asset_check_keys is not None:
        selector["assetCheckSelection"] = [
            {"assetKey": {"path": c.asset_key.path}, "name": c.name}
            for c in request.asset_check_keys
        ]
    params = {
        "selector": selector,
        "runConfigData": request.run_config,
        "executionMetadata": {
            "tags": [
                {"key": k, "value": str(v)}
                for k, v in {TAG_USER: launched_by(by), **request.tags}.items()
            ]
        },
    }
    result = _graphql(url, SUBMIT, {"params": params}, SUBMIT_TIMEOUT_SECONDS)["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        why = result.get("message") or "; ".join(e["message"] for e in result.get("errors", []))
        raise Unavailable(f"the webserver did not launch the run: {result['__typename']} {why}")
    return result["run"]["runId"]


def dbt_test_checks(manifest, models: set[str]) -> set[dg.AssetCheckKey]:
    """The check keys dagster-dbt gives the dbt tests attached to these models: as the code
    location published them when it published every one (no dagster-dbt to import), else
    made here with its translator."""
    from rescue_defs.assets.keys import published_test_checks, translator_for

    tests = manifest.tests_of(models)
    published = published_test_checks(manifest)
    if published is not None and all(t in published for t in tests):
        return {
            dg.AssetCheckKey(dg.AssetKey(found[0]), found[1])
            for t in tests
            if (found := published[t]) is not None
        }
    from dagster_dbt.asset_utils import get_asset_check_key_for_test

    translator = translator_for(manifest.project_dir)
    found = set()
    for test in tests:
        key = get_asset_check_key_for_test(manifest.raw, translator, test, project=None)
        if key is not None:
            found.add(key)
    return found


def launch_next_runs(
    instance: dg.DagsterInstance,
    rescue_id: str,
    keys: Mapping[str, dg.AssetKey],
    manifest,
    url: str,
    by: str = BY_CLI,
) -> str:
    """Start what rescue_sensor's next tick would start, now; a line for the user saying what
    happened. Never raises: whatever goes wrong releases `by`'s reservation (the sensor must
    not wait for it) and leaves the launch to the sensor."""
    try:
        return _launch_next_runs(instance, rescue_id, keys, manifest, url, by)
    except Exception as e:
        release(instance, rescue_id, by)
        return f"{e}: rescue_sensor launches the runs."


def _launch_next_runs(instance, rescue_id: str, keys, manifest, url: str, by: str) -> str:
    from rescue_defs.rescues.advance import advance
    from rescue_defs.rescues.report import REPORT_ASSET

    record = load(instance, rescue_id)
    if record["status"] != ACTIVE:
        return ""

    def leave(message: str) -> str:
        release(instance, rescue_id, by)  # the reservation it was registered with
        return message

    if record.get("heavy") and not record.get("start_now"):
        return leave("rescue_sensor decides when this heavy rescue starts.")
    if active_ids(instance) != [rescue_id]:
        return leave("other rescues are active: rescue_sensor launches the runs in order.")
    models = [keys[m] for step in record["steps"] for m in step["remaining"]]
    try:
        location, repository, checks = _lookup(url, rescue_id, REPORT_ASSET, models)
    except Unavailable as e:
        return leave(f"{e}: rescue_sensor launches the runs.")

    # what rescue_sensor plans: the models' dbt tests (checks of the dbt_models op), not the
    # other checks the webserver lists for them (the proof's run in its own job)
    tests = dbt_test_checks(manifest, {m for step in record["steps"] for m in step["remaining"]})

    def checks_of(asset_keys) -> list[dg.AssetCheckKey]:
        return in_check_order(c for key in asset_keys for c in checks.get(key, ()) if c in tests)

    try:
        tick = advance(instance, record, keys, manifest, checks_of, launcher=by)
    except ConcurrentUpdate:  # canceled meanwhile, say
        return leave("the rescue changed meanwhile: rescue_sensor takes it from here.")
    if not tick.requests:
        return leave("; ".join(tick.messages))
    if active_ids(instance) != [rescue_id]:
        return leave("another rescue became active: rescue_sensor launches the runs in order.")
    launched = [_submit(url, location, repository, r, by) for r in tick.requests]
    return f"launched run(s) {', '.join(r[:8] for r in launched)} through {url}"
