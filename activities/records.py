"""Store activities: the change log, approval records, incident records and the kill switch.

Recording is also where learning happens, because that is where verified outcomes arrive: a
rollback in the change log, or an incident closed with a failed verification, may make an action
HARD on its target (a learned restriction; never a lower level)."""

from __future__ import annotations

import asyncio
import logging

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.store import Store
from activities.store.learning import REMEDIATION_STEP
from core import contracts
from core.config import MemorySettings
from core.metrics import (
    APPROVALS,
    CHANGES,
    INCIDENT_ALERTS,
    INCIDENT_DURATION,
    INCIDENTS_CLOSED,
    LEARNED_RESTRICTIONS,
)
from core.models import ApprovalRecord, ChangeRecord, ChangeResult, IncidentState, Outcome
from core.redact import redact, redact_text

log = logging.getLogger(__name__)


class RecordActivities:
    def __init__(self, store: Store, memory: MemorySettings | None = None) -> None:
        self.store = store
        self.memory = memory or MemorySettings()

    def _learn(self, pairs: set[tuple[str, str]]) -> None:
        for action, target in sorted(pairs):
            restriction, created = self.store.learn_restriction(
                action, target, self.memory.restrict_after
            )
            if created and restriction is not None:
                LEARNED_RESTRICTIONS.labels(action).inc()
                log.warning("learned: %s", restriction["reason"])

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
        if record.rollback_of and record.result is ChangeResult.APPLIED:
            await asyncio.to_thread(self._learn_from_rollback, record.rollback_of)
        return inserted

    def _learn_from_rollback(self, change_id: str) -> None:
        original = self.store.get_change(change_id)
        if original is not None and original.step == REMEDIATION_STEP:
            self._learn({(original.action, original.target)})

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
        failed = state.verification is not None and not state.verification.passed
        if state.outcome and failed:
            applied = {
                (a.action.tool, str(a.action.target))
                for a in state.actions
                if a.result is ChangeResult.APPLIED and not a.dry_run
            }
            await asyncio.to_thread(self._learn, applied)
        if state.outcome and state.closed_at:
            service = state.triage.service if state.triage else "unknown"
            INCIDENTS_CLOSED.labels(service, state.outcome.value).inc()
            INCIDENT_DURATION.labels(state.outcome.value).observe(
                (state.closed_at - state.opened_at).total_seconds()
            )
            if state.outcome is not Outcome.JOINED:
                INCIDENT_ALERTS.observe(1 + len(state.joined))

    @activity.defn(name=contracts.PAUSED.name)
    async def paused(self) -> bool:
        return bool((await asyncio.to_thread(self.store.paused))["paused"])
