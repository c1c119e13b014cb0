"""A child's incident waits for its parent's: a container's for its engine's, a guest's for its
node's. When every diagnostic of a child fails to reach it and its parent does not answer either,
the child opens (or joins) the parent's ``TargetUnreachable`` incident, takes no action, stays
quiet, and waits for that incident to close; then it looks at its own target again and acts only
if it is still broken. Fifty containers on an engine that went away make one engine incident,
one notification, and no container writes while the engine is down.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from core import contracts
    from core.models import (
        AlertStatus,
        Evidence,
        JoinedAlert,
        ParentRequest,
        TargetRef,
        ToolErrorKind,
        Triage,
    )
    from workflows import options
    from workflows.calls import call
    from workflows.remediation import cause, unless_cancelled

if TYPE_CHECKING:
    from workflows.flow import IncidentFlow

PARENT_INCIDENTS = "parent-incidents"
"""Patch: 0.2 makes a child with an unreachable parent wait for the parent's incident (and stays
quiet unless it must act); 0.1 escalated each child on its own."""

PARENT_WAIT = timedelta(hours=1)
"""How long a child waits for its parent's incident (the parent's own verification waits 30m)."""


def enabled() -> bool:
    return workflow.patched(PARENT_INCIDENTS)


def parent_of(target: TargetRef) -> TargetRef | None:
    """A resource's parent is the target it lives on (``docker:lab/web`` → ``docker:lab``)."""
    if not target.resource:
        return None
    return TargetRef(service=target.service, target=target.target)


def waits_for_parent(triage: Triage, evidence: list[Evidence]) -> bool:
    """Every diagnostic failed to reach the target (refused credentials are no outage), it has a
    parent, and a runbook answers the parent's ``TargetUnreachable``."""
    if triage.target is None or parent_of(triage.target) is None or not triage.parent_incidents:
        return False
    return all(e.error is not None and e.error.kind is ToolErrorKind.UNREACHABLE for e in evidence)


class ParentWait:
    """The child's side: open the parent's incident, join it, wait for it to close."""

    def __init__(self) -> None:
        self.parent_id = ""
        self.closed = False

    async def wait(self, flow: IncidentFlow, triage: Triage, why: str) -> bool:
        """True once the parent's incident closed (look again); False if it could not be opened
        or did not close within ``PARENT_WAIT`` (escalate)."""
        assert triage.target is not None
        parent = parent_of(triage.target)
        if parent is None:
            return False
        me = workflow.info().workflow_id
        try:
            self.parent_id = await call(
                contracts.TOPOLOGY_OPEN_PARENT,
                ParentRequest(parent=parent, child=me, reason=why),
                summary=f"parent {parent}",
                **options.internal(),
            )
        except ActivityError as err:
            flow.state.notes.append(
                f"could not open {parent}'s incident: {cause(unless_cancelled(err))}"
            )
            return False
        alert = flow.state.alert
        joined = JoinedAlert(
            fingerprint=alert.fingerprint,
            name=alert.name,
            status=AlertStatus.FIRING,
            labels=alert.labels,
            summary=alert.annotations.get("summary", ""),
            via=me,
            waiting=True,
        )
        try:
            await workflow.get_external_workflow_handle(self.parent_id).signal("join", joined)
        except Exception:  # the parent's incident closed meanwhile: look again at once
            return True
        flow.state.joined_to = self.parent_id
        flow.state.notes.append(f"{why}; waiting for {parent}'s incident {self.parent_id}")
        flow.show()
        try:
            await workflow.wait_condition(
                lambda: self.closed, timeout=PARENT_WAIT, timeout_summary=f"parent {parent}"
            )
        except TimeoutError:
            flow.state.notes.append(f"{parent}'s incident did not close within {PARENT_WAIT}")
            return False
        flow.state.notes.append(f"{parent}'s incident closed: looking again")
        return True
