"""rescue_proof_job: a rescue's incremental models, rebuilt from scratch in a scratch schema of
the same warehouse and compared with the rescued tables through the dbt adapter (see
checks/proof.py). rescue_sensor launches it after the stages; the step that proves is the dbt
assets' own (assets/dbt.py), whose check specs include the proof's."""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject

from rescue_defs.assets.dbt_build import WARN_ERROR_ARGS, remove_run_folders
from rescue_defs.assets.dbt_cli import RescueDbtCliResource, keep_parse_state
from rescue_defs.checks.build_time import clock_columns, declared
from rescue_defs.checks.equality import compare_relations, verdict_text
from rescue_defs.checks.proof import PROOF_CHECK
from rescue_defs.checks.rules import default_database
from rescue_defs.checks.scratch import (
    ScratchError,
    collisions,
    scratch_schemas,
    state_manifest,
    write_scratch_profiles,
)
from rescue_defs.checks.validation import release_adapter
from rescue_defs.planning.advice import is_incremental
from rescue_defs.planning.stages import group_selection
from rescue_defs.project import manifest_is_current

PROOF_JOB = "rescue_proof_job"
KEEP_PARSES = 4  # scratch parses kept per generated profile (one per prod manifest)


def proof_specs(manifest, keys, team_keys) -> list[dg.AssetCheckSpec]:
    """The proof's check on each incremental model of the team's dbt assets. Part of their
    dbt assets definition, not an op of its own: a plain run ("Materialize selected") then
    runs the same steps as without rescue; only a proof run (RescueRun.proof_of) yields it."""
    return [
        dg.AssetCheckSpec(
            PROOF_CHECK,
            asset=key,
            description="Equal, row for row, to a from-scratch (--full-refresh) build over "
            "the same upstream tables; run after each rescue that rebuilt this model.",
        )
        for uid, key in keys.items()
        if key in team_keys and is_incremental(manifest.models[uid])
    ]


def proof_check_keys(dbt_assets) -> list[dg.AssetCheckKey]:
    return [k for a in dbt_assets for k in a.check_keys if k.name == PROOF_CHECK]


def prove(
    context,
    dbt: DbtCliResource,
    project: DbtProject,
    manifest,
    rules,
    keys,
    rescue_id,
    ahead: "ParseAhead | None" = None,
):
    """Reads the rescued tables, never writes them: rebuilds the selected incremental models
    with --full-refresh in a scratch schema of the same warehouse (over prod's upstream
    tables, dropped afterwards) and compares each with the rescued table, row for row,
    through the dbt adapter. `ahead`: the scratch parse, started while the stages built."""
    wanted = {
        uid
        for uid, key in keys.items()
        if dg.AssetCheckKey(key, PROOF_CHECK) in context.selected_asset_check_keys
    }
    if wanted:
        yield from _prove(context, dbt, project, manifest, rules, keys, wanted, rescue_id, ahead)


class ParseAhead:
    """The proof's scratch parse, started in a thread when a run that proves starts building:
    `dbt parse` reads only the project's files (no warehouse connection), so it overlaps the
    stages' dbt instead of following them (a full parse: seconds to minutes, by project).
    `close()` waits for it (or stops it) and removes what it left; idempotent."""

    def __init__(self, dbt: DbtCliResource, project: DbtProject):
        self.work = Path(tempfile.mkdtemp(prefix="rescue-proof-"))
        self.invocations: list = []
        self.profiles: Path | None = None
        self.error: ScratchError | None = None
        try:
            self.profiles = _scratch_profiles(dbt, project)
        except ScratchError as e:
            self.error = e  # the proof refuses, saying why
            self.future = None
            return
        pool = ThreadPoolExecutor(1, thread_name_prefix="rescue-scratch-parse")
        args = (_runner(dbt, self.profiles), project, self.profiles, self.work, self.invocations)
        self.future = pool.submit(_scratch_parse, *args)
        pool.shutdown(wait=False)

    def scratch(self) -> dict:
        assert self.future is not None
        return self.future.result()

    def close(self, project_dir: Path, stop: bool = False) -> None:
        """`stop`: the run ends without proving (a stage failed): the parse is stopped."""
        if stop and self.future is not None and not self.future.done():
            for invocation in list(self.invocations):
                with contextlib.suppress(OSError):
                    invocation.process.terminate()
        if self.future is not None:
            with contextlib.suppress(Exception):  # its error is the proof's to report
                self.future.result()
        remove_run_folders(self.invocations, project_dir)
        self.invocations.clear()
        shutil.rmtree(self.work, ignore_errors=True)


