"""The incident's memory: the flapping guard after triage, recall before planning, and the closed
incident remembered. Memory informs; it never blocks an incident: a call that fails is a note,
and the incident goes on as if memory did not exist.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from core import contracts
    from core.memory import FlapRequest, FlapVerdict, Recall, recall_request
    from core.models import IncidentState, Triage
    from workflows import options
    from workflows.calls import call
    from workflows.remediation import cause, unless_cancelled

INCIDENT_MEMORY = "incident-memory"
"""Patch: 0.2 consults the memory (flapping, recall) and remembers the closed incident."""


def enabled() -> bool:
    return workflow.patched(INCIDENT_MEMORY)


async def flapping(state: IncidentState, triage: Triage) -> FlapVerdict | None:
    """The same alert fixed on the same target too often lately: a human should look."""
    assert triage.target is not None
    request = FlapRequest(
        alert=state.alert.name,
        target=str(triage.target),
        limit=triage.runbook.flapping if triage.runbook else None,
    )
    try:
        return await call(
            contracts.MEMORY_FLAPPING, request, summary="flapping guard", **options.memory()
        )
    except ActivityError as err:
        state.notes.append(f"flapping guard unavailable: {cause(unless_cancelled(err))}")
        return None


async def recall(state: IncidentState) -> Recall:
    """Similar past incidents and each action's verified record, for the planner."""
    try:
        return await call(
            contracts.MEMORY_RECALL, recall_request(state), summary="recall", **options.memory()
        )
    except ActivityError as err:
        return Recall(notes=[f"memory unavailable: {cause(unless_cancelled(err))}"])


async def remember(state: IncidentState) -> None:
    """Store the closed incident (idempotent per workflow run); a failure is only a note."""
    try:
        done = await call(contracts.MEMORY_REMEMBER, state, summary="remember", **options.memory())
    except ActivityError as err:
        state.notes.append(f"not remembered: {cause(unless_cancelled(err))}")
        return
    if not done.stored and done.reason.startswith(("embedding failed", "memory unavailable")):
        state.notes.append(f"not remembered: {done.reason}")
