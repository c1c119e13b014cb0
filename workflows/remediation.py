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
        Admission,
        AdmitRequest,
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
    from workflows.sites import site_options
    from workflows.target_lock import LockUnavailable

if TYPE_CHECKING:
    from workflows.flow import IncidentFlow

PAUSE_RECHECK = timedelta(seconds=30)
PAUSE_RECHECK_MAX = timedelta(minutes=10)
"""The kill switch is re-read with backoff up to this (resume signals wake incidents at once), so
a long pause costs a few events an hour, not one every 30 s."""


class PausedTooLong(Exception):
    """Paused so long that the history is near Temporal's limit: a human reruns it later."""


MAX_ASKS = 3
"""A change that differs from what was approved is asked again, at most this many times."""

GATE_UNDER_LOCK = "gate-under-lock"
"""Patch: 0.2 looks again under the lock right before every write (kill switch, fresh
before-state, lock ownership, the policy with the writes counted now) and asks again when the
change differs from the one approved. 0.1 checked the policy once, before the lock."""
COMPENSATION_POLICY = "compensation-policy"
"""Patch: 0.2 sends every compensation through the policy (FORBIDDEN is not run, HARD waits for
a human). 0.1 ran compensations unchecked."""


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
        recheck = PAUSE_RECHECK
        while await call(contracts.PAUSED, summary="kill switch", **options.internal()):
            waited = True
            if not state.paused:
                state.paused = True
                await flow.set_phase(Phase.PAUSED)
            if workflow.info().is_continue_as_new_suggested():
                raise PausedTooLong(
                    "paused for so long that this incident's history is nearly full: it stops "
                    "here without writing; rerun it after `homelab-agents resume`"
                )
            self.hint = True
            try:
                await workflow.wait_condition(
                    lambda: self.hint is False, timeout=recheck, timeout_summary="paused"
                )
            except TimeoutError:
                pass
            recheck = min(recheck * 2, PAUSE_RECHECK_MAX)
        if state.paused:
            state.paused = False
            await flow.set_phase(previous)
        return waited


