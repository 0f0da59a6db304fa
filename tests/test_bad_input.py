"""The bad-input corpus (issue 25): what a hostile user or a bad night types, table-driven.

Every case runs against one real Dagster home and one built warehouse and asserts: the
command exits 2 (the launchpad's run fails), with one line that names the input, no rescue is
registered, and the warehouse file is byte for byte what it was."""

import hashlib
from pathlib import Path

import dagster as dg
import pytest

from rescue_defs import rescues
from rescue_defs.cli import main
from tests.conftest import copy_of_build

# selection terms: refused by `rescue plan` and `rescue launch` alike
TERMS = [
    ("no_such_model", "matches no model"),
    ("int_order_enriched+", "did you mean"),
    ("fct_orders+ no_such_model+", "no_such_model+"),
    ("tag:", "has no value"),
    ("+", "has no value"),
    ("@", "has no value"),
    ("tag:no_such_tag", "matches no model"),
    ("nope:x", "nope:x"),
    ("@fct_orders+", "@fct_orders+"),
    ("path:/etc", "relative to the project folder"),
    ("path:~/secrets", "relative to the project folder"),
    ("path:../../etc", "matches no model"),
    ("state:modified", "previous manifest"),
    ("state:modified+", "previous manifest"),
    ("state:new", "previous manifest"),
    ("result:error", "run_results.json"),
    ("result:fail+", "run_results.json"),
    ("source_status:fresher", "freshness results"),
    ("source_status:fresher+", "freshness results"),
    ("source:nope+", "matches no model"),
    ("exposure:nope", "matches no model"),
    ("test:nope", "not a valid method name"),
    ("package:nope", "matches no model"),
    ("config.materialized:view_typo", "matches no model"),
    ("fqn:nope.nope", "matches no model"),
    ("fct_orders,dim_customers", "matches no model"),
    ("x" * 5000, "(5000 characters)"),
    ("'; drop table main.fct_orders; --", "';"),
    ("fct_orders; rm -rf /", "fct_orders;"),
    ("$(touch /tmp/pwned)", "touch"),
    ("fct_orders\x00", "fct_orders"),
    ("../fct_orders", "matches no model"),
    ("fct_orders+1+", "fct_orders+1+"),
    ("1+@fct_orders", "1+@fct_orders"),
    ("version:latest", "matches no model"),
    ("access:private", "matches no model"),
    ("group:nope", "matches no model"),
    ("saved_query:nope", "matches no model"),
    ("semantic_model:nope", "matches no model"),
    ("unit_test:nope", "matches no model"),
]
# flags and arguments, each with what the refusal names
FLAGS = [
    (["--select", "a", "--select", "b"], "given twice"),
    (["--select", "fct_orders", "--exclude", "a", "--exclude", "b"], "given twice"),
    (["--select", "fct_orders", "--exclude", "fct_orders"], "removes every selected model"),
    (["--select", "fct_orders+", "--exclude", "fct_order"], "matches nothing"),
    (["--select", "fct_orders", "--exclude", "state:modified"], "previous manifest"),
    (["--select", ""], "empty"),
    (["--select", "   "], "empty"),
    (["--select", "fct_orders", "--today", "9999-12-31"], "2199-12-31"),
    (["--select", "fct_orders", "--today", "2026-02-30"], "2026-02-30"),
    (["--select", "fct_orders", "--today", "yesterday"], "yesterday"),
    (["--select", "fct_orders", "--today", "0001-01-01"], "1970-01-01"),
    (["--select", "fct_orders", "--today", ""], "--today"),
    (["--select", "fct_orders", "--changed-from", "2026-13-01"], "2026-13-01"),
    (["--select", "fct_orders", "--changed-to", "2026-02-01"], "--changed-to needs"),
    (
        ["--select", "fct_orders", "--changed-from", "2026-02-10", "--changed-to", "2026-02-01"],
        "is before --changed-from",
    ),
    (["--select", "fct_orders", "--full-refresh-models", "no_such_model"], "no_such_model"),
    (["--select", "fct_orders", "--full-refresh", "--no-full-refresh"], "not allowed with"),
    (["--select", "fct_orders", "--layered", "--single-stage"], "not allowed with"),
    (["--select", "fct_orders", "--fullrefresh"], "unrecognized arguments"),
    (["--select", "fct_orders", "--state", "/nonexistent/manifest.json"], "/nonexistent"),
    (["--select", "fct_orders", "extra"], "unrecognized arguments"),
    (["--select"], "expected one argument"),
    ([], "required: --select"),
    (["--select", "fct_orders", "--reason", ""], "a reason is needed"),
    (["--select", "fct_orders", "--reason", " "], "a reason is needed"),
    (["--select", "fct_orders", "--reason", "x" * 5000], "at most 200 characters"),
    (["--select", "fct_orders", "--reason", "two\nlines"], "on one line"),
]
LAUNCH_FLAGS = [
    (["--wait-timeout", "nan"], "--wait-timeout"),
    (["--wait-timeout", "-1"], "--wait-timeout"),
    (["--wait-timeout", "0"], "--wait-timeout"),
    (["--wait-timeout", "inf"], "--wait-timeout"),
    (["--wait-timeout", "1e99"], "--wait-timeout"),
    (["--max-runtime", "-5"], "--max-runtime"),
    (["--max-runtime", "0"], "--max-runtime"),
    (["--max-runtime", "1.5"], "--max-runtime"),
    (["--max-runtime", "99999999999"], "--max-runtime"),
    (["--project-dir", "/nonexistent"], "no dbt_project.yml"),
    (["--ui", "not a url"], "--ui"),
]
IDS = [
    ("x" * 100_000, "(100000 characters)"),
    ("a;drop table b", "not a rescue id"),
    ("", "not a rescue id"),
    ("../../etc/passwd", "not a rescue id"),
    ("-rf", "-rf"),
    ("no-such-rescue", "no rescue 'no-such-rescue'"),
    ("20261203-000000-x-000000", "no rescue '20261203-000000-x-000000'"),
]
ENVIRONMENT = [
    ("RESCUE_PEAK_HOURS", "25-3"),
    ("RESCUE_PEAK_HOURS", "18-8"),
    ("RESCUE_PEAK_HOURS", "evenings"),
    ("RESCUE_PEAK_HOURS", "8-18-20"),
    ("RESCUE_BUSINESS_TIMEZONE", "Mars/Olympus"),
    ("RESCUE_BUSINESS_TIMEZONE", "UTC+25"),
    ("RESCUE_WAREHOUSE_TIMEZONE", "../../etc/passwd"),
    ("RESCUE_NOW", "garbage"),
    ("RESCUE_NOW", "9999-12-31T00:00:00"),
    ("RESCUE_TODAY", "2026-02-30"),
    ("RESCUE_TODAY", "9999-12-31"),
    ("RESCUE_TODAY", "tomorrow"),
    ("RESCUE_PROOF", "maybe"),
    ("RESCUE_PROOF", "2"),
    ("RESCUE_PROOF_MAX_SECONDS", "-1"),
    ("RESCUE_PROOF_MAX_SECONDS", "nan"),
    ("RESCUE_PROOF_MAX_SECONDS", "inf"),
    ("RESCUE_PROOF_MAX_SECONDS", "0"),
    ("RESCUE_PARSE_WAIT_SECONDS", "soon"),
    ("RESCUE_LOCK_WAIT_SECONDS", "-5"),
    ("RESCUE_FRESHNESS_INTERVAL_SECONDS", "1e400"),
    ("RESCUE_RECOVERY_GROUP_SECONDS", "an hour"),
    ("RESCUE_UI_URL", "localhost:3000"),
    ("RESCUE_UI_URL", "javascript:alert(1)"),
    ("RESCUE_DBT_TARGET", "prod; drop table x"),
]
# the launchpad's rescue_job config, as the form submits it
LAUNCHPAD = [
    ({"select": "int_order_enriched+"}, "did you mean"),
    ({"select": ""}, "empty"),
    ({"select": "path:/etc"}, "relative to the project folder"),
    ({"select": "state:modified+"}, "previous manifest"),
    ({"select": "fct_orders", "exclude": "fct_orders"}, "removes every selected model"),
    ({"select": "fct_orders", "full_refresh_models": ["no_such_model"]}, "no_such_model"),
    ({"select": "fct_orders", "max_runtime": -5}, "max_runtime"),
    ({"select": "fct_orders", "max_runtime": 0}, "max_runtime"),
    ({"select": "fct_orders", "reason": "x" * 5000}, "at most 200 characters"),
    ({"select": "fct_orders", "reason": ""}, "a reason is needed"),
]