def _scratch_profiles(dbt: DbtCliResource, project: DbtProject) -> Path:
    project_dir = Path(project.project_dir)
    return write_scratch_profiles(
        project_dir, Path(dbt.profiles_dir or project_dir), dbt.profile, dbt.target
    )


def _runner(dbt: DbtCliResource, profiles: Path) -> RescueDbtCliResource:
    """The team's dbt settings with the scratch profile."""
    return RescueDbtCliResource(
        project_dir=dbt.project_dir,
        profiles_dir=str(profiles),
        profile=dbt.profile,
        target=dbt.target,
        dbt_executable=dbt.dbt_executable,
        global_config_flags=dbt.global_config_flags,
    )


def build_proof_job(check_keys: list[dg.AssetCheckKey]):
    return dg.define_asset_job(
        PROOF_JOB,
        selection=dg.AssetSelection.checks(*check_keys),
        description="The proof after a rescue: its incremental models rebuilt from scratch in a "
        "scratch schema of the warehouse (dropped afterwards) and compared row for row with the "
        "rescued tables, which it only reads (launched by rescue_sensor or `--wait`).",
        executor_def=dg.in_process_executor,
    )


def _refused(keys, wanted, rescue_id: str, why: str) -> Iterator[dg.AssetCheckResult]:
    for uid in wanted:
        yield dg.AssetCheckResult(
            asset_key=keys[uid],
            check_name=PROOF_CHECK,
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"not proven: {why}",
            metadata={"status": "not run", "rescue_id": rescue_id},
        )


def _prove(context, dbt, project: DbtProject, manifest, rules, keys, wanted, rid, ahead=None):
    project_dir = Path(project.project_dir)
    ahead = ahead if ahead is not None else ParseAhead(dbt, project)
    if ahead.profiles is None:  # no scratch profile could be made: ahead.error says why
        ahead.close(project_dir)
        yield from _refused(keys, wanted, rid, str(ahead.error))
        return
    runner = _runner(dbt, ahead.profiles)
    work, invocations = ahead.work, ahead.invocations
    ordered = manifest.topological(wanted)
    try:
        scratch = ahead.scratch()
        problems = collisions(manifest.raw, scratch, ordered)
        if problems:
            yield from _refused(keys, wanted, rid, "; ".join(problems))
            return
        state = state_manifest(manifest.raw, scratch, work / "state")
        args = ["run", "--full-refresh", "--select", group_selection(manifest, tuple(ordered))]
        args += ["--defer", "--state", str(state), "--favor-state", *WARN_ERROR_ARGS]
        run = None
        try:
            run = runner.cli(args, target_path=work / "run", manifest=project.manifest_path)
            invocations.append(run)
            run.wait()
            built = run.get_artifact("manifest.json")
            yield from _compare(
                context, run.adapter, manifest, rules, scratch, built, keys, ordered, rid
            )
        finally:  # also when the scratch build failed half way: nothing of it stays
            own = default_database(scratch)  # a schema is dropped in the target's database
            schemas = [s for s in scratch_schemas(manifest.raw, scratch, ordered) if s[0] == own]
            adapter = run.adapter if run is not None else None
            if not _dropped_with(adapter, schemas):
                _drop_scratch(runner, project, schemas, work, invocations)
    finally:
        ahead.close(project_dir)


