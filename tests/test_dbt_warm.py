"""A rescue's run worker imports its first dbt while it loads the code location: that dbt runs
the step's first command exactly as a dbt started then would, for the worker's own children
only, and never outlives the rescue-dbt that handed it the command."""

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from rescue_defs import dbt_child, dbt_warm
from rescue_defs.assets import dbt_cli
from rescue_defs.assets.dbt_cli import RescueDbtCliResource
from tests.helpers import is_alive, listed_by, waiting_query

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


@pytest.fixture
def imported_ahead(monkeypatch):
    """A dbt imported ahead by this process, as a run worker starts one; ended after."""
    monkeypatch.delenv(dbt_child.WARM_ENV, raising=False)
    waiting = dbt_warm.start()
    assert waiting is not None
    _listening(os.environ[dbt_child.WARM_ENV])
    # os.environ as the worker leaves it for dagster-dbt's children, restored after the test
    monkeypatch.setenv(dbt_child.WARM_ENV, os.environ[dbt_child.WARM_ENV])
    yield waiting
    if waiting.poll() is None:
        waiting.kill()
    waiting.wait()


def _listening(name: str) -> None:
    """Once it listens (this process is its parent, not a child: it refuses this and waits)."""
    deadline = time.monotonic() + 10
    while True:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect("\0" + name)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)


def _ls(dbt: RescueDbtCliResource, target) -> tuple[set[int], list[str]]:
    """(the pids dbt's events came from, what `dbt ls` listed); the pid the invocation says
    ran it, if it was handed over, is checked to be the one its events came from"""
    invocation = dbt.cli(["ls", "--resource-type", "model"], target_path=target)
    events = [e.raw_event for e in invocation.stream_raw_events()]
    listed = sorted(e["info"]["msg"] for e in events if e["info"]["name"] == "PrintEvent")
    pids = {e["info"]["pid"] for e in events if "pid" in e["info"]}
    said = dbt_cli.handed_over_pid(invocation)
    assert said is None or {said} == pids, (said, pids)
    return pids, listed


def _dbt(project_dir) -> RescueDbtCliResource:
    return RescueDbtCliResource(project_dir=str(project_dir), dbt_executable=dbt_child.executable())


def test_the_workers_first_dbt_runs_in_the_one_imported_ahead_and_lists_what_a_cold_one_does(
    tmp_path, jaffle_project_dir, imported_ahead, monkeypatch
):
    dbt = _dbt(jaffle_project_dir)
    time.sleep(3)  # it has imported dbt
    first_pids, first = _ls(dbt, tmp_path / "first")
    second_pids, second = _ls(dbt, tmp_path / "second")  # one invocation only: this one cold
    monkeypatch.delenv(dbt_child.WARM_ENV)
    cold_pids, cold = _ls(dbt, tmp_path / "cold")

    assert first_pids == {imported_ahead.pid}
    assert (tmp_path / "first" / dbt_child.HANDED_FILE).read_text() == str(imported_ahead.pid)
    assert not (tmp_path / "second" / dbt_child.HANDED_FILE).exists()  # started in its launcher
    assert not (tmp_path / "cold" / dbt_child.HANDED_FILE).exists()
    assert imported_ahead.wait(timeout=10) == 0
    assert second_pids.isdisjoint(first_pids) and cold_pids.isdisjoint(first_pids)
    assert first == second == cold
    assert "customers" in " ".join(first)


def test_work_beside_the_build_leaves_the_dbt_imported_ahead_to_the_build(
    tmp_path, jaffle_project_dir, imported_ahead
):
    """The proof's scratch parse starts with the step, just before its first build: that build,
    not the parse, is what the step waits for."""
    dbt = _dbt(jaffle_project_dir)
    beside = dbt.cli(["parse"], target_path=tmp_path / "parse", side=True)
    build_pids, listed = _ls(dbt, tmp_path / "build")
    beside_pids = {e.raw_event["info"]["pid"] for e in beside.stream_raw_events()}
    assert build_pids == {imported_ahead.pid}
    assert imported_ahead.pid not in beside_pids and beside.process.returncode == 0
    assert "customers" in " ".join(listed)


