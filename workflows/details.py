"""The incident as the Web UI shows it (current details): phase, target, plan, actions, waits."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.models import IncidentState


def render(s: IncidentState) -> str:
    lines = [f"**{s.alert.name}** — phase **{s.phase.value}**"]
    if s.triage and s.triage.target:
        lines.append(
            f"target `{s.triage.target}` · severity {s.triage.severity}"
            + (" · **critical**" if s.triage.critical else "")
        )
    if s.joined_to:
        lines.append(f"joined incident `{s.joined_to}` (same problem): no action of its own")
    if s.joined:
        lines.append(f"{1 + len(s.joined)} alerts of this problem:")
        lines.extend(f"- {j.name} `{j.fingerprint}` {j.status.value}" for j in s.joined)
    if s.plan:
        lines.append(f"plan ({s.plan.source}):")
        lines.extend(f"- {a.id} `{a.tool}` {a.params or ''}" for a in s.plan.actions)
    for a in s.actions:
        lines.append(
            f"- {a.action.id}: {a.level.value} / {a.approval.value} → **{a.result.value}**"
        )
    if s.pending_approval:
        p = s.pending_approval
        lines.append(
            f"**awaiting approval** of {p.action.id} until {p.deadline:%H:%M:%S} UTC: {p.preview}"
        )
    if s.outcome:
        lines.append(f"outcome: **{s.outcome.value}**")
    return "\n".join(lines)
