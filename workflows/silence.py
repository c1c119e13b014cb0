"""The incident's own alert, muted in Alertmanager while a human is asked, expired at close.

Without it the alert re-notifies every ``repeat_interval`` while the approval waits, and every
other receiver pages someone about a problem that is already being handled. The silence is a
write like any other (the policy, the change log: ``alertmanager.silence`` is NONE for exactly
the alert's own labels), bounded in time so a lost worker cannot leave it forever, and its
compensation (``alertmanager.expire_silence``) runs when the incident closes, however it closes:
resolved, rolled back, denied or cancelled.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.models import Action, ChangeResult, ToolCall
    from workflows.remediation import WriteStep

if TYPE_CHECKING:
    from workflows.flow import IncidentFlow

SILENCE_OWN_ALERT = "silence-own-alert"
"""Patch: 0.2 mutes the incident's own alert while an approval waits; 0.1 did not."""

MARGIN = timedelta(minutes=30)
"""Beyond the approval timeout: the fix and its verification run before the close expires it."""


class OwnAlertSilence:
    def __init__(self) -> None:
        self.change_id = ""
        self.expire: ToolCall | None = None
        self.tried = False

    async def start(self, flow: IncidentFlow) -> None:
        """Mute the alert before the first approval wait (once per incident)."""
        triage = flow.state.triage
        if self.tried or triage is None or triage.silencer is None:
            return
        self.tried = True
        if not workflow.patched(SILENCE_OWN_ALERT):
            return
        minutes = int((flow.approval_timeout + MARGIN).total_seconds() // 60)
        action = Action(
            id="silence",
            tool="alertmanager.silence",
            target=triage.silencer,
            params={
                "labels": dict(flow.state.alert.labels),
                "duration": f"{minutes}m",
                "comment": f"homelab-agents is handling it; {triage.ui_url or 'awaiting approval'}",
            },
            rationale="mute the incident's own alert while a human decides",
        )
        outcome = await WriteStep(flow, action, "silence", False, housekeeping=True).apply()
        if outcome.result is ChangeResult.APPLIED and outcome.compensation is not None:
            self.change_id, self.expire = outcome.change_id, outcome.compensation
            flow.state.notes.append(f"alert silenced in {triage.silencer} while a human decides")
        else:
            flow.state.notes.append(
                f"could not silence the alert in {triage.silencer}: "
                f"{outcome.error or outcome.result.value}"
            )

    async def end(self, flow: IncidentFlow) -> None:
        """Expire the silence (the compensation of its write), through the policy as well."""
        if self.expire is None:
            return
        expire, self.expire = self.expire, None
        action = Action(
            id="unsilence",
            tool=expire.tool,
            target=expire.target,
            params=expire.params,
            rationale=f"compensate change {self.change_id}",
        )
        outcome = await WriteStep(
            flow, action, "silence", False, rollback_of=self.change_id, housekeeping=True
        ).compensate("the incident closed: its silence ends")
        if outcome.result is not ChangeResult.APPLIED:
            flow.state.notes.append(
                f"the silence {self.change_id} could not be expired: "
                f"{outcome.error or outcome.result.value} (it ends on its own)"
            )
