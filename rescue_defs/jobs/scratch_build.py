"""The proof's dbt work in its scratch schema, started ahead of the comparison.

A run that proves starts the scratch `dbt parse` (it reads only the project's files, no table)
with its first stage, and the from-scratch `dbt run` (it writes only the scratch schema, and
reads prod's upstream tables, all built by then) as soon as the last stage is built and
validated cleanly: while the step stores that stage's check results. The comparison
(jobs/proof.py) then waits for what is already under way instead of starting it.
"""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster_dbt import DbtCliResource, DbtProject

from rescue_defs.assets.dbt_ahead import call_off, go, start_waiting
from rescue_defs.assets.dbt_build import WARN_ERROR_ARGS, remove_run_folders
from rescue_defs.assets.dbt_cli import RescueDbtCliResource, can_wait, keep_parse_state
from rescue_defs.checks.rules import default_database
from rescue_defs.checks.scratch import (
    ScratchError,
    collisions,
    scratch_schemas,
    state_manifest,
    write_scratch_profiles,
)
from rescue_defs.checks.validation import release_adapter
from rescue_defs.planning.stages import group_selection
from rescue_defs.project import manifest_is_current

KEEP_PARSES = 4  # scratch parses kept per generated profile (one per prod manifest)


@dataclass
class ScratchBuild:
    """The from-scratch build of `ordered`: refused (`problems`), or its dbt invocation `run`
    (None when it could not start) and the error it ended with, if any."""

    ordered: tuple[str, ...]
    scratch: dict
    problems: list[str] = field(default_factory=list)
    run: Any = None
    error: BaseException | None = None

    def schemas(self, prod: dict) -> list[tuple[str, str]]:
        """The scratch schemas it may have created (in the target's database): to drop."""
        own = default_database(self.scratch)
        return [s for s in scratch_schemas(prod, self.scratch, self.ordered) if s[0] == own]


