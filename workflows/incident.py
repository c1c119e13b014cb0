"""IncidentWorkflow: one alert, from triage to a verified fix (or a rollback and an escalation).

Deterministic: every look at the world is an activity, every wait a Temporal timer. The story is
``run``: triage → diagnose → plan → gate and remediate each action (``WriteStep``, a saga) →
verify → close. The mechanics live in helpers with one job each: the approval gate, the target
lock, the kill switch, the outbox, the write step (see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
from typing import Literal

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from core import contracts
    from core.models import (
        Alert,
        ChangeResult,
        Evidence,
        IncidentInput,
        IncidentState,
        Outcome,
        Phase,
        Plan,
        PlanRequest,
        ToolCall,
        ToolError,
        ToolErrorKind,
        ToolResult,
        Triage,
        VerificationResult,
        VerifyRequest,
    )
    from workflows import grouping, memory, options, topology
    from workflows import search_attributes as sa
    from workflows.calls import call
    from workflows.flow import IncidentFlow
    from workflows.planning import plan_incident
    from workflows.remediation import WriteStep, cause, rollback, unless_cancelled
    from workflows.rollback import manual_rollback
    from workflows.sites import site_options


ESCALATE_UNREACHABLE = "escalate-unreachable"
"""Patch: 0.2 escalates at once when no diagnostic could reach the target (0.1 went on to plan,
apply nothing and wait out the verification timeout)."""


def own(triage: Triage, evidence: list[Evidence]) -> list[Evidence]:
    """The evidence read from the incident's own target (not another service's metrics)."""
    return [e for e in evidence if e.tool.split(".", 1)[0] == triage.service]


def unreachable(triage: Triage, evidence: list[Evidence]) -> str:
    """Why nothing can be done, when every diagnostic failed to reach the target (or was refused
    its credentials); empty otherwise."""
    cut = {ToolErrorKind.UNREACHABLE, ToolErrorKind.UNAUTHORIZED}
    evidence = own(triage, evidence)
    if not evidence or not all(not e.ok and e.error and e.error.kind in cut for e in evidence):
        return ""
    first = evidence[0].error
    assert first is not None
    what = "refused our credentials" if first.kind is ToolErrorKind.UNAUTHORIZED else "unreachable"
    target = triage.target
    name = f"{target.service} target {target.target}" if target else "the target"
    return f"{name} {what}: {first.message}"


@workflow.defn(name="IncidentWorkflow")
class IncidentWorkflow(IncidentFlow):
    @workflow.run
    async def run(self, inp: IncidentInput) -> IncidentState:
        cancelled = False
        async with self.lock:  # released however the incident ends
            try:
                if inp.rollback_of:  # histories before RollbackWorkflow existed
                    await manual_rollback(self, inp.rollback_of)
                else:
                    await self.handle()
            except asyncio.CancelledError:
                cancelled = True
                await self.cancelled()
        state = await self.close()
        if cancelled:
            raise asyncio.CancelledError("incident cancelled")  # shown as Canceled in the Web UI
        return state

    async def handle(self) -> None:
        triage = await self.triage()
        if triage.runbook is None or triage.target is None:
            return await self.escalate(["cannot act on this alert", *triage.notes])
        if grouping.enabled():
            owner = await self.problem.claim_or_join(self.state, triage)
            if owner:  # another incident has this problem in hand: no notification, no action
                self.state.joined_to = owner
                self.state.notes.append(f"joined {owner}: it owns this problem")
                return self.finish(Outcome.JOINED)
        if memory.enabled():
            verdict = await memory.flapping(self.state, triage)
            if verdict is not None and verdict.flapping:
                return await self.escalate([verdict.reason, *verdict.history])
        deferred = topology.enabled()  # "opened" once it is known not to wait for a parent
        if not deferred:
            self.opened(triage)

        await self.set_phase(Phase.DIAGNOSE)
        joined = list(self.state.evidence)  # alerts that joined while triage ran
        found = await self.diagnose(triage)
        cut_off = unreachable(triage, found)
        waits = deferred and triage.runbook.waits_for_target  # the parent's own incident
        if (
            cut_off
            and deferred
            and not waits
            and topology.waits_for_parent(triage, own(triage, found))
        ):
            self.quiet = True  # one notification for the parent, none per child
            if await self.parent.wait(self, triage, cut_off):
                found = await self.diagnose(triage)
                cut_off = unreachable(triage, found)
        self.state.evidence = found + joined
        if cut_off and not waits and workflow.patched(ESCALATE_UNREACHABLE):
            return await self.escalate([cut_off])  # nothing can be done, nothing to verify
        if deferred and not self.quiet:
            self.opened(triage)

        await self.set_phase(Phase.PLAN)
        plan = await self.plan(triage)
        if self.state.alert_resolved:
            return self.finish(Outcome.ALERT_RESOLVED)
        if plan.escalate:
            return await self.escalate(plan.notes)

        ended = await self.remediate(plan, triage)
        if ended == "escalated":
            return
        applied = [a for a in self.state.actions if a.result is ChangeResult.APPLIED]
        if self.state.alert_resolved and not applied:
            return self.finish(Outcome.ALERT_RESOLVED)
        if ended == "not approved":
            if applied:
                await rollback(self, "a later action was not approved")
            return await self.escalate(["a remediation was not approved; nothing more was done"])
        if any(a.dry_run for a in self.state.actions) and not applied:
            return self.finish(Outcome.DRY_RUN)

        await self.set_phase(Phase.VERIFY)
        result = await self.verify(triage)
        if result.passed:
            return self.finish(Outcome.RESOLVED if applied else Outcome.RECOVERED)
        why = f"verification failed: {result.detail}"
        if applied and self.saga:
            return await self.escalate([why], rolled_back=await rollback(self, why))
        await self.escalate([why])

    # --- steps ---------------------------------------------------------------------------------

    def opened(self, triage: Triage) -> None:
        self.notify("opened", f"Incident opened: {self.state.alert.name} on {triage.target}")

    async def diagnose(self, triage: Triage) -> list[Evidence]:
        assert triage.runbook is not None and triage.target is not None
        steps = triage.runbook.diagnostics
        calls = [
            self.read(
                ToolCall(tool=step.tool, target=step.target or triage.target, params=step.params),
                step.key,
            )
            for step in steps
        ]
        results = await asyncio.gather(*calls)
        return [
            Evidence(
                key=step.key, tool=step.tool, target=r.target, ok=r.ok, data=r.data, error=r.error
            )
            for step, r in zip(steps, results, strict=True)
        ]

    async def read(self, tool: ToolCall, label: str) -> ToolResult:
        try:
            return await workflow.execute_activity(
                tool.tool,
                tool,
                result_type=ToolResult,
                summary=label,
                **options.read_tool(),
                **site_options(self.state.triage, tool.target),
            )
        except ActivityError as err:
            return ToolResult(
                tool=tool.tool,
                target=str(tool.target),
                ok=False,
                error=ToolError(
                    kind=ToolErrorKind.UNREACHABLE, message=cause(unless_cancelled(err))
                ),
            )

    async def plan(self, triage: Triage) -> Plan:
        request = PlanRequest(
            incident_id=self.state.incident_id,
            alert=self.state.alert,
            triage=triage,
            evidence=self.state.evidence,
        )
        if memory.enabled():
            request.recall = await memory.recall(self.state)
        if workflow.patched("llm-planner-chain"):
            plan = await plan_incident(request)
        else:
            plan = await call(
                contracts.PLAN_RUNBOOK, request, summary="runbook planner", **options.internal()
            )
        self.state.plan = plan
        self.show()
        if self.quiet and plan.actions:  # a child that waited must act after all: it speaks
            self.quiet = False
            self.opened(triage)
        if self.quiet:
            return plan
        self.notify(
            "plan",
            f"Plan ({plan.source}): {len(plan.actions)} action(s)",
            [f"{a.id}: {a.tool} on {a.target} {a.params or ''}" for a in plan.actions] + plan.notes,
        )
        return plan

    async def remediate(
        self, plan: Plan, triage: Triage
    ) -> Literal["done", "not approved", "escalated"]:
        """Each action through the gate, in order. A failed write rolls back what was done and
        escalates; a denied or timed-out one stops the plan."""
        for action in plan.actions:
            if self.state.alert_resolved:
                break
            outcome = await WriteStep(self, action, "remediate", triage.critical).apply()
            self.state.actions.append(outcome)
            self.show()
            if outcome.result in (ChangeResult.DENIED, ChangeResult.TIMEOUT):
                return "not approved"
            if outcome.result is ChangeResult.FAILED:
                why = f"{action.tool} failed: {outcome.error}"
                await self.escalate([why], rolled_back=await rollback(self, why))
                return "escalated"
        return "done"

    async def verify(self, triage: Triage) -> VerificationResult:
        assert triage.runbook is not None and triage.target is not None
        spec = triage.runbook.verification
        try:
            result = await call(
                contracts.VERIFY,
                VerifyRequest(target=triage.target, spec=spec),
                summary="verify",
                **options.verify(spec.timeout, spec.stable_for),
                **site_options(triage, triage.target),
            )
        except ActivityError as err:
            result = VerificationResult(
                passed=False, detail=f"verification could not run: {cause(unless_cancelled(err))}"
            )
        self.state.verification = result
        if self.quiet and result.passed:
            return result
        self.notify(
            "verification",
            "Verification " + ("passed" if result.passed else "failed"),
            [c.get("summary", "") for c in result.checks],
        )
        return result


def start_attributes(alert: Alert) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(sa.ALERT, alert.name),
            SearchAttributePair(sa.SEVERITY, alert.severity),
            SearchAttributePair(sa.PHASE, Phase.TRIAGE.value),
        ]
    )
