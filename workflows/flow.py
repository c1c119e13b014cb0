"""What every incident-shaped workflow shares: its state, helpers, message handlers and close.

``IncidentWorkflow`` and ``RollbackWorkflow`` inherit this and only tell their own story in
``run``. The state is the one the ``state`` query, ``incident show`` and the Web UI's current
details read; the outcome becomes visible together with the final phase, never before it.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from core import contracts
    from core.models import (
        Alert,
        AlertStatus,
        ApprovalDecision,
        ApprovalRecord,
        ApprovalRequest,
        ApprovalSignal,
        ApprovalVerdict,
        Evidence,
        IncidentInput,
        IncidentState,
        JoinedAlert,
        Notification,
        Outcome,
        Phase,
        Triage,
    )
    from workflows import details, memory, options
    from workflows import search_attributes as sa
    from workflows.approval_gate import ApprovalGate
    from workflows.calls import call
    from workflows.grouping import Problem
    from workflows.outbox import Outbox
    from workflows.remediation import KillSwitch, rollback
    from workflows.saga import Saga
    from workflows.silence import OwnAlertSilence
    from workflows.target_lock import TargetLock
    from workflows.topology import ParentWait


class IncidentFlow:
    @workflow.init
    def __init__(self, inp: IncidentInput) -> None:
        info = workflow.info()
        self.input = inp
        self.state = IncidentState(
            incident_id=info.workflow_id,
            workflow_id=info.workflow_id,
            alert=inp.alert,
            phase=Phase.TRIAGE,
            opened_at=workflow.now(),
        )
        self.saga = Saga()
        self.outbox = Outbox()
        self.lock = TargetLock()
        self.kill_switch = KillSwitch()
        self.problem = Problem()
        self.silence = OwnAlertSilence()
        self.parent = ParentWait()
        self.quiet = False  # a child that waited for its parent speaks only if it must act
        self.own_resolved = False
        self.gate = ApprovalGate(self.state, self.notify, self.set_phase)
        self.finished: Outcome | None = None  # published with the final phase, in close()

    # --- triage --------------------------------------------------------------------------------

    async def triage(self) -> Triage:
        triage = await call(
            contracts.TRIAGE, self.state.alert, summary="triage", **options.internal()
        )
        self.state.triage = triage
        self.gate.approvers = list(triage.approvers)
        self.state.notes.extend(triage.notes)
        workflow.upsert_search_attributes(
            [
                sa.SERVICE.value_set(triage.service or "unknown"),
                sa.TARGET.value_set(str(triage.target) if triage.target else "unknown"),
                sa.SEVERITY.value_set(triage.severity),
                sa.ALERT.value_set(self.state.alert.name),
            ]
        )
        self.show()
        return triage

    @property
    def approval_timeout(self) -> timedelta:
        assert self.state.triage is not None
        return self.state.triage.approval_timeout

    @property
    def critical(self) -> bool:
        return bool(self.state.triage and self.state.triage.critical)

    # --- phases, outcome, notifications --------------------------------------------------------

    async def set_phase(self, phase: Phase) -> None:
        self.state.phase = phase
        workflow.upsert_search_attributes([sa.PHASE.value_set(phase.value)])
        self.show()

    def show(self) -> None:
        workflow.set_current_details(details.render(self.state))

    def notify(
        self,
        kind: str,
        title: str,
        lines: list[str] | None = None,
        approval: ApprovalRequest | None = None,
        action_id: str = "",
        verdict: str = "",
    ) -> None:
        s = self.state
        self.outbox.send(
            Notification(
                kind=kind,
                incident_id=s.incident_id,
                workflow_id=s.workflow_id,
                title=title,
                lines=[line for line in (lines or []) if line],
                severity=s.alert.severity,
                ui_url=s.triage.ui_url if s.triage else "",
                approval=approval,
                action_id=action_id,
                verdict=verdict,
            )
        )
        s.notifications_sent = self.outbox.sent

    def finish(self, outcome: Outcome) -> None:
        """The outcome the incident closes with (shown at close, with its final phase)."""
        self.finished = outcome

    async def escalate(self, reasons: list[str], rolled_back: bool = False) -> None:
        """A human must look: the outcome and the Escalated phase are set together."""
        self.state.notes.extend(r for r in reasons if r)
        self.finished = Outcome.ROLLED_BACK if rolled_back else Outcome.ESCALATED
        self.state.outcome = self.finished
        await self.set_phase(Phase.ESCALATED)
        self.notify("escalated", f"Escalated: {self.state.alert.name}", reasons)

    async def cancelled(self) -> None:
        """A user cancelled the workflow (Web UI, ``temporal workflow cancel``): undo what was
        changed, withdraw a pending approval, and close with a record like any incident."""
        pending = self.state.pending_approval
        if pending is not None:
            self.state.pending_approval = None
            self.gate.close(
                pending.action.id, ApprovalVerdict.NOT_REQUIRED, "", "cancel", "cancelled"
            )
            self.notify(
                "approval_closed",
                f"{pending.action.tool}: cancelled",
                approval=pending,
                action_id=pending.action.id,
                verdict="cancelled",
            )
        await rollback(self, "the incident was cancelled")
        self.state.notes.append("cancelled by a user; changes made so far were compensated")
        self.finished = Outcome.CANCELLED

    async def close(self) -> IncidentState:
        s = self.state
        outcome = s.outcome = self.finished or Outcome.ESCALATED
        if outcome in (Outcome.ESCALATED, Outcome.ROLLED_BACK):
            final = Phase.ESCALATED
        elif outcome in (Outcome.DRY_RUN, Outcome.CANCELLED, Outcome.JOINED):
            final = Phase.CLOSED
        else:
            final = Phase.RESOLVED
        s.closed_at = workflow.now()
        await self.set_phase(final)
        await self.silence.end(self)
        await self.problem.release(s)
        try:
            await self.gate.save()
            await call(contracts.RECORD_INCIDENT, s, summary="incident record", **options.record())
        except ActivityError as err:  # the store stayed down: Temporal keeps the full history
            s.notes.append(f"the incident record could not be stored: {err.cause}")
        if memory.enabled():
            await memory.remember(s)
        await self.wake_children()
        if final is not Phase.ESCALATED and outcome is not Outcome.JOINED and not self.quiet:
            self.notify(
                "resolved",
                f"{outcome.value}: {s.alert.name}",
                [f"{a.action.tool}: {a.result.value}" for a in s.actions],
            )
        await self.outbox.drain()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return s

    async def wake_children(self) -> None:
        """Children's incidents waiting for this one (their parent's) look at their own targets
        again now."""
        for child in [j.via for j in self.state.joined if j.waiting and j.via]:
            try:
                await workflow.get_external_workflow_handle(child).signal("parent_closed")
            except Exception:  # that child's incident has ended meanwhile
                pass

    # --- messages ------------------------------------------------------------------------------

    @workflow.update
    async def decide(self, decision: ApprovalDecision) -> ApprovalRecord:
        return await self.gate.decide(decision)

    @decide.validator
    def _validate_decide(self, decision: ApprovalDecision) -> None:
        problem = self.gate.problem(
            decision.action_id, decision.approver, decision.run_id, decision.binding
        )
        if problem:
            raise ValueError(problem)

    @workflow.signal
    async def approve(self, sig: ApprovalSignal) -> None:
        await self.gate.signal(sig, True)

    @workflow.signal
    async def deny(self, sig: ApprovalSignal) -> None:
        await self.gate.signal(sig, False)

    @workflow.signal
    def alert(self, alert: Alert) -> None:
        """Re-notifications and the resolved notification of this incident's alert, or of an
        alert that joined it (the router finds the owner of a joined alert's fingerprint)."""
        self.state.alerts_received += 1
        if alert.fingerprint != self.state.alert.fingerprint:
            self.join(
                JoinedAlert(
                    fingerprint=alert.fingerprint,
                    name=alert.name,
                    status=alert.status,
                    labels=alert.labels,
                    summary=alert.annotations.get("summary", ""),
                )
            )
            return
        if alert.status is AlertStatus.RESOLVED:
            self.own_resolved = True
        else:
            self.state.alert = self.state.alert.model_copy(
                update={"annotations": alert.annotations}
            )
        self._all_resolved()

    @workflow.signal
    def join(self, joined: JoinedAlert) -> None:
        """Another alert of this problem: listed, its labels kept as evidence; the problem counts
        as cleared only once every alert of it has resolved."""
        known = next((j for j in self.state.joined if j.fingerprint == joined.fingerprint), None)
        if known is None:
            self.state.joined.append(joined)
            self.state.evidence.append(
                Evidence(
                    key=f"joined.{joined.fingerprint}",
                    tool="alert",
                    target=joined.via or joined.fingerprint,
                    ok=True,
                    data={"alert": joined.name, "labels": joined.labels, "summary": joined.summary},
                )
            )
        else:
            known.status = joined.status
            known.labels = joined.labels or known.labels
        self.show()
        self._all_resolved()

    def _all_resolved(self) -> None:
        still = [j for j in self.state.joined if j.status is AlertStatus.FIRING]
        self.state.alert_resolved = self.own_resolved and not still

    @workflow.signal
    def parent_closed(self) -> None:
        self.parent.closed = True

    @workflow.signal
    def pause(self) -> None:
        self.kill_switch.hint = True

    @workflow.signal
    def resume(self) -> None:
        self.kill_switch.hint = False

    @workflow.signal
    def lock_granted(self, request_id: str) -> None:
        self.lock.grant(request_id)

    @workflow.query(name="state")
    def get_state(self) -> IncidentState:
        return self.state
