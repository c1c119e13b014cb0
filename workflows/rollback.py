"""RollbackWorkflow: a user's undo of one recorded change, gated and recorded like any write.

``homelab-agents rollback CHANGE_ID`` starts it (id ``rollback-<change>``). The undo is the
change's recorded compensation, through the same ``WriteStep`` as any remediation: policy,
approval when HARD, kill switch, the target's lock, the change log (``rollback_of`` names the
change it undoes, so it can only be undone once).
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core import contracts
    from core.models import (
        Action,
        ChangeRecord,
        ChangeResult,
        IncidentInput,
        IncidentState,
        Outcome,
        Plan,
        TargetRef,
    )
    from workflows import options
    from workflows.calls import call
    from workflows.flow import IncidentFlow
    from workflows.remediation import WriteStep


async def manual_rollback(flow: IncidentFlow, change_id: str) -> None:
    triage = await flow.triage()
    original: ChangeRecord = await call(
        contracts.GET_CHANGE, change_id, summary=f"load change {change_id}", **options.internal()
    )
    if original.result is not ChangeResult.APPLIED or not original.rollback_action:
        return await flow.escalate(
            [
                f"change {change_id} cannot be rolled back "
                f"(result {original.result.value}, reversibility {original.reversibility.value})"
            ]
        )
    if original.rolled_back_by:
        return await flow.escalate(
            [f"change {change_id} was already rolled back by {original.rolled_back_by}"]
        )
    action = Action(
        id="rollback",
        tool=original.rollback_action,
        target=TargetRef.parse(original.target),
        params=original.rollback_params,
        rationale=f"manual rollback of change {change_id}",
    )
    flow.state.plan = Plan(source="manual-rollback", actions=[action])
    outcome = await WriteStep(
        flow, action, "manual-rollback", triage.critical, rollback_of=change_id
    ).apply()
    flow.state.actions.append(outcome)
    if outcome.result is ChangeResult.APPLIED:
        flow.state.notes.append(f"change {change_id} rolled back")
        return flow.finish(Outcome.RESOLVED)
    await flow.escalate([f"rollback of {change_id}: {outcome.result.value} {outcome.error}"])


@workflow.defn(name="RollbackWorkflow")
class RollbackWorkflow(IncidentFlow):
    @workflow.run
    async def run(self, inp: IncidentInput) -> IncidentState:
        async with self.lock:
            await manual_rollback(self, inp.rollback_of)
        return await self.close()
