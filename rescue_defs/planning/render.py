"""Plans as text (CLI) and Markdown (Dagster UI)."""

from rescue_defs.planning.checklist import BLOCK, OK, WARN
from rescue_defs.planning.plan import Plan

_MARK = {OK: "ok", WARN: "WARN", BLOCK: "BLOCK"}


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _names(plan: Plan, ids, limit: int = 12) -> str:
    names = [plan.name(m) for m in ids]
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _runs(plan: Plan) -> str:
    if plan.runs == len(plan.steps):
        return f"{plan.runs} step(s), one run each,"
    return f"{len(plan.steps)} steps in {plan.runs} run, stage after stage,"


def render_text(plan: Plan) -> str:
    r = plan.request
    lines = [
        f"Rescue plan ({r.reason}): --select {r.select!r}"
        + (f" --exclude {r.exclude!r}" if r.exclude else ""),
        f"  {len(plan.models)} models, "
        f"targets: {_names(plan, sorted(plan.targets, key=plan.name))}",
        f"  expected ~{_minutes(plan.total_seconds)} launch to end ({_runs(plan)} x "
        f"~{_minutes(plan.run_overhead_seconds)} start-up and waits), {len(plan.heavy)} heavy; "
        f"{plan.stage_reason}",
    ]
    if plan.inlined:
        lines.append(f"  ephemeral, compiled into their consumers: {_names(plan, plan.inlined)}")
    lines.append("")
    for step in plan.steps:
        after = f", after step {', '.join(str(a + 1) for a in step.after)}" if step.after else ""
        lines.append(
            f"Step {step.index + 1} [{step.stage}] {len(step.models)} models, "
            f"~{_minutes(step.seconds)}{after}"
        )
        lines.append(f"  dbt build --select {step.selection}")
        if step.full_refresh:
            lines.append(f"  full refresh: {_names(plan, step.full_refresh)}")
        lines.append(f"  models: {_names(plan, step.models)}")
    if plan.advice:
        lines += ["", "Refresh advice (incremental models):"]
        for m, a in sorted(plan.advice.items(), key=lambda kv: plan.name(kv[0])):
            planned = "full refresh" if m in plan.full_refresh else "incremental run"
            lines.append(f"  {plan.name(m)}: {a.kind} (planned: {planned})")
            lines += [f"    - {reason}" for reason in a.reasons]
    lines += ["", "Pre-run checklist:"]
    for item in plan.checklist:
        lines.append(f"  [{_MARK[item.status]:>5}] {item.key}: {item.reason}")
    if plan.blocks:
        lines += [
            "",
            f"BLOCKED by {len(plan.blocks)} item(s): launch only with an explicit "
            "override (--force).",
        ]
    return "\n".join(lines)


def render_markdown(plan: Plan) -> str:
    r = plan.request
    out = [
        f"**Rescue plan** ({r.reason}): `--select {r.select}`"
        + (f" `--exclude {r.exclude}`" if r.exclude else ""),
        "",
        f"{len(plan.models)} models, expected ~{_minutes(plan.total_seconds)}; "
        f"{plan.stage_reason}."
        + (
            f" Ephemeral, compiled into their consumers: {_names(plan, plan.inlined)}."
            if plan.inlined
            else ""
        ),
        "",
        "| step | stage | models | selection | full refresh | after | expected |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in plan.steps:
        out.append(
            f"| {s.index + 1} | {s.stage} | {len(s.models)} | `{s.selection}` | "
            f"{_names(plan, s.full_refresh) or '-'} | "
            f"{', '.join(str(a + 1) for a in s.after) or '-'} | ~{_minutes(s.seconds)} |"
        )
    if plan.advice:
        out += ["", "| incremental model | advice | why |", "| --- | --- | --- |"]
        for m, a in sorted(plan.advice.items(), key=lambda kv: plan.name(kv[0])):
            out.append(f"| {plan.name(m)} | {a.kind} | {'; '.join(a.reasons)} |")
    out += ["", "| checklist | status | why |", "| --- | --- | --- |"]
    for item in plan.checklist:
        out.append(f"| {item.question} | {_MARK[item.status]} | {item.reason} |")
    return "\n".join(out)