class ProofAhead:
    """The proof's scratch parse and build, each in a thread, started ahead of the comparison.
    `close()` waits for them (or stops them), drops a build nobody compared, and removes what
    they left; idempotent."""

    def __init__(self, dbt: DbtCliResource, project: DbtProject, log: Any = None):
        self.project = project
        # Dagster captures Python logs only while the step's own code runs, so dbt's commands
        # started in these threads may miss the event log: the step's thread says them
        self.log = log
        self.work = Path(tempfile.mkdtemp(prefix="rescue-proof-"))
        self.invocations: list = []
        self.profiles: Path | None = None
        self.error: ScratchError | None = None
        self.parsed: Future | None = None
        self.built: Future | None = None
        self.waiting: tuple[list[str], Any] | None = None  # the scratch build's dbt, ahead
        self.taken = False
        try:
            self.profiles = scratch_profiles(dbt, project)
        except ScratchError as e:
            self.error = e  # the proof refuses, saying why
            return
        self.runner = runner(dbt, self.profiles)
        self.parsed = _thread(_scratch_parse, self.runner, project, self.work, self.invocations)

    def scratch(self) -> dict:
        assert self.parsed is not None
        return self.parsed.result()

    def start_build(self, manifest, ordered: Sequence[str]) -> None:
        """Once the last stage is built and validated cleanly (assets/dbt_stages.py)."""
        if self.parsed is not None and self.built is None:
            self.built = _thread(self.build, manifest, tuple(ordered))
            if self.log is not None:
                self.log.info(
                    f"proof: the from-scratch build of {len(ordered)} incremental model(s) in "
                    "the scratch schema starts now, while the last stage's results are stored"
                )

    def take(self, manifest, ordered: Sequence[str]) -> ScratchBuild:
        """The build of `ordered`: the one under way (started with the same selection: the
        step proves what it selected), else made now. Raises what the scratch parse raised."""
        self.taken = True
        if self.built is None:
            return self.build(manifest, tuple(ordered))
        done = self.built.result()
        # the same models (their order is dbt's to choose): the step proves what it selected
        assert set(done.ordered) == set(ordered), "the proof's selection changed in the step"
        if done.run is not None and self.log is not None:
            self.log.info(f"Ran dbt command ahead: `{done.run.dbt_command}`.")
        return done

    def start_ahead(self, manifest, ordered: Sequence[str]) -> None:
        """As the last stage starts, from the step's own thread (a dbt started ahead dies with
        the thread that started it): the scratch build's dbt imports itself meanwhile, and
        runs when `build` tells it to (assets/dbt_ahead.py)."""
        if self.parsed is None or self.waiting is not None or not can_wait(self.runner):
            return
        args = self._args(manifest, tuple(ordered))
        invocation = start_waiting(
            self.runner.cli,
            args,
            target_path=self.work / "run",
            manifest=self.project.manifest_path,
        )
        self.invocations.append(invocation)
        self.waiting = (args, invocation)

    def _args(self, manifest, ordered: tuple[str, ...]) -> list[str]:
        args = ["run", "--full-refresh", "--select", group_selection(manifest, ordered)]
        state = self.work / "state"  # state_manifest's folder
        return args + ["--defer", "--state", str(state), "--favor-state", *WARN_ERROR_ARGS]

    def build(self, manifest, ordered: tuple[str, ...]) -> ScratchBuild:
        waiting, self.waiting = self.waiting, None
        try:
            scratch = self.scratch()
        except BaseException:
            if waiting is not None:
                call_off(waiting[1])
            raise
        done = ScratchBuild(ordered, scratch, collisions(manifest.raw, scratch, ordered))
        args = self._args(manifest, ordered)
        if waiting is not None and (done.problems or waiting[0] != args):
            call_off(waiting[1])
            waiting = None
        if done.problems:
            return done
        state_manifest(manifest.raw, scratch, self.work / "state")
        try:
            if waiting is not None:
                done.run = go(waiting[1])
            else:
                done.run = self.runner.cli(
                    args, target_path=self.work / "run", manifest=self.project.manifest_path
                )
                self.invocations.append(done.run)
            done.run.wait()
        except Exception as e:  # the comparison reports it; the schemas are dropped first
            done.error = e
        return done

    def drop(self, manifest, done: ScratchBuild) -> None:
        """Nothing of a scratch build stays, also one that failed half way: through the run's
        own adapter (dbt's drop_schema macro), else a dbt invocation of the scratch profile."""
        schemas = done.schemas(manifest.raw)
        adapter = done.run.adapter if done.run is not None else None
        if not _dropped_with(adapter, schemas):
            for _, schema in schemas:
                drop = self.runner.cli(
                    [
                        "run-operation",
                        "drop_schema_named",
                        "--args",
                        json.dumps({"schema_name": schema}),
                    ],
                    target_path=self.work / "drop",
                    manifest=self.project.manifest_path,
                )
                self.invocations.append(drop)
                drop.wait()

    def close(self, manifest=None, stop: bool = False) -> None:
        """`stop`: the run ends without proving (a stage failed): what is under way stops, and
        a build nobody compared is dropped."""
        if self.built is None and self.waiting is not None:  # never told to go: never will be
            call_off(self.waiting[1])
            self.waiting = None
        if stop:
            for future in (self.parsed, self.built):
                if future is not None and not future.done():
                    for invocation in list(self.invocations):
                        with contextlib.suppress(OSError):
                            invocation.process.terminate()
        for future in (self.parsed, self.built):
            if future is not None:
                with contextlib.suppress(Exception):  # its error is the proof's to report
                    future.result()
        if self.built is not None and not self.taken and manifest is not None:
            self.taken = True
            with contextlib.suppress(Exception):
                self.drop(manifest, self.built.result())
        remove_run_folders(self.invocations, Path(self.project.project_dir))
        self.invocations.clear()
        shutil.rmtree(self.work, ignore_errors=True)


