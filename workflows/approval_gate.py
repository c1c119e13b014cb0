"""The approval gate: one HARD action waits for a human decision, or for its timer to auto-deny.

The gate holds every decision attempt (accepted or refused, each recorded in the store), the
checks a decision must pass (``problem``: the approval is the pending one, of this run, for this
exact change, not already decided, the approver is one), the proof of who decided (a signature
checked by ``approvals.verify``: a name in a signal proves nothing), and the wait itself. The
workflow's ``decide`` update, ``approve``/``deny`` signals and their validator delegate here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from core import contracts
    from core.models import (
        Action,
        ApprovalDecision,
        ApprovalRecord,
        ApprovalRequest,
        ApprovalSignal,
        ApprovalVerdict,
        DecisionCheck,
        DecisionProof,
        IncidentState,
        Phase,
        PolicyDecision,
        PreparedWrite,
        Reversibility,
    )
    from workflows import options
    from workflows import search_attributes as sa
    from workflows.calls import call


SIGNED = "signed-decisions"
"""Patch: 0.2 counts a decision only with a verified signature (or unsigned where allowed)."""


@dataclass(frozen=True)
class Verdict:
    """How an approval wait ended: the verdict, who gave it, and whether the write may run."""

    verdict: ApprovalVerdict
    approver: str = ""

    @property
    def may_run(self) -> bool:
        return self.verdict is ApprovalVerdict.APPROVED


def rollback_plan(prepared: PreparedWrite) -> str:
    if prepared.compensation:
        return f"{prepared.compensation.tool} {prepared.compensation.params}"
    if prepared.reversibility is Reversibility.IRREVERSIBLE:
        return "irreversible: no rollback possible"
    return "nothing to roll back (no lasting state change)"


class ApprovalGate:
    def __init__(
        self,
        state: IncidentState,
        notify: Callable[..., None],
        set_phase: Callable[[Phase], Awaitable[None]],
    ) -> None:
        self.state = state
        self.notify = notify
        self.set_phase = set_phase
        self.approvers: list[str] = []
        self.decisions: dict[str, ApprovalDecision] = {}
        self.closed: dict[str, ApprovalVerdict] = {}
        self.unsaved: list[ApprovalRecord] = []

    # --- decisions (from the update, the signals, the timer) ---------------------------------

    def problem(
        self, action_id: str, approver: str, run_id: str = "", binding: str = ""
    ) -> str | None:
        """Why a decision cannot count, or None."""
        pending = self.state.pending_approval
        wanted = action_id or (pending.id if pending else "")
        if wanted in self.closed or wanted in self.decisions:
            verdict = self.closed.get(wanted)
            return f"action {wanted} is already decided" + (
                f" ({verdict.value})" if verdict else ""
            )
        if pending is None:
            return "no action is waiting for approval"
        if wanted != pending.id:
            return f"unknown action id {wanted!r} (waiting: {pending.id})"
        if run_id and pending.run_id and run_id != pending.run_id:
            return f"the decision is for run {run_id}, not this run ({pending.run_id})"
        if binding and pending.binding and binding != pending.binding:
            return "the decision is for another preview of this change (it has changed: look again)"
        if approver not in self.approvers:
            return f"{approver!r} is not an approver"
        return None

    def _record(self, record: ApprovalRecord) -> ApprovalRecord:
        self.unsaved.append(record)
        self.state.approvals.append(record)
        return record

    def close(
        self, action_id: str, verdict: ApprovalVerdict, approver: str, via: str, reason: str
    ) -> ApprovalRecord:
        self.closed[action_id] = verdict
        return self._record(
            ApprovalRecord(
                action_id=action_id,
                verdict=verdict,
                approver=approver,
                via=via,
                reason=reason,
                at=workflow.now(),
            )
        )

    def accept(self, decision: ApprovalDecision) -> ApprovalRecord:
        """A validated (and, since 0.2, proven) decision on the pending approval."""
        pending = self.state.pending_approval
        assert pending is not None
        decision = decision.model_copy(update={"action_id": decision.action_id or pending.id})
        self.decisions[decision.action_id] = decision
        verdict = ApprovalVerdict.APPROVED if decision.approve else ApprovalVerdict.DENIED
        return self.close(
            decision.action_id, verdict, decision.approver, decision.via, decision.reason
        )

    def refuse(self, decision: ApprovalDecision, why: str) -> ApprovalRecord:
        pending = self.state.pending_approval
        return self._record(
            ApprovalRecord(
                action_id=decision.action_id or (pending.id if pending else ""),
                verdict=ApprovalVerdict.APPROVED if decision.approve else ApprovalVerdict.DENIED,
                approver=decision.approver,
                via=decision.via,
                reason=f"rejected: {why}",
                at=workflow.now(),
                accepted=False,
            )
        )

    async def prove(self, decision: ApprovalDecision) -> str | None:
        """Check the decision and its proof; None if it counts (``decision.via`` from the proof)."""
        problem = self.problem(
            decision.action_id, decision.approver, decision.run_id, decision.binding
        )
        if problem:
            return problem
        pending = self.state.pending_approval
        assert pending is not None
        proof: DecisionProof = await call(
            contracts.VERIFY_DECISION,
            DecisionCheck(workflow_id=self.state.workflow_id, request=pending, decision=decision),
            summary=f"verify decision of {decision.approver}",
            **options.internal(),
        )
        if not proof.ok:
            return proof.reason
        # The pending approval may have changed while the proof was checked.
        problem = self.problem(
            decision.action_id or pending.id, decision.approver, decision.run_id, decision.binding
        )
        if problem is None and self.state.pending_approval is not pending:
            problem = "the approval changed while the decision was checked"
        if problem:
            return problem
        decision.via = proof.via
        return None

    async def decide(self, decision: ApprovalDecision) -> ApprovalRecord:
        """The ``decide`` update: accepted, or refused with the reason (recorded either way)."""
        if not workflow.patched(SIGNED):
            return self.accept(decision)
        problem = await self.prove(decision)
        if problem:
            self.refuse(decision, problem)
            raise ApplicationError(problem, type="DecisionRefused", non_retryable=True)
        return self.accept(decision)

    async def signal(self, sig: ApprovalSignal, approve: bool) -> None:
        """Signals cannot be refused to the sender, so a refusal is recorded instead."""
        decision = ApprovalDecision(
            action_id=sig.action_id,
            approve=approve,
            approver=sig.approver,
            via="signal",
            reason=sig.reason,
            run_id=sig.run_id,
            binding=sig.binding,
            signer=sig.signer,
            proof=sig.proof,
        )
        if workflow.patched(SIGNED):
            problem = await self.prove(decision)
        else:
            problem = self.problem(sig.action_id, sig.approver)
        if problem is None:
            self.accept(decision)
        else:
            self.refuse(decision, problem)

    async def save(self) -> None:
        """Every decision attempt into the store's approval log, in order."""
        while self.unsaved:
            record = self.unsaved.pop(0)
            await call(
                contracts.RECORD_APPROVAL,
                self.state.workflow_id,
                record,
                summary="approval record",
                **options.internal(),
            )

    # --- the wait -----------------------------------------------------------------------------

    async def wait(
        self,
        action: Action,
        decision: PolicyDecision,
        prepared: PreparedWrite,
        wait_for: timedelta,
        approval_id: str = "",
    ) -> Verdict:
        """Ask for a decision on ``action`` and wait for it, a resolved alert, or the timer."""
        deadline = workflow.now() + wait_for
        plan = rollback_plan(prepared)
        request = ApprovalRequest(
            incident_id=self.state.incident_id,
            workflow_id=self.state.workflow_id,
            action=action,
            level=decision.level,
            reasons=decision.reasons,
            preview=prepared.preview,
            rollback_plan=plan,
            deadline=deadline,
            approval_id=approval_id,
            run_id=workflow.info().run_id,
            binding=prepared.binding,
        )
        self.state.pending_approval = request
        await self.set_phase(Phase.AWAITING_APPROVAL)
        workflow.upsert_search_attributes([sa.APPROVAL.value_set("pending")])
        self.notify(
            "approval",
            f"Approval needed: {action.tool} on {action.target}",
            [prepared.preview, *decision.reasons, f"rollback: {plan}"],
            approval=request,
        )
        verdict = await self._until_decided(request.id, deadline)
        await self.save()
        self.state.pending_approval = None
        workflow.upsert_search_attributes([sa.APPROVAL.value_set(verdict.verdict.value)])
        self.notify(
            "approval_closed",
            f"{action.tool}: {verdict.verdict.value}"
            + (f" by {verdict.approver}" if verdict.approver else ""),
            approval=request,
            action_id=request.id,
            verdict=verdict.verdict.value,
        )
        return verdict

    async def _until_decided(self, approval_id: str, deadline: datetime) -> Verdict:
        while True:
            remaining = deadline - workflow.now()
            try:
                if remaining <= timedelta(0):
                    raise TimeoutError
                await workflow.wait_condition(
                    lambda: (
                        approval_id in self.decisions
                        or self.state.alert_resolved
                        or bool(self.unsaved)
                    ),
                    timeout=remaining,
                    timeout_summary=f"approval of {approval_id} times out (auto-deny)",
                )
            except TimeoutError:
                self.close(
                    approval_id, ApprovalVerdict.TIMEOUT, "timer", "timeout", "no decision in time"
                )
                return Verdict(ApprovalVerdict.TIMEOUT, approver="timer")
            await self.save()
            if approval_id in self.decisions:
                d = self.decisions[approval_id]
                return Verdict(
                    ApprovalVerdict.APPROVED if d.approve else ApprovalVerdict.DENIED, d.approver
                )
            if self.state.alert_resolved:
                self.closed[approval_id] = ApprovalVerdict.NOT_REQUIRED
                return Verdict(ApprovalVerdict.NOT_REQUIRED)  # nothing to fix any more
