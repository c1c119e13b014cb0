"""Writes: one action gated and applied (``WriteStep``), and the saga's compensations.

A write goes: ``tool.prepare`` (before-state, exact preview, compensation) → the policy →
FORBIDDEN, dry-run or no-op end here → HARD waits at the approval gate → the kill switch → the
target's lock → a fresh ``tool.prepare`` when time has passed → the compensation is registered →
the write runs. Whatever way it ends, the step records its outcome in the change log exactly once.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from core import contracts
    from core.models import (
        Action,
        ActionOutcome,
        ApprovalVerdict,
        ChangeRecord,
        ChangeResult,
        Phase,
        PolicyDecision,
        PolicyRequest,
        PreparedWrite,
        Reversibility,
        RiskLevel,
        ToolCall,
        ToolError,
        ToolErrorKind,
        ToolResult,
    )
    from workflows import options
    from workflows.calls import call
    from workflows.saga import Compensation
    from workflows.target_lock import LockUnavailable

if TYPE_CHECKING:
    from workflows.flow import IncidentFlow

PAUSE_RECHECK = timedelta(seconds=30)


def cause(err: BaseException) -> str:
    inner = err.__cause__ or err
    return f"{type(inner).__name__}: {inner}"[:500]


def unless_cancelled(err: ActivityError) -> ActivityError:
    """An activity failed on its own, not because the workflow was cancelled (which must reach
    ``run`` as cancellation, not become a failed read or write). Returns the error to handle."""
    if is_cancelled_exception(err):
        raise asyncio.CancelledError("the workflow was cancelled") from err
    return err


class KillSwitch:
    """``homelab-agents pause``: the store is the truth, the pause/resume signals only wake us."""

    def __init__(self) -> None:
        self.hint: bool | None = None

    async def wait(self, flow: IncidentFlow) -> bool:
        """Hold until writes are allowed; True if we had to wait."""
        state = flow.state
        previous = state.phase
        waited = False
        while await call(contracts.PAUSED, summary="kill switch", **options.internal()):
            waited = True
            if not state.paused:
                state.paused = True
                await flow.set_phase(Phase.PAUSED)
            self.hint = True
            try:
                await workflow.wait_condition(
                    lambda: self.hint is False, timeout=PAUSE_RECHECK, timeout_summary="paused"
                )
            except TimeoutError:
                pass
        if state.paused:
            state.paused = False
            await flow.set_phase(previous)
        return waited


async def prepare(call_: ToolCall) -> PreparedWrite:
    try:
        return await call(
            contracts.PREPARE, call_, summary=f"prepare {call_.tool}", **options.read_tool()
        )
    except ActivityError as err:
        return PreparedWrite(
            preview="",
            reversibility=Reversibility.IRREVERSIBLE,
            error=ToolError(kind=ToolErrorKind.UNREACHABLE, message=cause(unless_cancelled(err))),
        )


class WriteStep:
    """One action through the gate to the change log."""

    def __init__(
        self, flow: IncidentFlow, action: Action, step: str, critical: bool, rollback_of: str = ""
    ) -> None:
        self.flow = flow
        self.action = action
        self.step = step
        self.critical = critical
        self.rollback_of = rollback_of
        self.outcome = ActionOutcome(
            action=action,
            level=RiskLevel.HARD,
            approval=ApprovalVerdict.NOT_REQUIRED,
            result=ChangeResult.SKIPPED,
        )
        self.prepared = PreparedWrite(preview="", reversibility=Reversibility.IRREVERSIBLE)
        self.after: dict[str, Any] | None = None
        self.started: datetime | None = None
        self.ran = False
        self.summary = ""

    @property
    def call(self) -> ToolCall:
        a = self.action
        return ToolCall(
            tool=a.tool, target=a.target, params=a.params, incident_id=self.flow.state.incident_id
        )

    async def apply(self) -> ActionOutcome:
        try:
            await self._gate_and_run()
        finally:
            await self._record()
        self._announce()
        return self.outcome

    async def compensate(self, level_reason: str) -> ActionOutcome:
        """Run a registered compensation (the saga undoing a change)."""
        try:
            await self.flow.kill_switch.wait(self.flow)
            await self.flow.lock.acquire(str(self.action.target))
            self.prepared = await prepare(
                ToolCall(
                    tool=self.action.tool, target=self.action.target, params=self.action.params
                )
            )
            o = self.outcome
            o.level, o.level_reasons = self.prepared.default_level, [level_reason]
            o.preview = self.prepared.preview
            if self.prepared.error is not None:
                self._failed(self.prepared.error)
            elif not await self.flow.lock.holds():
                o.result, o.error = ChangeResult.FAILED, "lost the target's write lock: not applied"
            else:
                await self._run()
        finally:
            await self._record()
        self._announce()
        return self.outcome

    # --- the gate ------------------------------------------------------------------------------

    async def _gate_and_run(self) -> None:
        flow, o = self.flow, self.outcome
        await flow.set_phase(Phase.GATE)
        self.prepared = await prepare(self.call)
        if self.prepared.error is not None:
            o.level = self.prepared.default_level
            o.level_reasons = ["not evaluated: the action could not be prepared"]
            self._failed(self.prepared.error)
            return
        decision = await self._policy()
        o.level, o.level_reasons = decision.level, decision.reasons
        o.preview, o.compensation = self.prepared.preview, self.prepared.compensation
        o.dry_run = decision.dry_run or flow.input.dry_run
        if decision.level is RiskLevel.FORBIDDEN:
            o.approval, o.result = ApprovalVerdict.FORBIDDEN, ChangeResult.FORBIDDEN
            o.error = "forbidden by policy: " + "; ".join(decision.reasons)
            return
        if o.dry_run:
            o.result = ChangeResult.DRY_RUN
            return
        if self.prepared.noop:
            o.error = "target already in the desired state"
            return
        if decision.level is RiskLevel.HARD:
            verdict = await flow.gate.wait(
                self.action, decision, self.prepared, flow.approval_timeout
            )
            o.approval, o.approver = verdict.verdict, verdict.approver
            if not verdict.may_run:
                o.result = {
                    ApprovalVerdict.DENIED: ChangeResult.DENIED,
                    ApprovalVerdict.TIMEOUT: ChangeResult.TIMEOUT,
                }.get(verdict.verdict, ChangeResult.SKIPPED)
                if o.result is ChangeResult.SKIPPED:
                    o.error = "alert resolved before a decision"
                return
        elif decision.level is RiskLevel.SOFT:
            flow.notify(
                "action",
                f"Proceeding with {self.action.tool} (SOFT)",
                [self.prepared.preview, *decision.reasons],
            )
        paused = await flow.kill_switch.wait(flow)
        try:
            locked_now = await flow.lock.acquire(str(self.action.target))
        except LockUnavailable as err:
            o.result, o.error = ChangeResult.FAILED, str(err)
            return
        if locked_now or paused or decision.level is RiskLevel.HARD:
            # Time passed (a human, the kill switch, another incident holding the target):
            # look again so we never act on stale state, and record the fresh before-state.
            self.prepared = await prepare(self.call)
            if self.prepared.error is not None:
                self._failed(self.prepared.error)
                return
            if self.prepared.noop:
                o.error = "target already in the desired state when re-checked before acting"
                return
            o.preview, o.compensation = self.prepared.preview, self.prepared.compensation
        if not await flow.lock.holds():
            o.result, o.error = ChangeResult.FAILED, "lost the target's write lock: not applied"
            return
        await flow.set_phase(Phase.REMEDIATE)
        await self._run()

    async def _policy(self) -> PolicyDecision:
        request = PolicyRequest(
            action=self.action.tool,
            target=self.action.target,
            default_level=self.prepared.default_level,
            reversibility=self.prepared.reversibility,
            target_critical=self.critical,
        )
        return await call(
            contracts.POLICY, request, summary=f"policy {self.action.tool}", **options.internal()
        )

    # --- the write -----------------------------------------------------------------------------

    async def _run(self) -> None:
        o, prepared = self.outcome, self.prepared
        o.change_id = str(workflow.uuid4())
        if prepared.compensation is not None and not self.rollback_of:
            self.flow.saga.register(o.change_id, prepared.compensation)  # before the write
        self.started = workflow.now()
        write = ToolCall(
            tool=self.action.tool,
            target=self.action.target,
            params=self.action.params,
            change_id=o.change_id,
            before=prepared.before,
            incident_id=self.flow.state.incident_id,
        )
        try:
            result = await workflow.execute_activity(
                self.action.tool,
                write,
                result_type=ToolResult,
                summary=prepared.preview[:200],
                **options.write_tool(prepared.timeout_seconds),
            )
        except ActivityError as err:
            result = ToolResult(
                tool=self.action.tool,
                target=str(self.action.target),
                ok=False,
                error=ToolError(
                    kind=ToolErrorKind.UNREACHABLE, message=cause(unless_cancelled(err))
                ),
            )
        o.result = ChangeResult.APPLIED if result.ok else ChangeResult.FAILED
        if result.error:
            o.error = str(result.error)
        self.after, self.ran, self.summary = result.data, True, result.summary

    def _failed(self, error: ToolError) -> None:
        self.outcome.result, self.outcome.error = ChangeResult.FAILED, str(error)

    # --- the record ----------------------------------------------------------------------------

    async def _record(self) -> None:
        o, info, comp = self.outcome, workflow.info(), self.prepared.compensation
        if not o.change_id:
            o.change_id = str(workflow.uuid4())
        record = ChangeRecord(
            change_id=o.change_id,
            incident_id=self.flow.state.incident_id,
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            at=workflow.now(),
            step=self.step,
            action=self.action.tool,
            target=str(self.action.target),
            params=self.action.params,
            level=o.level,
            level_reasons=o.level_reasons,
            approval=o.approval,
            approver=o.approver,
            dry_run=o.dry_run,
            before=self.prepared.before,
            after=self.after or {},
            result=o.result,
            error=o.error,
            preview=self.prepared.preview,
            reversibility=self.prepared.reversibility,
            rollback_action=comp.tool if comp else "",
            rollback_params=comp.params if comp else {},
            rollback_of=self.rollback_of,
            started_at=self.started,
            finished_at=workflow.now(),
        )
        await call(
            contracts.RECORD_CHANGE,
            record,
            summary=f"change log: {record.action} {record.result.value}",
            **options.internal(),
        )

    def _announce(self) -> None:
        """What humans hear after the record: a dry-run's preview, or the write's result."""
        o = self.outcome
        if o.result is ChangeResult.DRY_RUN:
            self.flow.notify("action", f"Dry-run {self.action.tool}", [self.prepared.preview])
        elif self.ran:
            ok = o.result is ChangeResult.APPLIED
            self.flow.notify(
                "action",
                f"{'Applied' if ok else 'FAILED'} {self.action.tool} on {self.action.target}",
                [self.summary or self.prepared.preview, o.error],
            )


async def rollback(flow: IncidentFlow, why: str) -> None:
    """Run the saga's compensations newest-first; one failing never skips the rest."""
    if not flow.saga:
        return
    await flow.set_phase(Phase.ROLLBACK)
    flow.notify("rollback", f"Rolling back: {why}")
    for comp in flow.saga.pending():
        comp.done = True
        action = compensation_action(comp)
        try:
            outcome = await WriteStep(
                flow, action, "rollback", critical=False, rollback_of=comp.change_id
            ).compensate("compensation of an approved change")
            flow.state.rollbacks.append(
                f"{action.tool} on {action.target}: {outcome.result.value} (undoes {comp.change_id})"
            )
        except Exception as err:  # one failing compensation must not skip the rest
            flow.state.rollbacks.append(f"{action.tool} on {action.target}: error {err}")


def compensation_action(comp: Compensation) -> Action:
    return Action(
        id=f"undo-{comp.change_id[:8]}",
        tool=comp.call.tool,
        target=comp.call.target,
        params=comp.call.params,
        rationale=f"compensate change {comp.change_id}",
    )