def _plan_cases() -> list:
    cases = []
    for term, named in TERMS:
        cases.append((["plan", "--select", term], named))
        cases.append((["launch", "--select", term], named))
    for args, named in FLAGS:
        cases.append((["plan", *args], named))
        cases.append((["launch", *args], named))
    for args, named in LAUNCH_FLAGS:
        cases.append((["launch", "--select", "fct_orders", *args], named))
    for rescue_id, named in IDS:
        for command in ("status", "resume", "cancel"):
            # an id that looks like a flag: resume and cancel miss their id, status the flag
            said = "required: rescue_id" if named == "-rf" and command != "status" else named
            cases.append(([command, rescue_id], said))
    return cases


CASES = _plan_cases()


def _label(argv: list[str]) -> str:
    shown = " ".join(a if len(a) < 30 else a[:12] + "..." for a in argv)
    return shown.replace("\x00", "\\0") or "(none)"


@pytest.fixture(scope="module")
def house(shop_builds, tmp_path_factory):
    """One home and one warehouse for the whole corpus, as a user has them."""
    root = tmp_path_factory.mktemp("house")
    copy_of_build(shop_builds("2026-01-10"), root / "warehouse" / "warehouse.duckdb", root / "home")
    return root


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def untouched(house, monkeypatch):
    """The house is the test's; afterwards: nothing registered, the warehouse unchanged."""
    warehouse = house / "warehouse" / "warehouse.duckdb"
    monkeypatch.setenv("DAGSTER_HOME", str(house / "home"))
    monkeypatch.setenv("RESCUE_DUCKDB_PATH", str(warehouse))
    before = _digest(warehouse)
    yield house
    with dg.DagsterInstance.get() as instance:
        assert rescues.rescue_ids(instance) == [], "a bad input registered a rescue"
    assert _digest(warehouse) == before, "a bad input changed the warehouse"


