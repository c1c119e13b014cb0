"""Closed incidents as the workflow records them, for the memory and learning tests: each one goes
through the real record activities (change log, incident record) into a real store."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.testing import ActivityEnvironment

from activities.records import RecordActivities
from core.models import (
    Action,
    ActionOutcome,
    ApprovalVerdict,
    ChangeRecord,
    ChangeResult,
    Evidence,
    IncidentState,
    Outcome,
    Phase,
    Plan,
    Reversibility,
    RiskLevel,
    Runbook,
    TargetRef,
    Triage,
    VerificationResult,
)
from tests.alerts import make_alert

RUNBOOK = Runbook(
    name="docker-container-exited",
    service="docker",
    alerts=["ContainerKilled"],
    incident_type="container_exited",
)


@dataclasses.dataclass
class Step:
    """One remediation of a past incident and what became of it."""

    tool: str
    result: ChangeResult = ChangeResult.APPLIED
    approval: ApprovalVerdict = ApprovalVerdict.NOT_REQUIRED
    approver: str = ""
    level: RiskLevel = RiskLevel.NONE
    rolled_back: bool = False


def incident(
    target: str,
    steps: Sequence[Step],
    *,
    alert: str = "ContainerKilled",
    verified: bool | None = True,
    closed_at: datetime | None = None,
    workflow_id: str | None = None,
    summary: str = "",
    evidence: list[Evidence] | None = None,
    outcome: Outcome | None = None,
    labels: dict[str, str] | None = None,
) -> IncidentState:
    ref = TargetRef.parse(target)
    closed = closed_at or datetime.now(UTC)
    wid = workflow_id or f"incident-{uuid.uuid4().hex[:16]}"
    actions = [
        ActionOutcome(
            action=Action(id=f"a{i + 1}", tool=s.tool, target=ref),
            level=s.level,
            approval=s.approval,
            approver=s.approver,
            change_id=str(uuid.uuid4()),
            result=s.result,
        )
        for i, s in enumerate(steps)
    ]
    if outcome is None:
        applied = any(s.result is ChangeResult.APPLIED for s in steps)
        if verified:
            outcome = Outcome.RESOLVED if applied else Outcome.RECOVERED
        else:
            outcome = (
                Outcome.ROLLED_BACK if any(s.rolled_back for s in steps) else Outcome.ESCALATED
            )
    alert_model = make_alert(
        alert,
        container=ref.resource or ref.target,
        engine=ref.target,
        **(labels or {}),
    )
    if summary:
        alert_model = alert_model.model_copy(update={"annotations": {"summary": summary}})
    return IncidentState(
        incident_id=wid,
        workflow_id=wid,
        alert=alert_model,
        phase=Phase.RESOLVED if outcome is Outcome.RESOLVED else Phase.ESCALATED,
        opened_at=closed - timedelta(seconds=30),
        closed_at=closed,
        triage=Triage(
            incident_type="container_exited",
            service=ref.service,
            target=ref,
            severity="warning",
            critical=False,
            runbook=RUNBOOK.model_copy(update={"alerts": [alert], "service": ref.service}),
            approval_timeout=timedelta(minutes=5),
            approvers=["alice"],
        ),
        evidence=evidence or [],
        plan=Plan(source="runbook:docker-container-exited", actions=[a.action for a in actions]),
        actions=actions,
        verification=None if verified is None else VerificationResult(passed=verified),
        rollbacks=[f"undo {s.tool}" for s in steps if s.rolled_back],
        outcome=outcome,
    )


def change(state: IncidentState, outcome: ActionOutcome, run_id: str) -> ChangeRecord:
    at = (state.closed_at or datetime.now(UTC)) - timedelta(seconds=20)
    return ChangeRecord(
        change_id=outcome.change_id,
        incident_id=state.incident_id,
        workflow_id=state.workflow_id,
        run_id=run_id,
        at=at,
        step="remediate",
        action=outcome.action.tool,
        target=str(outcome.action.target),
        level=outcome.level,
        approval=outcome.approval,
        approver=outcome.approver,
        result=outcome.result,
        reversibility=Reversibility.COMPENSATED,
        rollback_action="docker.stop",
    )


def undo(state: IncidentState, outcome: ActionOutcome, run_id: str) -> ChangeRecord:
    at = (state.closed_at or datetime.now(UTC)) - timedelta(seconds=10)
    return ChangeRecord(
        change_id=str(uuid.uuid4()),
        incident_id=state.incident_id,
        workflow_id=state.workflow_id,
        run_id=run_id,
        at=at,
        step="rollback",
        action="docker.stop",
        target=str(outcome.action.target),
        level=RiskLevel.NONE,
        approval=ApprovalVerdict.NOT_REQUIRED,
        result=ChangeResult.APPLIED,
        rollback_of=outcome.change_id,
    )


async def record(
    records: RecordActivities, state: IncidentState, steps: Sequence[Step], run_id: str = ""
) -> str:
    """Record the incident as the workflow does: each change, each rollback, then the incident
    (all through the real activities). Returns the run id."""
    run_id = run_id or uuid.uuid4().hex
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id=state.workflow_id, workflow_run_id=run_id)
    for outcome in state.actions:
        await env.run(records.record_change, change(state, outcome, run_id))
    for outcome, step in zip(state.actions, steps, strict=True):
        if step.rolled_back:
            await env.run(records.record_change, undo(state, outcome, run_id))
    await env.run(records.record_incident, state)
    return run_id


def in_activity(fn: Any, *args: Any, workflow_id: str = "wf", run_id: str = "run") -> Any:
    """Run an activity method with an activity context (its workflow and run ids)."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id=workflow_id, workflow_run_id=run_id)
    return env.run(fn, *args)
