"""The rescue report (Markdown on the `rescue_report` asset) and `rescue status` lines.

Every number comes from the event log of the rescue's runs: rebuilt means materialized by one
of them, validated means its row-count, max-date and dbt test checks all passed there.
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from rescue_defs.rescues.confirm import UNCONFIRMED, confirmation_lines
from rescue_defs.rescues.outcomes import (
    covered_steps,
    model_outcomes,
    step_runs,
)
from rescue_defs.rescues.store import (
    ALL_RESCUES,
    SUCCEEDED,
    TAG_ATTEMPT,
    TAG_ID,
    TAG_KIND,
    TAG_STAGE,
    UNREPORTED_ENDS,
    add_partition,
    save,
)

REPORT_ASSET = dg.AssetKey("rescue_report")
REPORT_PARTITIONS = dg.DynamicPartitionsDefinition(name=ALL_RESCUES)


def _planned(record: Mapping[str, Any]) -> list[str]:
    return [m for step in record["steps"] for m in step["models"]]


def report_markdown(
    instance: dg.DagsterInstance, record: Mapping[str, Any], keys, with_plan: bool = True
) -> str:
    """The rescue report: plan, runs, per-model outcome, failed checks, what is left."""
    rescue_id = record["id"]
    runs = step_runs(instance, rescue_id)
    outcomes = model_outcomes(instance, runs, keys)
    names = record["names"]
    planned = _planned(record)
    stage_of = {m: step["stage"] for step in record["steps"] for m in step["models"]}
    lines = [
        f"# Rescue {rescue_id}: {record['status']}"
        + (" (sandbox: nothing in prod was touched)" if record.get("sandbox") else ""),
        "",
        f"- reason: {record['reason'] or '(none)'}",
        f"- created: {record['created_at']}"
        + (" (checklist block overridden)" if record.get("forced") else ""),
        f"- state: {record['message']}",
        *trigger_lines(record),
        f"- runs: [every run of this rescue](/runs?q%5B0%5D=tag%3Arescue%2Fid%3D{rescue_id})",
        "",
        "## Runs",
        "",
        "| step | stage | attempt | run | status |",
        "|---|---|---|---|---|",
    ]
    for run in runs:
        if run.tags.get(TAG_KIND) == "proof":
            lines.append(
                f"| proof | from-scratch comparison | {run.tags.get('rescue/proof', '0')} "
                f"| [{run.run_id[:8]}](/runs/{run.run_id}) | {run.status.value} |"
            )
        steps = [index + 1 for index, _ in covered_steps(run)]
        if not steps:
            continue
        number = f"{steps[0]}" + (f"-{steps[-1]}" if len(steps) > 1 else "")
        lines.append(
            f"| {number} | {run.tags.get(TAG_STAGE, '')} | {run.tags.get(TAG_ATTEMPT, '0')} "
            f"| [{run.run_id[:8]}](/runs/{run.run_id}) | {run.status.value} |"
        )
    rebuilt = [m for m in planned if outcomes[m].rebuilt]
    validated = [m for m in planned if outcomes[m].validated]
    failing = [m for m in planned if outcomes[m].failed]
    lines += [
        "",
        f"## Models: {len(rebuilt)}/{len(planned)} rebuilt, {len(validated)} validated, "
        f"{len(failing)} failed a check",
        "",
        "| model | stage | rebuilt | validated | failed checks |",
        "|---|---|---|---|---|",
    ]
    for m in planned:
        o = outcomes[m]
        lines.append(
            f"| {names.get(m, m)} | {stage_of[m]} | {'yes' if o.rebuilt else 'no'} "
            f"| {_validated_cell(o)} | {', '.join(c.name for c in o.failed)} |"
        )
    inlined = record.get("inlined") or []
    if inlined:
        lines += [
            "",
            "Ephemeral models compiled into the models above (no table of their own): "
            + ", ".join(names.get(m, m) for m in inlined),
        ]
    if failing:
        lines += ["", "## Failed checks", ""]
        for m in failing:
            for c in outcomes[m].failed:
                level = "blocking" if c.blocking else "warning"
                lines.append(f"- **{names.get(m, m)}** `{c.name}` ({level}): {c.description}")
    lines += proof_lines(record)
    lines += ["", "## Left to do", ""]
    lines += left_to_do(record, outcomes)
    lines += confirmation_lines(record)
    lines += history_lines(record)
    if with_plan:
        lines += ["", "## Plan", "", record.get("plan_markdown", "")]
    return "\n".join(lines)


def history_lines(record: Mapping[str, Any]) -> list[str]:
    """Every state the rescue went through, oldest first (times in UTC)."""
    history = record.get("history") or []
    if not history:
        return []
    lines = ["", "## History", ""]
    for entry in history:
        lines.append(
            f"- {entry['at'][:19].replace('T', ' ')} {entry['status']}: {entry['message']}"
        )
    if record.get("auto_resumes"):
        lines.append(f"- resumed automatically {record['auto_resumes']} time(s) in all")
    return lines


def trigger_lines(record: Mapping[str, Any]) -> list[str]:
    """What launched an automatic rescue, and what it had to wait for."""
    trigger = record.get("trigger") or {}
    lines = []
    if trigger.get("kind") == "outage":
        lines.append(
            f"- launched by source_outage_sensor: incident [{trigger['incident']}]"
            f"(/assets/source_incidents?view=partitions&partition={trigger['incident']}) "
            f"({', '.join(trigger['sources'])} down since {trigger['down_since'][:19]}, "
            f"seen down at {trigger['opened_at'][:19]}, fresh again at "
            f"{trigger['recovered_at'][:19]})"
        )
    elif trigger.get("kind") == "merge":
        lines.append(
            f"- launched by merge_sensor: manifest {trigger['checksum'][:12]} changed "
            f"{', '.join(trigger['changed'][:10])}"
            + (f" (+{len(trigger['changed']) - 10} more)" if len(trigger["changed"]) > 10 else "")
            + (
                f"; unchanged logic, not rescued: {', '.join(trigger['same_logic'][:10])}"
                if trigger.get("same_logic")
                else ""
            )
        )
    if record.get("start_now"):
        lines.append("- started with --now: no waiting for a low-traffic window")
    if record.get("deferred"):
        lines.append(f"- waited: {record['deferred']}")
    lines += [f"- warning: {w}" for w in record.get("warnings", [])]
    return lines


def proof_lines(record: Mapping[str, Any]) -> list[str]:
    """The proof section: equal to a from-scratch build, or what differs, or why not proven."""
    proof = record.get("proof")
    if not proof:
        return []
    status = proof["status"]
    n = len(proof["models"])
    head = {
        "equal": f"## Proof: {n} incremental model(s) equal to a from-scratch build",
        "differs": "## Proof: NOT equal to a from-scratch build",
        "skipped": "## Proof: not run",
        "error": "## Proof: the proof run failed",
        "incomplete": "## Proof: incomplete",
    }.get(status, f"## Proof: {status} (after the stages)")
    lines = ["", head, ""]
    for earlier in record.get("proof_history") or []:
        lines.append(f"- proof {earlier['attempt'] + 1}: {earlier['status']}")
        lines += [f"  - {text}" for text in earlier["verdicts"].values()]
    if record.get("escalated"):
        names = record["names"]
        lines.append(
            "- rebuilt with --full-refresh by the rescue itself, with what reads them: "
            + ", ".join(names.get(m, m) for m in record["escalated"])
        )
    if record.get("proof_history"):
        lines.append(f"- proof {proof.get('attempt', 0) + 1}: {status}")
    if status == "skipped":
        lines.append(f"- {proof.get('reason', '')}: nothing proves the incremental models right")
    elif proof.get("verdicts"):
        lines.append(
            "- how: each model rebuilt with --full-refresh in a scratch schema of the same "
            "warehouse (`<schema>__rescue_proof`), over the same upstream tables, and compared "
            "with the rescued table row for row through the dbt adapter (EXCEPT ALL both ways)"
        )
        if proof.get("from_scratch"):
            lines.append(
                "- not built twice: "
                + ", ".join(proof["from_scratch"])
                + " (rebuilt with --full-refresh by the rescue's own run: that build is the "
                "from-scratch build)"
            )
        lines += [f"- {text}" for text in proof["verdicts"].values()]
    else:
        lines.append(
            f"- {n} incremental model(s) to rebuild from scratch with --full-refresh in a scratch "
            "schema of the warehouse, over the same upstream tables, and compare row for row "
            f"through the dbt adapter (expected ~{proof.get('expected_seconds', 0):.0f} s)"
        )
    return lines


def _validated_cell(o) -> str:
    if o.validated:
        return "yes"
    if o.unchecked:
        return "no: its checks never ran"
    if o.rebuilt and o.unconfigured and not o.failed:
        return "no: " + ", ".join(o.unconfigured) + " not configured"
    return "no"


def left_to_do(record: Mapping[str, Any], outcomes) -> list[str]:
    """What the rescue did not (yet) prove, each kind on its own line, or "Nothing"."""
    names, rescue_id = record["names"], record["id"]
    planned = _planned(record)

    def listed(ids) -> str:
        return ", ".join(names.get(m, m) for m in ids)

    left = [m for m in planned if not outcomes[m].rebuilt]
    blocked = [m for m in planned if outcomes[m].rebuilt and outcomes[m].blocked]
    warned = [
        m for m in planned if outcomes[m].rebuilt and outcomes[m].failed and not outcomes[m].blocked
    ]
    unchecked = [m for m in planned if outcomes[m].unchecked]
    unconfigured = [
        m
        for m in planned
        if outcomes[m].rebuilt and outcomes[m].unconfigured and not outcomes[m].failed
    ]
    lines = []
    if left:
        lines.append(f"- not rebuilt ({len(left)}): {listed(left)}")
    if blocked:
        lines.append(f"- rebuilt but failed a blocking check ({len(blocked)}): {listed(blocked)}")
    if unchecked:
        lines.append(
            f"- rebuilt, not validated: checks never ran ({len(unchecked)}): {listed(unchecked)}"
        )
    if warned:
        lines.append(f"- rebuilt but failed a warning check ({len(warned)}): {listed(warned)}")
    if left or blocked or unchecked or warned:
        lines.append(f"- then: `rescue resume {rescue_id}` rebuilds (or checks) exactly these")
    if unconfigured:
        lines.append(
            f"- rebuilt, validated only in part ({len(unconfigured)}): {listed(unconfigured)} "
            "(a check is not configured: set meta.rescue in the model's dbt config)"
        )
    if not lines:
        lines.append("Nothing: every planned model was rebuilt and passed its checks.")
    return lines


def publish(instance: dg.DagsterInstance, record: Mapping[str, Any], keys) -> None:
    """Materialize the rescue's partition of `rescue_report` with its report as it stands."""
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=REPORT_ASSET,
            partition=record["id"],
            description=f"rescue {record['id']}: {record['status']}",
            metadata=report_metadata(record, report_markdown(instance, record, keys)),
            tags={TAG_ID: record["id"]},
        )
    )


