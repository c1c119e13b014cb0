"""IncidentWorkflow: one alert, from triage to a verified fix (or a rollback and an escalation).

Deterministic: every look at the world is an activity, every wait a Temporal timer. The steps are
DESIGN.md's: triage → diagnose → plan → gate → remediate (saga) → verify → close. Each write goes
through ``tool.prepare`` (before-state, exact preview, compensation), the policy, the approval gate
(HARD waits for a human up to ``approval.timeout``, then auto-denies), the kill switch and the
target's lock, and is recorded in the change log whether it ran, failed, was denied or timed out.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from core.models import (
        Action,
        ActionOutcome,
        Alert,
        AlertStatus,
        ApprovalDecision,
        ApprovalRecord,
        ApprovalRequest,
        ApprovalSignal,
        ApprovalVerdict,
        ChangeRecord,
        ChangeResult,
        Evidence,
        IncidentInput,
        IncidentState,
        LockRequest,
        Notification,
        Outcome,
        Phase,
        Plan,
        PlanRequest,
        PolicyDecision,
        PolicyRequest,
        PreparedWrite,
        Reversibility,
        RiskLevel,
        TargetRef,
        ToolCall,
        ToolError,
        ToolErrorKind,
        ToolResult,
        Triage,
        VerificationResult,
        VerifyRequest,
        lock_workflow_id,
    )
    from workflows import options
    from workflows import search_attributes as sa
    from workflows.planning import plan_incident
    from workflows.saga import Saga

LOCK_WAIT = timedelta(minutes=30)
PAUSE_RECHECK = timedelta(seconds=30)


class LockUnavailable(Exception):
    """Another incident held the target for longer than LOCK_WAIT."""


class Gate:
    """Outcome of an approval wait: the verdict, who gave it, and whether the write may run."""

    def __init__(self, verdict: ApprovalVerdict, approver: str = "") -> None:
        self.verdict = verdict
        self.approver = approver

    @property
    def may_run(self) -> bool:
        return self.verdict is ApprovalVerdict.APPROVED


@workflow.defn(name="IncidentWorkflow")
class IncidentWorkflow:
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
        self.decisions: dict[str, ApprovalDecision] = {}
        self.closed_actions: dict[str, ApprovalVerdict] = {}
        self.unsaved_records: list[ApprovalRecord] = []
        self.pause_hint: bool | None = None
        self.lock_request_id: str = ""
        self.lock_target: str = ""
        self.granted_locks: set[str] = set()
        self.approvers: list[str] = []
        self.changes_done = 0
        self.outbox: list[Notification] = []
        self.sender: asyncio.Task[None] | None = None

    # --- run ---------------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: IncidentInput) -> IncidentState:
        try:
            if inp.rollback_of:
                await self._manual_rollback(inp.rollback_of)
            else:
                await self._handle_incident()
        finally:
            await self._release_lock()
        await self._close()
        return self.state

    async def _handle_incident(self) -> None:
        triage = await self._triage()
        if triage.runbook is None or triage.target is None:
            await self._escalate(["cannot act on this alert", *triage.notes])
            return
        self._notify("opened", f"Incident opened: {self.state.alert.name} on {triage.target}")

        await self._set_phase(Phase.DIAGNOSE)
        self.state.evidence = await self._diagnose(triage)

        await self._set_phase(Phase.PLAN)
        plan = await self._plan(triage)
        self.state.plan = plan
        self._details()
        self._notify(
            "plan",
            f"Plan ({plan.source}): {len(plan.actions)} action(s)",
            [f"{a.id}: {a.tool} on {a.target} {a.params or ''}" for a in plan.actions] + plan.notes,
        )
        if self.state.alert_resolved:
            self.state.outcome = Outcome.ALERT_RESOLVED
            return
        if plan.escalate:
            await self._escalate(plan.notes)
            return

        stopped = False
        for action in plan.actions:
            if self.state.alert_resolved:
                break
            outcome = await self._gate_and_apply(action, triage, step="remediate")
            self.state.actions.append(outcome)
            self._details()
            if outcome.result in (ChangeResult.DENIED, ChangeResult.TIMEOUT):
                stopped = True
                break
            if outcome.result is ChangeResult.FAILED:
                await self._rollback(f"{action.tool} failed: {outcome.error}")
                await self._escalate([f"{action.tool} failed: {outcome.error}"], rolled_back=True)
                return

        applied = [a for a in self.state.actions if a.result is ChangeResult.APPLIED]
        if self.state.alert_resolved and not applied:
            self.state.outcome = Outcome.ALERT_RESOLVED
            return
        if stopped:
            if applied:
                await self._rollback("a later action was not approved")
            await self._escalate(["a remediation was not approved; nothing more was done"])
            return
        if any(a.dry_run for a in self.state.actions) and not applied:
            self.state.outcome = Outcome.DRY_RUN
            return

        await self._set_phase(Phase.VERIFY)
        result = await self._verify(triage)
        self.state.verification = result
        lines = [c.get("summary", "") for c in result.checks]
        self._notify(
            "verification", "Verification " + ("passed" if result.passed else "failed"), lines
        )
        if result.passed:
            self.state.outcome = Outcome.RESOLVED if applied else Outcome.RECOVERED
            return
        if applied and self.saga:
            await self._rollback(f"verification failed: {result.detail}")
            await self._escalate([f"verification failed: {result.detail}"], rolled_back=True)
            return
        await self._escalate([f"verification failed: {result.detail}"])

    # --- steps ---------------------------------------------------------------------------------

    async def _triage(self) -> Triage:
        triage = await workflow.execute_activity(
            "incident.triage",
            self.state.alert,
            result_type=Triage,
            summary="triage",
            **options.internal(),
        )
        self.state.triage = triage
        self.approvers = list(triage.approvers)
        self.state.notes.extend(triage.notes)
        workflow.upsert_search_attributes(
            [
                sa.SERVICE.value_set(triage.service or "unknown"),
                sa.TARGET.value_set(str(triage.target) if triage.target else "unknown"),
                sa.SEVERITY.value_set(triage.severity),
                sa.ALERT.value_set(self.state.alert.name),
            ]
        )
        self._details()
        return triage

    async def _diagnose(self, triage: Triage) -> list[Evidence]:
        assert triage.runbook is not None and triage.target is not None
        steps = triage.runbook.diagnostics
        calls = [
            self._read(ToolCall(tool=step.tool, target=triage.target, params=step.params), step.key)
            for step in steps
        ]
        results = await asyncio.gather(*calls)
        return [
            Evidence(
                key=step.key, tool=step.tool, target=r.target, ok=r.ok, data=r.data, error=r.error
            )
            for step, r in zip(steps, results, strict=True)
        ]

    async def _read(self, call: ToolCall, label: str) -> ToolResult:
        try:
            return await workflow.execute_activity(
                call.tool, call, result_type=ToolResult, summary=label, **options.read_tool()
            )
        except ActivityError as err:
            return ToolResult(
                tool=call.tool,
                target=str(call.target),
                ok=False,
                error=ToolError(kind=ToolErrorKind.UNREACHABLE, message=_cause(err)),
            )

    async def _plan(self, triage: Triage) -> Plan:
        request = PlanRequest(
            incident_id=self.state.incident_id,
            alert=self.state.alert,
            triage=triage,
            evidence=self.state.evidence,
        )
        if workflow.patched("llm-planner-chain"):
            return await plan_incident(request)
        return await workflow.execute_activity(
            "plan.runbook",
            request,
            result_type=Plan,
            summary="runbook planner",
            **options.internal(),
        )

    async def _verify(self, triage: Triage) -> VerificationResult:
        assert triage.runbook is not None and triage.target is not None
        spec = triage.runbook.verification
        try:
            return await workflow.execute_activity(
                "incident.verify",
                VerifyRequest(target=triage.target, spec=spec),
                result_type=VerificationResult,
                summary="verify",
                **options.verify(spec.timeout, spec.stable_for),
            )
        except ActivityError as err:
            return VerificationResult(
                passed=False, detail=f"verification could not run: {_cause(err)}"
            )

    # --- gate and apply one write ----------------------------------------------------------------

    async def _prepare(self, call: ToolCall) -> PreparedWrite:
        try:
            return await workflow.execute_activity(
                "tool.prepare",
                call,
                result_type=PreparedWrite,
                summary=f"prepare {call.tool}",
                **options.read_tool(),
            )
        except ActivityError as err:
            return PreparedWrite(
                preview="",
                reversibility=Reversibility.IRREVERSIBLE,
                error=ToolError(kind=ToolErrorKind.UNREACHABLE, message=_cause(err)),
            )

    async def _policy(
        self, action: Action, prepared: PreparedWrite, critical: bool
    ) -> PolicyDecision:
        request = PolicyRequest(
            action=action.tool,
            target=action.target,
            default_level=prepared.default_level,
            reversibility=prepared.reversibility,
            target_critical=critical,
        )
        return await workflow.execute_activity(
            "policy.evaluate",
            request,
            result_type=PolicyDecision,
            summary=f"policy {action.tool}",
            **options.internal(),
        )

    async def _gate_and_apply(
        self, action: Action, triage: Triage, step: str, rollback_of: str = ""
    ) -> ActionOutcome:
        call = ToolCall(
            tool=action.tool,
            target=action.target,
            params=action.params,
            incident_id=self.state.incident_id,
        )
        await self._set_phase(Phase.GATE)
        prepared = await self._prepare(call)
        if prepared.error is not None:
            outcome = ActionOutcome(
                action=action,
                level=prepared.default_level,
                approval=ApprovalVerdict.NOT_REQUIRED,
                level_reasons=["not evaluated: the action could not be prepared"],
                result=ChangeResult.FAILED,
                error=f"{prepared.error.kind}: {prepared.error.message}",
            )
            await self._record(outcome, prepared, step, rollback_of=rollback_of)
            return outcome
        decision = await self._policy(action, prepared, triage.critical)
        outcome = ActionOutcome(
            action=action,
            level=decision.level,
            level_reasons=decision.reasons,
            approval=ApprovalVerdict.NOT_REQUIRED,
            preview=prepared.preview,
            result=ChangeResult.SKIPPED,
            compensation=prepared.compensation,
            dry_run=decision.dry_run or self.input.dry_run,
        )
        if decision.level is RiskLevel.FORBIDDEN:
            outcome.approval = ApprovalVerdict.FORBIDDEN
            outcome.result = ChangeResult.FORBIDDEN
            outcome.error = "forbidden by policy: " + "; ".join(decision.reasons)
            await self._record(outcome, prepared, step, rollback_of=rollback_of)
            return outcome
        if outcome.dry_run:
            outcome.result = ChangeResult.DRY_RUN
            await self._record(outcome, prepared, step, rollback_of=rollback_of)
            self._notify("action", f"Dry-run {action.tool}", [prepared.preview])
            return outcome
        if prepared.noop:
            outcome.error = "target already in the desired state"
            await self._record(outcome, prepared, step, rollback_of=rollback_of)
            return outcome

        if decision.level is RiskLevel.HARD:
            gate = await self._await_approval(action, decision, prepared, triage)
            outcome.approval, outcome.approver = gate.verdict, gate.approver
            if not gate.may_run:
                outcome.result = {
                    ApprovalVerdict.DENIED: ChangeResult.DENIED,
                    ApprovalVerdict.TIMEOUT: ChangeResult.TIMEOUT,
                }.get(gate.verdict, ChangeResult.SKIPPED)
                if outcome.result is ChangeResult.SKIPPED:
                    outcome.error = "alert resolved before a decision"
                await self._record(outcome, prepared, step, rollback_of=rollback_of)
                return outcome
        elif decision.level is RiskLevel.SOFT:
            self._notify(
                "action",
                f"Proceeding with {action.tool} (SOFT)",
                [prepared.preview, *decision.reasons],
            )

        paused = await self._wait_until_writes_allowed()
        try:
            locked_now = await self._acquire_lock(str(action.target))
        except LockUnavailable as err:
            outcome.result = ChangeResult.FAILED
            outcome.error = str(err)
            await self._record(outcome, prepared, step, rollback_of=rollback_of)
            return outcome
        if locked_now or paused or decision.level is RiskLevel.HARD:
            # Time passed (a human, the kill switch, another incident holding the target):
            # look again so we never act on stale state, and record the fresh before-state.
            prepared = await self._prepare(call)
            if prepared.error is not None or prepared.noop:
                outcome.result = ChangeResult.SKIPPED if prepared.noop else ChangeResult.FAILED
                outcome.error = (
                    "target already in the desired state when re-checked before acting"
                    if prepared.noop
                    else f"{prepared.error.kind}: {prepared.error.message}"  # type: ignore[union-attr]
                )
                await self._record(outcome, prepared, step, rollback_of=rollback_of)
                return outcome
            outcome.preview = prepared.preview
            outcome.compensation = prepared.compensation

        await self._set_phase(Phase.REMEDIATE)
        return await self._execute(outcome, prepared, step, rollback_of=rollback_of)

    async def _execute(
        self, outcome: ActionOutcome, prepared: PreparedWrite, step: str, rollback_of: str = ""
    ) -> ActionOutcome:
        action = outcome.action
        change_id = str(workflow.uuid4())
        outcome.change_id = change_id
        if prepared.compensation is not None and not rollback_of:
            self.saga.register(change_id, prepared.compensation)  # before the write, always
        started = workflow.now()
        call = ToolCall(
            tool=action.tool,
            target=action.target,
            params=action.params,
            change_id=change_id,
            before=prepared.before,
            incident_id=self.state.incident_id,
        )
        try:
            result = await workflow.execute_activity(
                action.tool,
                call,
                result_type=ToolResult,
                summary=prepared.preview[:200],
                **options.write_tool(prepared.timeout_seconds),
            )
        except ActivityError as err:
            result = ToolResult(
                tool=action.tool,
                target=str(action.target),
                ok=False,
                error=ToolError(kind=ToolErrorKind.UNREACHABLE, message=_cause(err)),
            )
        outcome.result = ChangeResult.APPLIED if result.ok else ChangeResult.FAILED
        if result.error:
            outcome.error = f"{result.error.kind}: {result.error.message}"
        self.changes_done += 1
        await self._record(
            outcome, prepared, step, after=result.data, started=started, rollback_of=rollback_of
        )
        self._notify(
            "action",
            f"{'Applied' if result.ok else 'FAILED'} {action.tool} on {action.target}",
            [result.summary or prepared.preview, outcome.error],
        )
        return outcome

    async def _await_approval(
        self, action: Action, decision: PolicyDecision, prepared: PreparedWrite, triage: Triage
    ) -> Gate:
        timeout = triage.approval_timeout
        deadline = workflow.now() + timeout
        rollback_plan = (
            f"{prepared.compensation.tool} {prepared.compensation.params}"
            if prepared.compensation
            else (
                "irreversible: no rollback possible"
                if prepared.reversibility is Reversibility.IRREVERSIBLE
                else "nothing to roll back (no lasting state change)"
            )
        )
        request = ApprovalRequest(
            incident_id=self.state.incident_id,
            workflow_id=self.state.workflow_id,
            action=action,
            level=decision.level,
            reasons=decision.reasons,
            preview=prepared.preview,
            rollback_plan=rollback_plan,
            deadline=deadline,
        )
        self.state.pending_approval = request
        await self._set_phase(Phase.AWAITING_APPROVAL)
        workflow.upsert_search_attributes([sa.APPROVAL.value_set("pending")])
        self._notify(
            "approval",
            f"Approval needed: {action.tool} on {action.target}",
            [prepared.preview, *decision.reasons, f"rollback: {rollback_plan}"],
            approval=request,
        )
        gate = Gate(ApprovalVerdict.TIMEOUT)
        while True:
            remaining = deadline - workflow.now()
            try:
                if remaining <= timedelta(0):
                    raise TimeoutError
                await workflow.wait_condition(
                    lambda: (
                        action.id in self.decisions
                        or self.state.alert_resolved
                        or bool(self.unsaved_records)
                    ),
                    timeout=remaining,
                    timeout_summary=f"approval of {action.id} times out (auto-deny)",
                )
            except TimeoutError:
                gate = Gate(ApprovalVerdict.TIMEOUT, approver="timer")
                self._decided(action.id, gate.verdict, "timer", "timeout", "no decision in time")
                break
            await self._save_records()
            if action.id in self.decisions:
                d = self.decisions[action.id]
                gate = Gate(
                    ApprovalVerdict.APPROVED if d.approve else ApprovalVerdict.DENIED, d.approver
                )
                break
            if self.state.alert_resolved:
                gate = Gate(ApprovalVerdict.NOT_REQUIRED)  # may_run is False: nothing to fix now
                self.closed_actions[action.id] = ApprovalVerdict.NOT_REQUIRED
                break
        await self._save_records()
        self.state.pending_approval = None
        workflow.upsert_search_attributes([sa.APPROVAL.value_set(gate.verdict.value)])
        self._notify(
            "approval_closed",
            f"{action.tool}: {gate.verdict.value}"
            + (f" by {gate.approver}" if gate.approver else ""),
            approval=request,
            action_id=action.id,
            verdict=gate.verdict.value,
        )
        return gate

    # --- saga ----------------------------------------------------------------------------------

    async def _rollback(self, why: str) -> None:
        if not self.saga:
            return
        await self._set_phase(Phase.ROLLBACK)
        self._notify("rollback", f"Rolling back: {why}")
        for step in self.saga.pending():
            step.done = True
            action = Action(
                id=f"undo-{step.change_id[:8]}",
                tool=step.call.tool,
                target=step.call.target,
                params=step.call.params,
                rationale=f"compensate change {step.change_id}",
            )
            try:
                await self._wait_until_writes_allowed()
                await self._acquire_lock(str(action.target))
                prepared = await self._prepare(
                    ToolCall(tool=action.tool, target=action.target, params=action.params)
                )
                outcome = ActionOutcome(
                    action=action,
                    level=prepared.default_level,
                    approval=ApprovalVerdict.NOT_REQUIRED,
                    level_reasons=["compensation of an approved change"],
                    preview=prepared.preview,
                    result=ChangeResult.SKIPPED,
                )
                if prepared.error is not None:
                    outcome.result = ChangeResult.FAILED
                    outcome.error = f"{prepared.error.kind}: {prepared.error.message}"
                    await self._record(outcome, prepared, "rollback", rollback_of=step.change_id)
                else:
                    await self._execute(outcome, prepared, "rollback", rollback_of=step.change_id)
                self.state.rollbacks.append(
                    f"{action.tool} on {action.target}: {outcome.result.value} (undoes {step.change_id})"
                )
            except Exception as err:  # one failing compensation must not skip the rest
                self.state.rollbacks.append(f"{action.tool} on {action.target}: error {err}")

    async def _manual_rollback(self, change_id: str) -> None:
        """A user-requested undo of one recorded change, gated like any other write."""
        triage = await self._triage()
        original = await workflow.execute_activity(
            "changes.get",
            change_id,
            result_type=ChangeRecord,
            summary=f"load change {change_id}",
            **options.internal(),
        )
        if original.result is not ChangeResult.APPLIED or not original.rollback_action:
            await self._escalate(
                [
                    f"change {change_id} cannot be rolled back "
                    f"(result {original.result.value}, reversibility {original.reversibility.value})"
                ]
            )
            return
        if original.rolled_back_by:
            await self._escalate(
                [f"change {change_id} was already rolled back by {original.rolled_back_by}"]
            )
            return
        action = Action(
            id="rollback",
            tool=original.rollback_action,
            target=TargetRef.parse(original.target),
            params=original.rollback_params,
            rationale=f"manual rollback of change {change_id}",
        )
        self.state.plan = Plan(source="manual-rollback", actions=[action])
        outcome = await self._gate_and_apply(
            action, triage, step="manual-rollback", rollback_of=change_id
        )
        self.state.actions.append(outcome)
        if outcome.result is ChangeResult.APPLIED:
            self.state.outcome = Outcome.RESOLVED
            self.state.notes.append(f"change {change_id} rolled back")
        else:
            await self._escalate(
                [f"rollback of {change_id}: {outcome.result.value} {outcome.error}"]
            )

    # --- helpers -------------------------------------------------------------------------------

    async def _record(
        self,
        outcome: ActionOutcome,
        prepared: PreparedWrite,
        step: str,
        after: dict[str, Any] | None = None,
        started: datetime | None = None,
        rollback_of: str = "",
    ) -> None:
        if not outcome.change_id:
            outcome.change_id = str(workflow.uuid4())
        info = workflow.info()
        comp = prepared.compensation
        record = ChangeRecord(
            change_id=outcome.change_id,
            incident_id=self.state.incident_id,
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            at=workflow.now(),
            step=step,
            action=outcome.action.tool,
            target=str(outcome.action.target),
            params=outcome.action.params,
            level=outcome.level,
            level_reasons=outcome.level_reasons,
            approval=outcome.approval,
            approver=outcome.approver,
            dry_run=outcome.dry_run,
            before=prepared.before,
            after=after or {},
            result=outcome.result,
            error=outcome.error,
            preview=prepared.preview,
            reversibility=prepared.reversibility,
            rollback_action=comp.tool if comp else "",
            rollback_params=comp.params if comp else {},
            rollback_of=rollback_of,
            started_at=started,
            finished_at=workflow.now(),
        )
        await workflow.execute_activity(
            "changes.record",
            record,
            summary=f"change log: {record.action} {record.result.value}",
            **options.internal(),
        )

    async def _wait_until_writes_allowed(self) -> bool:
        """The kill switch: the store is the truth, signals only wake us early. True if we waited."""
        previous = self.state.phase
        waited = False
        while await workflow.execute_activity(
            "control.paused", summary="kill switch", result_type=bool, **options.internal()
        ):
            waited = True
            if not self.state.paused:
                self.state.paused = True
                await self._set_phase(Phase.PAUSED)
            self.pause_hint = True
            try:
                await workflow.wait_condition(
                    lambda: self.pause_hint is False,
                    timeout=PAUSE_RECHECK,
                    timeout_summary="paused",
                )
            except TimeoutError:
                pass
        if self.state.paused:
            self.state.paused = False
            await self._set_phase(previous)
        return waited

    async def _acquire_lock(self, target: str) -> bool:
        """Take the target's write lock, held until the incident closes; True if taken just now."""
        if self.lock_request_id:
            return False
        request_id = str(workflow.uuid4())
        self.lock_request_id = request_id
        self.lock_target = target
        await workflow.execute_activity(
            "lock.acquire",
            LockRequest(
                target=target,
                task_queue=workflow.info().task_queue,
                holder_workflow_id=workflow.info().workflow_id,
                request_id=request_id,
            ),
            summary=f"lock {target}",
            **options.internal(),
        )
        try:
            await workflow.wait_condition(
                lambda: request_id in self.granted_locks,
                timeout=LOCK_WAIT,
                timeout_summary=f"lock {target}",
            )
        except TimeoutError:
            await self._release_lock()  # leave the queue
            raise LockUnavailable(
                f"the write lock on {target} was not granted within {LOCK_WAIT}"
            ) from None
        return True

    async def _release_lock(self) -> None:
        if not self.lock_request_id:
            return
        try:
            await workflow.get_external_workflow_handle(
                lock_workflow_id(workflow.info().task_queue, self.lock_target)
            ).signal("release", self.lock_request_id)
        except Exception as err:
            workflow.logger.warning("could not release lock on %s: %s", self.lock_target, err)
        self.lock_request_id = ""

    async def _escalate(self, reasons: list[str], rolled_back: bool = False) -> None:
        self.state.notes.extend(r for r in reasons if r)
        self.state.outcome = Outcome.ROLLED_BACK if rolled_back else Outcome.ESCALATED
        await self._set_phase(Phase.ESCALATED)
        self._notify("escalated", f"Escalated: {self.state.alert.name}", reasons)

    async def _close(self) -> None:
        if self.state.outcome is None:
            self.state.outcome = Outcome.ESCALATED
        if self.state.outcome in (Outcome.ESCALATED, Outcome.ROLLED_BACK):
            final = Phase.ESCALATED
        elif self.state.outcome is Outcome.DRY_RUN:
            final = Phase.CLOSED
        else:
            final = Phase.RESOLVED
        self.state.closed_at = workflow.now()
        await self._set_phase(final)
        await self._save_records()
        await workflow.execute_activity(
            "incidents.record", self.state, summary="incident record", **options.internal()
        )
        if final is not Phase.ESCALATED:
            self._notify(
                "resolved",
                f"{self.state.outcome.value}: {self.state.alert.name}",
                [f"{a.action.tool}: {a.result.value}" for a in self.state.actions],
            )
        if self.sender is not None:
            await self.sender  # every queued notification delivered (or given up) before closing
        await workflow.wait_condition(workflow.all_handlers_finished)

    def _notify(
        self,
        kind: str,
        title: str,
        lines: list[str] | None = None,
        approval: ApprovalRequest | None = None,
        action_id: str = "",
        verdict: str = "",
    ) -> None:
        """Queue a notification; a background task delivers them in order.

        Delivery never holds the incident up: a chat outage costs retries in the sender task,
        not seconds on the way to the fix. ``_close`` drains the queue before the workflow ends.
        """
        note = Notification(
            kind=kind,
            incident_id=self.state.incident_id,
            workflow_id=self.state.workflow_id,
            title=title,
            lines=[line for line in (lines or []) if line],
            severity=self.state.alert.severity,
            ui_url=self.state.triage.ui_url if self.state.triage else "",
            approval=approval,
            action_id=action_id,
            verdict=verdict,
        )
        self.state.notifications_sent += 1
        self.outbox.append(note)
        if self.sender is None or self.sender.done():
            self.sender = asyncio.create_task(self._deliver())

    async def _deliver(self) -> None:
        while self.outbox:
            note = self.outbox.pop(0)
            try:
                await workflow.execute_activity(
                    "notify.event", note, summary=f"notify {note.kind}", **options.notify()
                )
            except ActivityError as err:
                workflow.logger.warning("notification %s not delivered: %s", note.kind, _cause(err))

    async def _save_records(self) -> None:
        while self.unsaved_records:
            record = self.unsaved_records.pop(0)
            await workflow.execute_activity(
                "approvals.record",
                args=[self.state.workflow_id, record],
                summary="approval record",
                **options.internal(),
            )

    async def _set_phase(self, phase: Phase) -> None:
        self.state.phase = phase
        workflow.upsert_search_attributes([sa.PHASE.value_set(phase.value)])
        self._details()

    def _details(self) -> None:
        s = self.state
        lines = [f"**{s.alert.name}** — phase **{s.phase.value}**"]
        if s.triage and s.triage.target:
            lines.append(
                f"target `{s.triage.target}` · severity {s.triage.severity}"
                + (" · **critical**" if s.triage.critical else "")
            )
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
        workflow.set_current_details("\n".join(lines))

    def _decided(
        self, action_id: str, verdict: ApprovalVerdict, approver: str, via: str, reason: str
    ) -> None:
        self.closed_actions[action_id] = verdict
        record = ApprovalRecord(
            action_id=action_id,
            verdict=verdict,
            approver=approver,
            via=via,
            reason=reason,
            at=workflow.now(),
        )
        self.unsaved_records.append(record)
        self.state.approvals.append(record)

    def _decision_problem(self, action_id: str, approver: str) -> str | None:
        pending = self.state.pending_approval
        wanted = action_id or (pending.action.id if pending else "")
        if wanted in self.closed_actions or wanted in self.decisions:
            verdict = self.closed_actions.get(wanted)
            return f"action {wanted} is already decided" + (
                f" ({verdict.value})" if verdict else ""
            )
        if pending is None:
            return "no action is waiting for approval"
        if wanted != pending.action.id:
            return f"unknown action id {wanted!r} (waiting: {pending.action.id})"
        if approver not in self.approvers:
            return f"{approver!r} is not an approver"
        return None

    def _accept(self, decision: ApprovalDecision) -> ApprovalRecord:
        pending = self.state.pending_approval
        assert pending is not None
        decision = decision.model_copy(
            update={"action_id": decision.action_id or pending.action.id}
        )
        self.decisions[decision.action_id] = decision
        verdict = ApprovalVerdict.APPROVED if decision.approve else ApprovalVerdict.DENIED
        self._decided(decision.action_id, verdict, decision.approver, decision.via, decision.reason)
        return self.state.approvals[-1]

    # --- messages ------------------------------------------------------------------------------

    @workflow.update
    def decide(self, decision: ApprovalDecision) -> ApprovalRecord:
        return self._accept(decision)

    @decide.validator
    def _validate_decide(self, decision: ApprovalDecision) -> None:
        problem = self._decision_problem(decision.action_id, decision.approver)
        if problem:
            raise ValueError(problem)

    def _signal_decision(self, sig: ApprovalSignal, approve: bool) -> None:
        problem = self._decision_problem(sig.action_id, sig.approver)
        if problem:
            pending = self.state.pending_approval
            record = ApprovalRecord(
                action_id=sig.action_id or (pending.action.id if pending else ""),
                verdict=ApprovalVerdict.APPROVED if approve else ApprovalVerdict.DENIED,
                approver=sig.approver,
                via="signal",
                reason=f"rejected: {problem}",
                at=workflow.now(),
                accepted=False,
            )
            self.unsaved_records.append(record)
            self.state.approvals.append(record)
            return
        self._accept(
            ApprovalDecision(
                action_id=sig.action_id,
                approve=approve,
                approver=sig.approver,
                via="signal",
                reason=sig.reason,
            )
        )

    @workflow.signal
    def approve(self, sig: ApprovalSignal) -> None:
        self._signal_decision(sig, True)

    @workflow.signal
    def deny(self, sig: ApprovalSignal) -> None:
        self._signal_decision(sig, False)

    @workflow.signal
    def alert(self, alert: Alert) -> None:
        """Re-notifications and the resolved notification of the same alert."""
        if alert.status is AlertStatus.RESOLVED:
            self.state.alert_resolved = True
        else:
            self.state.alert = self.state.alert.model_copy(
                update={"annotations": alert.annotations}
            )
        self.state.alerts_received += 1

    @workflow.signal
    def pause(self) -> None:
        self.pause_hint = True

    @workflow.signal
    def resume(self) -> None:
        self.pause_hint = False

    @workflow.signal
    def lock_granted(self, request_id: str) -> None:
        self.granted_locks.add(request_id)

    @workflow.query(name="state")
    def get_state(self) -> IncidentState:
        return self.state


def _cause(err: BaseException) -> str:
    cause = err.__cause__ or err
    return f"{type(cause).__name__}: {cause}"[:500]


def start_attributes(alert: Alert) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(sa.ALERT, alert.name),
            SearchAttributePair(sa.SEVERITY, alert.severity),
            SearchAttributePair(sa.PHASE, Phase.TRIAGE.value),
        ]
    )
