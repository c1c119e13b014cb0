"""What the CLI (and the Telegram bot) do to incidents through Temporal and the store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.service import RPCError

from activities.store import Store
from approval import signing
from core.config import Settings
from core.models import (
    Alert,
    AlertStatus,
    ApprovalDecision,
    ApprovalRecord,
    ApprovalVerdict,
    IncidentInput,
    IncidentState,
)
from workflows import search_attributes as sa
from workflows.incident import IncidentWorkflow
from workflows.rollback import RollbackWorkflow

INCIDENT_TYPES = "WorkflowType IN ('IncidentWorkflow', 'RollbackWorkflow')"
"""What users call incidents (target locks and scheduled jobs are not)."""


class OperationError(Exception):
    """A refused or failed operation, phrased for the user."""


class IncidentRow(BaseModel):
    workflow_id: str
    run_id: str
    status: str
    started: datetime | None
    closed: datetime | None
    alert: str
    service: str
    target: str
    severity: str
    phase: str
    approval: str


def workflow_id(ident: str) -> str:
    """Accept ``incident-<fp>`` or just the fingerprint."""
    return ident if ident.startswith(("incident-", "rollback-")) else f"incident-{ident}"


async def list_incidents(
    client: Client, limit: int = 50, open_only: bool = False
) -> list[IncidentRow]:
    query = INCIDENT_TYPES
    if open_only:
        query += " AND ExecutionStatus = 'Running'"
    rows: list[IncidentRow] = []
    async for wf in client.list_workflows(query, limit=limit):
        attrs = wf.typed_search_attributes
        rows.append(
            IncidentRow(
                workflow_id=wf.id,
                run_id=wf.run_id,
                status=wf.status.name.lower() if wf.status else "unknown",
                started=wf.start_time,
                closed=wf.close_time,
                alert=attrs.get(sa.ALERT) or "",
                service=attrs.get(sa.SERVICE) or "",
                target=attrs.get(sa.TARGET) or "",
                severity=attrs.get(sa.SEVERITY) or "",
                phase=attrs.get(sa.PHASE) or "",
                approval=attrs.get(sa.APPROVAL) or "",
            )
        )
    return rows


async def show_incident(client: Client, store: Store, ident: str) -> IncidentState:
    """Ask the workflow (running or closed); fall back to the stored record."""
    wid = workflow_id(ident)
    handle = client.get_workflow_handle_for(IncidentWorkflow.run, wid)
    try:
        return await asyncio.wait_for(handle.query(IncidentWorkflow.get_state), timeout=10)
    except (RPCError, TimeoutError) as exc:
        stored = await asyncio.to_thread(store.get_incident, wid)
        if stored is not None:
            return stored
        raise OperationError(f"no incident {wid!r}: {exc}") from exc


async def decide(
    client: Client, store: Store, ident: str, decision: ApprovalDecision, key: str | None = None
) -> ApprovalRecord:
    """Send a decision through the validated ``decide`` update; record a refusal in the store.

    With the approver's private ``key`` the decision is signed over the approval pending now
    (its run and the exact change it shows), which the workflow verifies before it counts."""
    wid = workflow_id(ident)
    handle = client.get_workflow_handle_for(IncidentWorkflow.run, wid)
    try:
        if key is not None:
            decision = await _signed(handle, wid, decision, key)
        return await handle.execute_update(IncidentWorkflow.decide, decision)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        reason = getattr(cause, "message", None) or str(cause or exc)
    except RPCError as exc:
        reason = exc.message
    record = ApprovalRecord(
        action_id=decision.action_id,
        verdict=ApprovalVerdict.APPROVED if decision.approve else ApprovalVerdict.DENIED,
        approver=decision.approver,
        via=decision.via,
        reason=f"rejected: {reason}",
        at=datetime.now(UTC),
        accepted=False,
    )
    await asyncio.to_thread(store.record_approval, wid, record)
    raise OperationError(f"decision refused: {reason}")


async def _signed(handle: Any, wid: str, decision: ApprovalDecision, key: str) -> ApprovalDecision:
    """Sign over the approval the incident waits on now (asked of the workflow itself: a worker
    that just restarted may take a few seconds to answer)."""
    try:
        state: IncidentState = await asyncio.wait_for(handle.query(IncidentWorkflow.get_state), 45)
    except TimeoutError:
        raise OperationError(f"{wid} did not answer in 45 s: is a worker running?") from None
    pending = state.pending_approval
    if pending is None:
        raise OperationError(f"{wid} has no action waiting for approval")
    if decision.action_id and decision.action_id != pending.id:
        raise OperationError(f"{wid} is waiting for {pending.id}, not {decision.action_id}")
    proof = signing.sign_decision(key, wid, pending, decision.approve, decision.approver)
    return decision.model_copy(update={"action_id": pending.id, **proof})


async def set_paused(
    client: Client, store: Store, paused: bool, actor: str, reason: str = ""
) -> int:
    """Flip the durable kill switch, then wake running incidents; returns how many were told."""
    await asyncio.to_thread(store.set_paused, paused, actor, reason)
    told = 0
    query = f"{INCIDENT_TYPES} AND ExecutionStatus = 'Running'"
    async for wf in client.list_workflows(query):
        try:
            await client.get_workflow_handle(wf.id, run_id=wf.run_id).signal(
                "pause" if paused else "resume"
            )
            told += 1
        except RPCError:
            continue  # closed in between; it will not write anything
    return told


async def start_rollback(client: Client, settings: Settings, store: Store, change_id: str) -> str:
    """Start a policy-gated workflow that undoes one recorded change."""
    record = await asyncio.to_thread(store.get_change, change_id)
    if record is None:
        raise OperationError(f"no change {change_id!r} in the change log")
    if record.rolled_back_by:
        raise OperationError(
            f"change {change_id} was already rolled back by {record.rolled_back_by}"
        )
    if not record.rollback_action:
        raise OperationError(
            f"change {change_id} ({record.action}, {record.result.value}) has no rollback: "
            f"{record.reversibility.value}"
        )
    now = datetime.now(UTC)
    alert = Alert(
        name="ManualRollback",
        status=AlertStatus.FIRING,
        fingerprint=f"rollback-{change_id}"[:128],
        labels={"alertname": "ManualRollback", "severity": "info", "change_id": change_id},
        annotations={"summary": f"rollback of {record.action} on {record.target}"},
        starts_at=now,
        source="manual",
        received_at=now,
    )
    wid = f"rollback-{change_id}"
    await client.start_workflow(
        RollbackWorkflow.run,
        IncidentInput(alert=alert, rollback_of=change_id),
        id=wid,
        task_queue=settings.temporal.task_queue,
        static_summary=f"rollback of {record.action} on {record.target}",
    )
    return wid


def incident_summary(state: IncidentState) -> dict[str, Any]:
    return {
        "workflow_id": state.workflow_id,
        "alert": state.alert.name,
        "phase": state.phase.value,
        "outcome": state.outcome.value if state.outcome else None,
        "target": str(state.triage.target) if state.triage and state.triage.target else None,
        "pending": state.pending_approval.action.id if state.pending_approval else None,
    }


def is_running(status: WorkflowExecutionStatus | None) -> bool:
    return status is WorkflowExecutionStatus.RUNNING
