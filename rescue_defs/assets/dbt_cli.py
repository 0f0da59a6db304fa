"""The dbt CLI resource: no `dbt --version` subprocess per run, and dbt's partial parsing kept
valid for every warehouse the project is run against.

Version: dagster-dbt asks the dbt executable for its version once per resource instance, and
every run builds its resources anew: ~2 s of every run (3.5 s without compiled bytecode) before
dbt does any work. When the executable is the `dbt` of this very Python environment, its
version is the installed dbt-core's: read it from the package metadata. Anything else (another
environment, the fusion engine) is asked, once per process.

Partial parsing: dagster-dbt gives each invocation its own target folder, seeded with the
project's `target/partial_parse.msgpack`. dbt throws that state away and parses the whole
project when the profile's connection details, the target or the vars differ from when it was
written (dbt's ManifestStateCheck): with DuckDB the warehouse *path* is a connection detail,
so every run against another file than the one `dagster dev` parsed with (the sandbox, the
proof copy, each test's warehouse) paid a full parse (~3-7 s on the bundled project, longer on
big ones). Here each invocation is seeded with the state its last invocation with the same
settings left, kept in `target/partial_parse/<key>.msgpack`. The key only picks a file: dbt
still checks the state itself, so a wrong pick costs a parse, never a wrong result.
"""

import functools
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from dagster import get_dagster_logger
from dagster._utils import pushd
from dagster_dbt import DbtCliResource
from packaging import version

from rescue_defs.dbt_child import GO_FILE, HANDED_FILE, LAUNCHER, SIDE_FILE, WAIT_FILE

logger = get_dagster_logger()
PARSE_STATE = "partial_parse.msgpack"
PARSE_CACHE = "partial_parse"  # under the project's target folder
KEEP_STATES = 8
KEEP_ADAPTERS = 4
_ADAPTERS: dict[str, Any] = {}  # state key -> dbt adapter, in this process
_BY_RUN: dict[str, list] = {}  # run id -> invocations made with a context, in this process
_LATER = threading.local()  # on: dagster-dbt's cli gets no adapter, `cli` makes it after
_KEY_FILE = ".rescue_parse_key"  # in an invocation's target folder: which cache entry it uses
# arguments that change dbt's parse state check (vars, target, profile); never the selection
_STATE_ARGS = ("--vars", "--target", "-t", "--profile")


@functools.cache
def executable_version(executable: str) -> version.Version:
    found = shutil.which(executable)
    here = Path(sys.executable).absolute().parent
    if found and Path(found).absolute().parent == here:
        return version.parse(importlib.metadata.version("dbt-core"))
    output = subprocess.check_output([executable, "--version"]).decode("utf-8")
    match = re.search(r"(\d+\.\d+\.\d+)", output)
    if match is None:
        raise ValueError(f"Could not parse dbt version from output: {output.strip()}")
    return version.parse(match.group(1))


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def parse_state_key(
    project_dir: Path, profiles_dir: Path, settings: Sequence[Any], args: Sequence[str]
) -> str:
    """Names the parse state of an invocation: the project and profile files, the values of
    environment variables they name (the warehouse path), dbt's version, target, profile and
    vars. What dbt compares before it trusts a saved state, approximately and cheaply."""
    texts = [_read(project_dir / "dbt_project.yml"), _read(profiles_dir / "profiles.yml")]
    joined = "\n".join(texts)
    env = sorted((k, v) for k, v in os.environ.items() if k in joined)
    flags = [(a, b) for a, b in zip(args, args[1:], strict=False) if a in _STATE_ARGS]
    payload = json.dumps([str(project_dir), [str(s) for s in settings], texts, env, flags])
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def seed_parse_state(target_path: Path) -> None:
    """An invocation's seed: what the last invocation like it parsed, when that is newer than
    the seed it has (a dbt started ahead is seeded again when told to go)."""
    target_path = Path(target_path)
    seed = target_path / PARSE_STATE
    try:
        cache = Path((target_path / _KEY_FILE).read_text().strip())
        if cache.exists() and (not seed.exists() or cache.stat().st_mtime > seed.stat().st_mtime):
            shutil.copy2(cache, seed)
    except OSError:  # pruned meanwhile by another process: dbt parses in full
        seed.unlink(missing_ok=True)


