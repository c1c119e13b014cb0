"""What the policy learns from verified outcomes, and what humans decide about it.

Learning only ever makes the agents more careful on its own (a ``restriction``: HARD for one
action on one target until a human clears it). A lower level is a human decision (``override``,
written by ``homelab-agents policy accept``); both are store state with every change in the
change log.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from core.models import Model, RiskLevel

POLICY_WORKFLOW = "policy"
"""The change log's ``workflow_id``/``step`` for policy changes (accept, clear, learned)."""

LEARNED = "learning"
"""Who a learned restriction is recorded as (no human decided it)."""


class LearnedPolicy(Model):
    """The learned state the policy reads for one action on one target."""

    restriction: str = Field(default="", description="why a learned restriction holds")
    restriction_since: datetime | None = None
    override: RiskLevel | None = Field(default=None, description="a level a human accepted")
    override_by: str = ""
    override_at: datetime | None = None
    record: str = Field(default="", description="the action's verified record on this target")


class Suggestion(Model):
    """An action a human approved often on one target, always verified, never 👎."""

    action: str
    target: str
    approvals: int
    runs: int
    last_approved: datetime
    approvers: list[str] = Field(default_factory=list)
    suggested: RiskLevel = RiskLevel.SOFT