def test_a_command_handed_over_before_dbt_has_imported_itself_waits_for_it(
    tmp_path, jaffle_project_dir, imported_ahead
):
    pids, listed = _ls(_dbt(jaffle_project_dir), tmp_path / "at-once")
    assert pids == {imported_ahead.pid}
    assert "customers" in " ".join(listed)


def test_only_a_child_of_the_worker_that_imported_it_can_hand_it_a_command(
    tmp_path, jaffle_project_dir, imported_ahead
):
    time.sleep(3)
    launcher = dbt_child.executable()
    args = [launcher, "ls", "--resource-type", "model", "--log-format", "json"]
    args += ["--project-dir", str(jaffle_project_dir), "--profiles-dir", str(jaffle_project_dir)]
    args += ["--target-path", str(tmp_path / "grandchild")]
    # a grandchild (through a shell): refused, so it runs dbt itself
    out = subprocess.run(
        ["sh", "-c", '"$@"; true', "sh", *args], capture_output=True, text=True, check=True
    ).stdout
    pids = {json.loads(line)["info"]["pid"] for line in out.splitlines() if line.startswith("{")}
    assert pids and imported_ahead.pid not in pids
    assert imported_ahead.poll() is None  # still waiting for the worker's own child
    assert _ls(_dbt(jaffle_project_dir), tmp_path / "child")[0] == {imported_ahead.pid}


def test_a_rescue_dbt_of_another_python_environment_runs_its_own_dbt(imported_ahead):
    """Its dbt may be another version: the dbt imported ahead is this environment's."""
    other = (
        "import sys; sys.executable = '/elsewhere/bin/python'; "
        "from rescue_defs import dbt_warm; dbt_warm.hand_over(sys.argv[1]); print('not taken')"
    )
    name = os.environ[dbt_child.WARM_ENV]
    said = subprocess.run([sys.executable, "-c", other, name], capture_output=True, text=True)
    assert said.stdout.strip() == "not taken", said.stderr
    assert imported_ahead.poll() is None  # still waiting for this environment's rescue-dbt


def test_a_request_cut_short_is_refused_and_the_dbt_still_waits_for_the_build(
    tmp_path, jaffle_project_dir, imported_ahead
):
    # a child of the worker that sends the start of a request, then nothing, and stays
    cut_short = (
        "import socket, sys; s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); "
        "s.connect('\\0' + sys.argv[1]); "
        "socket.send_fds(s, [b'\\x00\\x00\\x01\\x00{'], [0, 1, 2]); "
        "s.settimeout(60); s.recv(1)"
    )
    name = os.environ[dbt_child.WARM_ENV]
    stays = subprocess.Popen([sys.executable, "-c", cut_short, name])
    time.sleep(4)  # it is the first the dbt imported ahead hears from
    args = [dbt_child.executable(), "ls", "--resource-type", "model", "--log-format", "json"]
    args += ["--project-dir", str(jaffle_project_dir), "--profiles-dir", str(jaffle_project_dir)]
    args += ["--target-path", str(tmp_path / "build")]
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    finally:
        stays.kill()
    lines = out.stdout.splitlines()
    pids = {json.loads(line)["info"]["pid"] for line in lines if line.startswith("{")}
    assert pids == {imported_ahead.pid}


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_dbt_imported_ahead_ends_with_the_rescue_dbt_that_handed_it_a_command(
    how, tmp_path, shop_project, warehouse, imported_ahead
):
    """Stopped or killed (the run worker gone, a node lost): the dbt that runs the command
    stops too, never a writer nobody sees."""
    args = [dbt_child.executable(), "show", "--inline", waiting_query(tmp_path)]
    args += ["--project-dir", str(shop_project.project_dir)]
    args += ["--profiles-dir", str(shop_project.profiles_dir), "--target-path", "target/show"]
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    # started as a run worker's dagster-dbt starts it: signals at their defaults (this test
    # process may ignore SIGTERM, and the dbt imported ahead, its child, with it: a suite
    # started in the background ignores SIGINT, and Dagster maps SIGTERM to SIGINT's handler)
    launcher = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=_default_signals
    )
    try:
        time.sleep(6)  # dbt has started in the process imported ahead, and runs the query
        assert is_alive(imported_ahead.pid) and imported_ahead.poll() is None
        launcher.send_signal(how)
        launcher.wait(timeout=30)
        imported_ahead.wait(timeout=10)
    finally:
        launcher.kill()
    assert launcher.returncode != 0
    assert not is_alive(imported_ahead.pid)


