"""One incident per problem: the incident's claim on (canonical target, incident type).

The first incident that triages to a problem owns it; an alert that triages to a problem someone
else owns joins that incident (a signal) and closes as JOINED, without notifying or acting. The
claim is an activity, so the grouping decision is in both workflows' histories and replays the
same. The owner releases the problem when it closes; a claim left by an owner that vanished is
taken over (see ``activities/problems.py``).
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from core import contracts
    from core.models import (
        AlertStatus,
        IncidentState,
        JoinedAlert,
        ProblemClaim,
        ProblemClaimRequest,
        ProblemRelease,
        Triage,
        problem_key,
    )
    from workflows import options
    from workflows.calls import call
    from workflows.remediation import cause, unless_cancelled

PROBLEM_GROUPING = "problem-grouping"
"""Patch: 0.2 opens one incident per problem; 0.1 opened one per alert fingerprint."""

JOIN_ATTEMPTS = 3


def enabled() -> bool:
    return workflow.patched(PROBLEM_GROUPING)


class Problem:
    """The incident's side of its problem: claim after triage, hand over, release at close."""

    def __init__(self) -> None:
        self.key = ""
        self.owned = False

    async def claim_or_join(self, state: IncidentState, triage: Triage) -> str:
        """Own the problem (``""``) or join the incident that owns it (its workflow id). An owner
        that closes between the claim and the join is claimed again (it released, or is gone)."""
        assert triage.target is not None and triage.runbook is not None
        info = workflow.info()
        self.key = problem_key(str(triage.target), triage.runbook.incident_type)
        request = ProblemClaimRequest(
            key=self.key,
            target=str(triage.target),
            incident_type=triage.runbook.incident_type,
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            fingerprint=state.alert.fingerprint,
        )
        for _ in range(JOIN_ATTEMPTS):
            try:
                claim: ProblemClaim = await call(
                    contracts.PROBLEM_CLAIM, request, summary="problem", **options.internal()
                )
            except ActivityError as err:  # the store is down: act alone rather than not at all
                state.notes.append(
                    f"could not check for an open incident of this problem: {cause(unless_cancelled(err))}"
                )
                return ""
            if claim.note:
                state.notes.append(claim.note)
            if claim.owned:
                self.owned = True
                return ""
            if await self._hand_over(state, claim.owner_workflow_id):
                return claim.owner_workflow_id
        state.notes.append(f"the incident owning {self.key} kept closing: acting alone")
        return ""

    @staticmethod
    async def _hand_over(state: IncidentState, owner: str) -> bool:
        alert = state.alert
        joined = JoinedAlert(
            fingerprint=alert.fingerprint,
            name=alert.name,
            status=AlertStatus.FIRING,
            labels=alert.labels,
            summary=alert.annotations.get("summary", ""),
            via=workflow.info().workflow_id,
        )
        try:
            await workflow.get_external_workflow_handle(owner).signal("join", joined)
        except Exception:  # the owner closed meanwhile
            return False
        return True

    async def release(self, state: IncidentState) -> None:
        if not self.owned:
            return
        self.owned = False
        try:
            await call(
                contracts.PROBLEM_RELEASE,
                ProblemRelease(key=self.key, workflow_id=workflow.info().workflow_id),
                summary="release problem",
                **options.internal(),
            )
        except ActivityError as err:  # the next claim finds this workflow closed and takes over
            state.notes.append(f"problem {self.key} not released: {cause(unless_cancelled(err))}")