def _thread(fn, *args) -> Future:
    pool = ThreadPoolExecutor(1, thread_name_prefix="rescue-proof-ahead")
    future = pool.submit(fn, *args)
    pool.shutdown(wait=False)
    return future


def scratch_profiles(dbt: DbtCliResource, project: DbtProject) -> Path:
    project_dir = Path(project.project_dir)
    return write_scratch_profiles(
        project_dir, Path(dbt.profiles_dir or project_dir), dbt.profile, dbt.target
    )


def runner(dbt: DbtCliResource, profiles: Path) -> RescueDbtCliResource:
    """The team's dbt settings with the scratch profile."""
    return RescueDbtCliResource(
        project_dir=dbt.project_dir,
        profiles_dir=str(profiles),
        profile=dbt.profile,
        target=dbt.target,
        dbt_executable=dbt.dbt_executable,
        global_config_flags=dbt.global_config_flags,
    )


def _scratch_parse(runner, project: DbtProject, work: Path, invocations) -> dict:
    """The project as the scratch profile parses it, kept beside the generated profile for the
    next proof: a dbt invocation saved per rescue. The copy is used only while no file dbt
    parses is newer than it and prod's manifest is the one it was made beside (a cache: when
    it is gone or stale, dbt parses again)."""
    profiles = Path(runner.profiles_dir)
    prod = Path(project.manifest_path).stat()
    stamp = json.dumps([runner.state_key([]), str(project.manifest_path), prod.st_mtime_ns])
    kept = profiles / f"parse-{hashlib.sha256(stamp.encode()).hexdigest()[:16]}.json"
    if manifest_is_current(Path(project.project_dir), profiles, kept):
        try:
            return json.loads(kept.read_text())
        except (OSError, ValueError):
            pass  # half written by a process that died, or pruned meanwhile: parse
    # beside the step's first build, which the dbt imported ahead is for
    parse = runner.cli(
        ["parse"], target_path=work / "parse", manifest=project.manifest_path, side=True
    )
    invocations.append(parse)
    parse.wait()
    # what it parsed seeds the run and the clean-up (else each parses the project in full)
    keep_parse_state(parse.target_path)
    scratch = parse.get_artifact("manifest.json")
    try:
        partial = kept.with_name(f".{kept.name}.{os.getpid()}")
        partial.write_text(json.dumps(scratch))
        os.replace(partial, kept)  # a concurrent proof reads the old copy or this one
        for stale in sorted(profiles.glob("parse-*.json"), key=os.path.getmtime)[:-KEEP_PARSES]:
            stale.unlink(missing_ok=True)
    except OSError:
        pass
    return scratch


def _dropped_with(adapter, schemas: list[tuple[str, str]]) -> bool:
    """The scratch schemas dropped through the run's own adapter (dbt's drop_schema macro):
    no dbt process to start. False when it could not: the caller drops them through dbt."""
    if adapter is None:
        return False
    try:
        with _writable(adapter), adapter.connection_named("rescue_proof_drop"):
            for database, schema in schemas:
                adapter.drop_schema(adapter.Relation.create(database=database, schema=schema))
            adapter.commit_if_has_connection()
        return True
    except Exception:  # the caller's dbt invocation drops them, and fails loudly if it cannot
        return False
    finally:
        release_adapter(adapter)


@contextlib.contextmanager
def _writable(adapter):
    """dagster-dbt opens a DuckDB warehouse read-only (a dbt run may be writing it); the drop
    comes after the scratch build ended, and writes. dbt-duckdb reads the access mode when it
    opens the file: the connection the comparison left is closed first, and once the drop's is
    closed the adapter is read-only again for whatever uses it next in this process."""
    options = getattr(adapter.config.credentials, "config_options", None)
    if adapter.type() != "duckdb" or not isinstance(options, dict):
        yield
        return
    before = options.pop("access_mode", None)
    release_adapter(adapter)
    try:
        yield
    finally:
        release_adapter(adapter)
        if before is not None:
            options["access_mode"] = before