def report_metadata(record: Mapping[str, Any], report: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "rescue_id": record["id"],
        "status": record["status"],
        "reason": record["reason"],
        "selection": record["plan"].get("select", "")
        + (f" --exclude {record['plan']['exclude']}" if record["plan"].get("exclude") else ""),
        "runs": dg.MetadataValue.url(f"/runs?q%5B0%5D=tag%3Arescue%2Fid%3D{record['id']}"),
        "report": dg.MetadataValue.md(report),
    }
    trigger = record.get("trigger") or {}
    if trigger.get("kind") == "outage":  # the incident it rescues, one click away
        metadata["incident"] = dg.MetadataValue.url(
            f"/assets/source_incidents?view=partitions&partition={trigger['incident']}"
        )
    return metadata


def finish(instance: dg.DagsterInstance, record: dict[str, Any], keys) -> None:
    """Save a rescue that reached an end state and publish its report; rescue_report_sensor
    then evaluates its rescue_succeeded check."""
    record["ended_at"] = datetime.now(UTC).isoformat()
    save(instance, record)
    announce_end(instance, record, keys)


def announce_end(instance: dg.DagsterInstance, record: dict[str, Any], keys) -> None:
    """Publish the report of a rescue saved in its end state; rescue_report_sensor then
    evaluates its rescue_succeeded check."""
    publish(instance, record, keys)
    add_partition(instance, UNREPORTED_ENDS, record["id"])
    if record["status"] == SUCCEEDED:
        add_partition(instance, UNCONFIRMED, record["id"])
