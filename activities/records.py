"""Store activities: the change log, approval records, incident records and the kill switch."""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.store import Store
from core import contracts
from core.metrics import APPROVALS, CHANGES, INCIDENT_DURATION, INCIDENTS_CLOSED
from core.models import ApprovalRecord, ChangeRecord, IncidentState
from core.redact import redact, redact_text


class RecordActivities:
    def __init__(self, store: Store) -> None:
        self.store = store

    @activity.defn(name=contracts.RECORD_CHANGE.name)
    async def record_change(self, record: ChangeRecord) -> bool:
        clean = record.model_copy(
            update={
                "params": redact(record.params),
                "before": redact(record.before),
                "after": redact(record.after),
                "rollback_params": redact(record.rollback_params),
                "preview": redact_text(record.preview),
                "error": redact_text(record.error),
            }
        )
        inserted = await asyncio.to_thread(self.store.record_change, clean)
        if inserted:
            CHANGES.labels(record.action, record.result.value).inc()
        return inserted

    @activity.defn(name=contracts.GET_CHANGE.name)
    async def get_change(self, change_id: str) -> ChangeRecord:
        record = await asyncio.to_thread(self.store.get_change, change_id)
        if record is None:
            raise ApplicationError(f"no change {change_id!r} in the change log", non_retryable=True)
        return record

    @activity.defn(name=contracts.RECORD_APPROVAL.name)
    async def record_approval(self, workflow_id: str, record: ApprovalRecord) -> bool:
        inserted = await asyncio.to_thread(self.store.record_approval, workflow_id, record)
        if inserted and record.accepted:
            APPROVALS.labels(record.verdict.value, record.via).inc()
        return inserted

    @activity.defn(name=contracts.RECORD_INCIDENT.name)
    async def record_incident(self, state: IncidentState) -> None:
        await asyncio.to_thread(
            self.store.record_incident, state, activity.info().workflow_run_id or ""
        )
        if state.outcome and state.closed_at:
            service = state.triage.service if state.triage else "unknown"
            INCIDENTS_CLOSED.labels(service, state.outcome.value).inc()
            INCIDENT_DURATION.labels(state.outcome.value).observe(
                (state.closed_at - state.opened_at).total_seconds()
            )

    @activity.defn(name=contracts.PAUSED.name)
    async def paused(self) -> bool:
        return bool((await asyncio.to_thread(self.store.paused))["paused"])