def _scratch_parse(runner, project: DbtProject, profiles: Path, work: Path, invocations) -> dict:
    """The project as the scratch profile parses it, kept beside the generated profile for the
    next proof: a dbt invocation saved per rescue. The copy is used only while no file dbt
    parses is newer than it and prod's manifest is the one it was made beside (a cache: when
    it is gone or stale, dbt parses again)."""
    prod = Path(project.manifest_path).stat()
    stamp = json.dumps([runner.state_key([]), str(project.manifest_path), prod.st_mtime_ns])
    kept = profiles / f"parse-{hashlib.sha256(stamp.encode()).hexdigest()[:16]}.json"
    if manifest_is_current(Path(project.project_dir), profiles, kept):
        try:
            return json.loads(kept.read_text())
        except (OSError, ValueError):
            pass  # half written by a process that died, or pruned meanwhile: parse
    parse = runner.cli(["parse"], target_path=work / "parse", manifest=project.manifest_path)
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
def _writable(adapter) -> Iterator[None]:
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


def _drop_scratch(runner, project, schemas, work: Path, invocations) -> None:
    """dbt's own macro, in a dbt invocation of the scratch profile (when the adapter could
    not drop them). Only schemas no prod relation uses."""
    for _, schema in schemas:
        drop = runner.cli(
            ["run-operation", "drop_schema_named", "--args", json.dumps({"schema_name": schema})],
            target_path=work / "drop",
            manifest=project.manifest_path,
        )
        invocations.append(drop)
        drop.wait()


def _compare(context, adapter, manifest, rules, scratch, built, keys, ordered, rescue_id):
    prod_db, here_db = default_database(manifest.raw), default_database(scratch)
    kind = adapter.type()
    try:
        for uid in ordered:
            # a connection per model, released before the verdict is yielded: nothing holds
            # one while Dagster has the generator suspended (a connection held across a yield
            # was found gone at the next model: "connection never acquired", soak seed 3)
            with adapter.connection_named("rescue_proof"):
                node, mine = manifest.models[uid], scratch["nodes"][uid]
                database = node.get("database")
                rescued = adapter.Relation.create(
                    database=here_db if database == prod_db else database,
                    schema=node["schema"],
                    identifier=node.get("alias") or node["name"],
                )
                rebuilt = adapter.Relation.create(
                    database=mine.get("database"),
                    schema=mine["schema"],
                    identifier=mine.get("alias") or mine["name"],
                )
                found = clock_columns(
                    (built["nodes"].get(uid) or {}).get("compiled_code") or "",
                    [c.name for c in adapter.get_columns_in_relation(rebuilt)],
                    kind,
                )
                build_time = sorted({*declared(node), *found}, key=str.lower)
                rule = rules.get(uid)
                try:
                    diff = compare_relations(
                        adapter, rescued, rebuilt, build_time, rule.date_column if rule else None
                    )
                except Exception as e:  # a query that fails proves nothing: say so
                    why = str(e).strip().splitlines()[0][:300] if str(e).strip() else repr(e)
                    diff = None
            if diff is None:
                yield from _refused(keys, [uid], rescue_id, f"comparison failed: {why}")
                continue
            passed, text = verdict_text(node["name"], diff)
            context.log.info(f"rescue {rescue_id}: {text}")
            yield dg.AssetCheckResult(
                asset_key=keys[uid],
                check_name=PROOF_CHECK,
                passed=passed,
                severity=dg.AssetCheckSeverity.ERROR,
                description=text,
                metadata={
                    "status": "equal" if passed else "differs",
                    "rows": diff["rows"],
                    "only_rescued": diff["only_rescued"],
                    "only_from_scratch": diff["only_from_scratch"],
                    "compared_columns": diff["columns"],
                    "differing_columns": diff["differing_columns"],
                    "build_time_columns": {
                        c: "declared in meta.rescue" if c in declared(node) else "reads the clock"
                        for c in diff["excluded"]
                    },
                    "missing_columns": diff["missing_columns"],
                    "differing_periods": diff["periods"],
                    "compared": f"{rescued} against {rebuilt} ({kind}, through dbt)",
                    "rescue_id": rescue_id,
                },
            )
    finally:
        release_adapter(adapter)