def keep_parse_state(target_path: Path) -> None:
    """After an invocation: what dbt parsed becomes the seed of the next one like it."""
    target_path = Path(target_path)
    key_file, state = target_path / _KEY_FILE, target_path / PARSE_STATE
    if not key_file.exists() or not state.exists():
        return
    cache = Path(key_file.read_text().strip())
    try:
        if cache.exists() and cache.stat().st_mtime >= state.stat().st_mtime:
            return  # dbt kept the state it was given
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        shutil.copy2(state, partial)
        os.replace(partial, cache)  # readers see the old file or the new one, never half
        _prune(cache.parent)
    except OSError:
        pass  # a cache: the next invocation parses in full, nothing else is lost


def _prune(folder: Path) -> None:
    """The most recently written states only (one per warehouse and target a deployment uses;
    a test suite makes one per test)."""
    entries = sorted(folder.glob("*.msgpack"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in entries[KEEP_STATES:]:
        stale.unlink(missing_ok=True)


# dbt build's test edges in dbt's fast form: the same execution order with far fewer edges
# (a 200-model build in a generated 3,000-model project: 49-58 s -> 17 s, bench/README.md);
# dbt's docs still call the flag experimental, so a team that says either way is obeyed. dbt-core
# has it from 1.9; the fusion engine (2.x) always builds so and warns about the flag
FAST_TEST_EDGES = "--use-fast-test-edges"
FAST_TEST_EDGES_FROM = version.parse("1.9")
_FAST_TEST_EDGES_ENV = ("DBT_USE_FAST_TEST_EDGES", "DBT_ENGINE_USE_FAST_TEST_EDGES")


def with_fast_test_edges(args: Sequence[str], global_flags: Sequence[str] = ()) -> list[str]:
    """`args` of a `dbt build` with dbt's fast test edges, unless the team chose (a flag
    either way, or dbt's environment variable)."""
    args = list(args)
    command = next((a for a in args if not a.startswith("-")), None)
    chosen = any("fast-test-edges" in a for a in [*args, *global_flags]) or any(
        os.environ.get(name) is not None for name in _FAST_TEST_EDGES_ENV
    )
    return args if command != "build" or chosen else [*args, FAST_TEST_EDGES]


def dbt_target_path() -> Path:
    """The project's target folder as dbt and dagster-dbt name it (dbt's DBT_TARGET_PATH)."""
    return Path(os.getenv("DBT_TARGET_PATH", "target"))


class RescueDbtCliResource(DbtCliResource):
    """DbtCliResource whose version look-up costs nothing for this environment's dbt, whose
    invocations start from the parse state of the last one with the same settings, make a new
    adapter while dbt imports itself, and can be started ahead of their turn (`waiting`)."""

    @cached_property
    def _cli_version(self) -> version.Version:
        return executable_version(self.dbt_executable)

    def state_key(self, args: Sequence[str]) -> str:
        """Names what dbt parsed for these settings (see parse_state_key)."""
        settings = (self._cli_version, self.profile, self.target, self.global_config_flags)
        project_dir = Path(self.project_dir).resolve()
        return parse_state_key(project_dir, self._profiles_dir(), settings, list(args))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]):
        # dagster-dbt builds an adapter for every invocation, parsing every macro of the
        # adapter's packages in process (~0.7-1.5 s here); the steps of a run (its stages,
        # refresh layers) and a process's runs with the same settings can share one. Only
        # the validation queries use it, and they release its connections after each step.
        if getattr(_LATER, "on", False):
            return None  # made once dbt has started (cli)
        key = self.state_key(args)
        adapter = _ADAPTERS.pop(key, None)
        if adapter is None:
            adapter = super()._initialize_dbt_core_adapter(args)
        else:
            register_adapter(adapter)
        _ADAPTERS[key] = adapter  # most recently used last
        while len(_ADAPTERS) > KEEP_ADAPTERS:
            _ADAPTERS.pop(next(iter(_ADAPTERS)))
        return adapter

    def _adapter(self, args: Sequence[str]):
        """The invocation's adapter as dagster-dbt makes it (None, with its warning, when it
        cannot), cached for the invocations like it."""
        if self._cli_version.major >= 2:
            return None  # the fusion engine has no dbt Core adapter
        try:
            with pushd(str(Path(self.project_dir).resolve())):
                return self._initialize_dbt_core_adapter(args)
        except Exception:
            logger.warning(
                "An error was encountered when creating a handle to the dbt adapter in Dagster.",
                exc_info=True,
            )
            return None

    def _adapter_type(self, args: Sequence[str]) -> str:
        """The adapter's type ("" when unknown)."""
        adapter = self._adapter(args)
        return adapter.type() if adapter is not None else ""

    def _profiles_dir(self) -> Path:
        if self.profiles_dir:
            return Path(self.profiles_dir)
        if os.environ.get("DBT_PROFILES_DIR"):
            return Path(os.environ["DBT_PROFILES_DIR"])
        project = Path(self.project_dir)
        return project if (project / "profiles.yml").exists() else Path.home() / ".dbt"

    def cli(
        self,
        args: Sequence[str],
        *,
        context=None,
        target_path: Path | None = None,
        waiting: bool = False,
        side: bool = False,
        **kw,
    ):
        """dagster-dbt's `cli`, seeded with the parse state of the last invocation like it;
        `waiting`: started ahead, it runs when told (assets/dbt_ahead.py; rescue-dbt only);
        `side`: work beside the step's builds (the proof's scratch parse), which leaves the dbt
        its run worker imported ahead to the step's first build (dbt_warm.py)."""
        if waiting and not can_wait(self):
            raise ValueError(f"only {LAUNCHER} waits for its turn, not {self.dbt_executable}")
        if FAST_TEST_EDGES_FROM <= self._cli_version < version.parse("2"):
            args = with_fast_test_edges(args, self.global_config_flags)
        project_dir = Path(self.project_dir).resolve()
        target_path = Path(target_path or self._get_unique_target_path(context=context))
        if not target_path.is_absolute():
            # absolute, so that the seed is where dbt looks even when dagster-dbt runs a big
            # selection in a temp copy of the project
            target_path = project_dir / target_path
        key = self.state_key(args)
        cache = project_dir / dbt_target_path() / PARSE_CACHE / f"{key}.msgpack"
        target_path.mkdir(parents=True, exist_ok=True)
        (target_path / _KEY_FILE).write_text(str(cache))
        # dagster-dbt then leaves it (it only fills a missing one)
        seed_parse_state(target_path)
        (target_path / GO_FILE).unlink(missing_ok=True)  # a word to an earlier invocation
        if waiting:  # rescue-dbt imports dbt, then waits for its turn (assets/dbt_ahead.py)
            (target_path / WAIT_FILE).write_text(self._adapter_type(args))
        else:
            (target_path / WAIT_FILE).unlink(missing_ok=True)
        (target_path / HANDED_FILE).unlink(missing_ok=True)
        if side:
            (target_path / SIDE_FILE).touch()
        else:
            (target_path / SIDE_FILE).unlink(missing_ok=True)
        later = not waiting and self._cli_version.major < 2 and key not in _ADAPTERS
        if later:
            # a new adapter is made while dbt imports itself, not before dbt starts: ~0.7 s
            # of the step's first invocation (dagster-dbt makes it first, then starts dbt)
            _LATER.on = True
        try:
            invocation = super().cli(args, context=context, target_path=target_path, **kw)
        finally:
            _LATER.on = False
        if later:
            invocation.adapter = self._adapter(args)
        if context is not None:  # made by the team's function: the step cleans up after it
            _BY_RUN.setdefault(context.run.run_id, []).append(invocation)
        return invocation