async def prepare(call_: ToolCall, site: dict[str, Any] | None = None) -> PreparedWrite:
    try:
        return await call(
            contracts.PREPARE,
            call_,
            summary=f"prepare {call_.tool}",
            **options.read_tool(),
            **(site or {}),
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
        self,
        flow: IncidentFlow,
        action: Action,
        step: str,
        critical: bool,
        rollback_of: str = "",
        housekeeping: bool = False,
    ) -> None:
        """``housekeeping``: a write about the incident, not on its target (silencing its own
        alert): the policy and the change log as for any write, but not the target's lock, not
        the saga (its owner undoes it at close), and no announcement."""
        self.flow = flow
        self.action = action
        self.step = step
        self.critical = critical
        self.rollback_of = rollback_of
        self.housekeeping = housekeeping
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
        self.notes: list[str] = []

    @property
    def site(self) -> dict[str, Any]:
        """Where the target's tools run (its site's worker), when it is at a site."""
        return site_options(self.flow.state.triage, self.action.target)

    @property
    def call(self) -> ToolCall:
        a = self.action
        return ToolCall(
            tool=a.tool,
            target=a.target,
            params=a.params,
            incident_id=self.flow.state.incident_id,
            restores=self.rollback_of,
        )

    async def apply(self) -> ActionOutcome:
        try:
            await self._gate_and_run()
        except PausedTooLong as err:
            self.outcome.result, self.outcome.error = ChangeResult.FAILED, str(err)
        finally:
            await self._record()
        self._announce()
        return self.outcome

    def _unrecorded(self, err: ActivityError) -> None:
        """The store stayed down past the record deadline: a write that ran becomes a failure,
        so the saga undoes it and the incident escalates (never applied and unrecorded)."""
        o = self.outcome
        why = f"the change log could not record it: {cause(err)}"
        if o.result is ChangeResult.APPLIED:
            o.result = ChangeResult.FAILED
            o.error = f"applied, but {why}: rolled back"
        else:
            o.error = f"{o.error}; {why}" if o.error else why

    async def compensate(self, level_reason: str) -> ActionOutcome:
        """Run a registered compensation (the saga undoing a change), through the policy like
        any write: FORBIDDEN is not run, HARD waits for a human (or its timer)."""
        self.notes = [level_reason]
        self.outcome.level_reasons = [level_reason]
        try:
            if workflow.patched(COMPENSATION_POLICY):
                await self._admitted_write(first=None)
            else:
                await self._compensate_unchecked(level_reason)
        except PausedTooLong as err:
            self.outcome.result, self.outcome.error = ChangeResult.FAILED, str(err)
        finally:
            await self._record()
        self._announce()
        return self.outcome

    # --- the gate ------------------------------------------------------------------------------

    async def _gate_and_run(self) -> None:
        """The first look (before any wait): prepare, policy, and the ends that need no lock."""
        flow, o = self.flow, self.outcome
        await flow.set_phase(Phase.GATE)
        self.prepared = await prepare(self.call, self.site)
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
            self._forbidden(decision)
            return
        if o.dry_run:
            o.result = ChangeResult.DRY_RUN
            return
        if self.prepared.noop:
            o.error = "target already in the desired state"
            return
        if workflow.patched(GATE_UNDER_LOCK):
            await self._admitted_write(first=decision)
        else:
            await self._write_checked_before_the_lock(decision)

    async def _admitted_write(self, first: PolicyDecision | None) -> None:
        """Approve what was shown, then look again under the lock right before writing: the kill
        switch, a fresh before-state and preview, the lock's ownership and the policy with the
        writes counted now. A change that differs from what was approved is asked again."""
        flow, o = self.flow, self.outcome
        approved = ""
        if first is not None and first.level is RiskLevel.HARD and self.housekeeping:
            o.error = "housekeeping that needs an approval is not asked for: not done"
            return
        if first is not None and first.level is RiskLevel.HARD:
            await flow.silence.start(flow)  # the alert stays quiet while a human decides
            if not await self._ask(first, self.action.id):
                return
            approved = self.prepared.binding
        elif first is not None and first.level is RiskLevel.SOFT:
            flow.notify(
                "action",
                f"Proceeding with {self.action.tool} (SOFT)",
                [self.prepared.preview, *first.reasons],
            )
        for round_ in range(2, MAX_ASKS + 2):
            await flow.kill_switch.wait(flow)
            try:
                if not self.housekeeping:
                    await flow.lock.acquire(str(self.action.target))
            except LockUnavailable as err:
                o.result, o.error = ChangeResult.FAILED, str(err)
                return
            self.prepared = await prepare(self.call, self.site)
            if self.prepared.error is not None:
                self._failed(self.prepared.error)
                return
            if self.prepared.noop:
                o.error = "target already in the desired state when re-checked before acting"
                return
            o.preview, o.compensation = self.prepared.preview, self.prepared.compensation
            admission = await self._admit()
            if not admission.holds:
                o.result, o.error = ChangeResult.FAILED, "lost the target's write lock: not applied"
                return
            if admission.paused:
                continue  # paused since we looked: wait again
            decision = admission.decision
            o.level, o.level_reasons = decision.level, [*decision.reasons, *self.notes]
            if decision.level is RiskLevel.FORBIDDEN:
                self._forbidden(decision)
                return
            if decision.level is RiskLevel.HARD and approved != self.prepared.binding:
                why = (
                    "the change differs from what was approved: asked again"
                    if approved
                    else "undoing a change is HARD here: a human decides"
                    if first is None
                    else "HARD now (looked again right before the write)"
                )
                asked = decision.model_copy(update={"reasons": [why, *decision.reasons]})
                if not await self._ask(asked, f"{self.action.id}#{round_}"):
                    return
                approved = self.prepared.binding
                continue  # time passed while a human looked: look again
            await flow.set_phase(Phase.REMEDIATE)
            await self._run()
            return
        o.result = ChangeResult.FAILED
        o.error = f"the change kept changing after {MAX_ASKS} approvals: not applied"

    async def _ask(self, decision: PolicyDecision, approval_id: str) -> bool:
        """A human decides (or the timer denies); True if the write may go on."""
        o = self.outcome
        verdict = await self.flow.gate.wait(
            self.action,
            decision,
            self.prepared,
            self.flow.approval_timeout,
            approval_id="" if approval_id == self.action.id else approval_id,
        )
        o.approval, o.approver = verdict.verdict, verdict.approver
        if verdict.may_run:
            return True
        o.result = {
            ApprovalVerdict.DENIED: ChangeResult.DENIED,
            ApprovalVerdict.TIMEOUT: ChangeResult.TIMEOUT,
        }.get(verdict.verdict, ChangeResult.SKIPPED)
        if o.result is ChangeResult.SKIPPED:
            o.error = "alert resolved before a decision"
        return False

    def _forbidden(self, decision: PolicyDecision) -> None:
        o = self.outcome
        o.approval, o.result = ApprovalVerdict.FORBIDDEN, ChangeResult.FORBIDDEN
        o.error = "forbidden by policy: " + "; ".join(decision.reasons)

    async def _admit(self) -> Admission:
        lock = self.flow.lock
        held = lock.request_id and not self.housekeeping
        return await call(
            contracts.ADMIT,
            AdmitRequest(policy=self._policy_request(), lock=lock.request() if held else None),
            summary=f"admit {self.action.tool}",
            **options.internal(),
        )

    def _policy_request(self) -> PolicyRequest:
        return PolicyRequest(
            action=self.action.tool,
            target=self.action.target,
            default_level=self.prepared.default_level,
            reversibility=self.prepared.reversibility,
            target_critical=self.critical,
            risks=self.prepared.risks,
        )

    async def _policy(self) -> PolicyDecision:
        return await call(
            contracts.POLICY,
            self._policy_request(),
            summary=f"policy {self.action.tool}",
            **options.internal(),
        )

    # --- 0.1 paths (histories from before the gate-under-lock patches) -------------------------

    async def _write_checked_before_the_lock(self, decision: PolicyDecision) -> None:
        flow, o = self.flow, self.outcome
        if decision.level is RiskLevel.HARD:
            if not await self._ask(decision, self.action.id):
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
            self.prepared = await prepare(self.call, self.site)
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

    async def _compensate_unchecked(self, level_reason: str) -> None:
        await self.flow.kill_switch.wait(self.flow)
        await self.flow.lock.acquire(str(self.action.target))
        self.prepared = await prepare(
            ToolCall(tool=self.action.tool, target=self.action.target, params=self.action.params),
            self.site,
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

    # --- the write -----------------------------------------------------------------------------

    async def _run(self) -> None:
        o, prepared = self.outcome, self.prepared
        o.change_id = str(workflow.uuid4())
        if prepared.compensation is not None and not self.rollback_of and not self.housekeeping:
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
                **self.site,
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
        try:
            await call(
                contracts.RECORD_CHANGE,
                record,
                summary=f"change log: {record.action} {record.result.value}",
                **options.record(),
            )
        except ActivityError as err:
            self._unrecorded(unless_cancelled(err))

    def _announce(self) -> None:
        """What humans hear after the record: a dry-run's preview, or the write's result."""
        o = self.outcome
        if self.housekeeping:
            return
        if o.result is ChangeResult.DRY_RUN:
            self.flow.notify("action", f"Dry-run {self.action.tool}", [self.prepared.preview])
        elif self.ran:
            ok = o.result is ChangeResult.APPLIED
            self.flow.notify(
                "action",
                f"{'Applied' if ok else 'FAILED'} {self.action.tool} on {self.action.target}",
                [self.summary or self.prepared.preview, o.error],
            )


async def rollback(flow: IncidentFlow, why: str) -> bool:
    """Run the saga's compensations newest-first; one failing never skips the rest. True if
    every one was applied (the incident is rolled back, not only escalated)."""
    if not flow.saga:
        return True
    await flow.set_phase(Phase.ROLLBACK)
    flow.notify("rollback", f"Rolling back: {why}")
    complete = True
    for comp in flow.saga.pending():
        comp.done = True
        action = compensation_action(comp)
        try:
            outcome = await WriteStep(
                flow, action, "rollback", critical=flow.critical, rollback_of=comp.change_id
            ).compensate("compensation of an approved change")
            complete = complete and outcome.result in (ChangeResult.APPLIED, ChangeResult.SKIPPED)
            flow.state.rollbacks.append(
                f"{action.tool} on {action.target}: {outcome.result.value} (undoes {comp.change_id})"
                + (f": {outcome.error}" if outcome.error else "")
            )
        except Exception as err:  # one failing compensation must not skip the rest
            complete = False
            flow.state.rollbacks.append(f"{action.tool} on {action.target}: error {err}")
    return complete


def compensation_action(comp: Compensation) -> Action:
    return Action(
        id=f"undo-{comp.change_id[:8]}",
        tool=comp.call.tool,
        target=comp.call.target,
        params=comp.call.params,
        rationale=f"compensate change {comp.change_id}",
    )