def _default_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


def test_a_dbt_imported_ahead_and_never_used_ends_with_its_worker(tmp_path):
    worker = subprocess.run(
        [sys.executable, "-c", "from rescue_defs import dbt_warm; print(dbt_warm.start().pid)"],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != dbt_child.WARM_ENV},
    )
    waiting = int(worker.stdout)
    deadline = time.monotonic() + 5
    while is_alive(waiting) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_alive(waiting)


class _Job:
    """Stands for the ReconstructableJob a code server hands its run worker."""

    def __init__(self, job_name: str):
        self.job_name = job_name


def _job_of_this_worker(_job: _Job, answer) -> None:
    answer.put(dbt_warm.run_worker_job())


def test_a_run_worker_knows_its_job_and_no_other_process_thinks_it_is_one():
    assert dbt_warm.run_worker_job() is None  # pytest's process
    args = {"__class__": "ExecuteRunArgs", "run_id": "r1"}
    args["job_origin"] = {"__class__": "JobPythonOrigin", "job_name": "rescue_step_job"}
    launched = ["dagster", "api", "execute_run", json.dumps(args)]
    assert dbt_warm.run_worker_job(launched) == "rescue_step_job"
    assert dbt_warm.run_worker_job(["dagster", "api", "execute_run", "{not json"]) is None

    spawn = multiprocessing.get_context("spawn")
    answer = spawn.Queue()
    worker = spawn.Process(target=_job_of_this_worker, args=[_Job("rescue_step_job"), answer])
    worker.start()
    worker.join(timeout=60)
    assert answer.get(timeout=5) == "rescue_step_job"


def _lineup(dbt: RescueDbtCliResource, tmp_path, commands):
    from rescue_defs.assets.dbt_ahead import Lineup

    folders = iter(tmp_path / f"invocation{i}" for i in range(10))
    return Lineup(
        lambda args, waiting=False: dbt.cli(args, target_path=next(folders), waiting=waiting),
        commands,
    )


def test_a_steps_second_dbt_imports_itself_while_the_workers_imported_one_runs_the_first(
    tmp_path, jaffle_project_dir, imported_ahead
):
    dbt = _dbt(jaffle_project_dir)
    time.sleep(3)  # it has imported dbt
    models, tests = ["ls", "--resource-type", "model"], ["ls", "--resource-type", "test"]
    lineup = _lineup(dbt, tmp_path, [models, tests])
    first = lineup.take(models)
    # the first imports nothing: the second starts importing itself now, not once the first
    # has built something (it waits for its turn, having opened nothing)
    assert lineup.waiting is not None and lineup.waiting[0] == tests
    listed = listed_by(first)
    second = lineup.take(tests)
    assert dbt_cli.handed_over_pid(first) == imported_ahead.pid
    assert lineup.waiting is None and dbt_cli.handed_over_pid(second) is None
    assert "customers" in " ".join(listed) and "not_null" in " ".join(listed_by(second))
    assert not lineup.close()


def test_without_a_dbt_imported_ahead_the_second_dbt_waits_for_the_first_to_get_going(
    tmp_path, jaffle_project_dir, monkeypatch
):
    # two dbt importing themselves at once on two cores slow the one the step waits for
    monkeypatch.delenv(dbt_child.WARM_ENV, raising=False)
    models, tests = ["ls", "--resource-type", "model"], ["ls", "--resource-type", "test"]
    lineup = _lineup(_dbt(jaffle_project_dir), tmp_path, [models, tests])
    first = lineup.take(models)
    assert lineup.waiting is None
    listed_by(first)
    assert not lineup.close()