def handed_over_pid(invocation: Any) -> int | None:
    """The pid of the dbt its run worker imported ahead, when that dbt ran this invocation's
    command (rescue-dbt says so in the invocation's target folder: dbt_warm.py)."""
    target = getattr(invocation, "target_path", None)
    try:
        return int((Path(target) / HANDED_FILE).read_text()) if target else None
    except (OSError, ValueError):
        return None


def can_wait(dbt: Any) -> bool:
    """Only rescue-dbt waits for its turn: any other executable would start at once, out of
    turn (dbt_child.py)."""
    return Path(str(getattr(dbt, "dbt_executable", ""))).name == LAUNCHER


def register_adapter(adapter: Any) -> None:
    """dbt's macros (get_columns_in_relation, ...) run on the adapter registered in its
    factory, not on the one they are called on: an adapter used again (from the cache, or
    made when its dbt was started ahead) must be that one again, else its queries go to another
    adapter's connections ("connection never acquired for thread", the proof's compare in soak
    seed 3)."""
    if adapter is None:
        return
    from dbt.adapters.factory import FACTORY

    with FACTORY.lock:
        FACTORY.adapters[adapter.type()] = adapter


def invocations_so_far(run_id: str) -> list:
    """The invocations this process has made with a context in run `run_id` (kept)."""
    return list(_BY_RUN.get(run_id, []))


def invocations_of(run_id: str) -> list:
    """The invocations this process made with a context in run `run_id` (then forgotten)."""
    return _BY_RUN.pop(run_id, [])