def _said(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err.strip()


@pytest.mark.parametrize(("argv", "named"), CASES, ids=[_label(a) for a, _ in CASES])
def test_a_bad_command_line_is_one_line_and_changes_nothing(argv, named, untouched, capsys):
    code, out, err = _said(argv, capsys)
    assert code == 2, (out, err)
    assert err.startswith("rescue") and "\n" not in err and "Traceback" not in err, err
    assert len(err) < 600, err
    assert named in err, err


@pytest.mark.parametrize(("name", "value"), ENVIRONMENT, ids=[f"{n}={v}" for n, v in ENVIRONMENT])
@pytest.mark.parametrize("command", ["plan", "launch"])
def test_a_bad_setting_is_one_line_and_changes_nothing(
    command, name, value, untouched, monkeypatch, capsys
):
    monkeypatch.setenv(name, value)
    code, out, err = _said([command, "--select", "fct_orders"], capsys)
    assert code == 2
    assert err.startswith(f"rescue: error: {name}={value!r} is not allowed: "), err
    assert "\n" not in err and out == ""


@pytest.mark.parametrize(("config", "named"), LAUNCHPAD, ids=[str(c)[:60] for c, _ in LAUNCHPAD])
def test_a_bad_launchpad_form_fails_its_run_in_one_line_and_changes_nothing(
    config, named, untouched, shop_defs
):
    job = shop_defs.resolve_job_def("rescue_job")
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            run_config={"ops": {"start_rescue": {"config": config}}},
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    said = failure.step_failure_data.user_failure_data.description
    assert "\n" not in said and named in said, said
    assert rescues.TAG_ID not in result.dagster_run.tags
