"""The policy as a Temporal activity: decisions are made at gate time and recorded in history."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from temporalio import activity

from approval.policy import decide
from core import contracts
from core.config import Settings
from core.learning import LearnedPolicy
from core.models import PolicyDecision, PolicyRequest


class PolicyActivities:
    """The store's lookups are injected by the worker (approval/ knows no SQL):
    ``count_recent_writes(target)`` and ``learned(action, target)`` (learned restrictions, levels
    a human accepted, the action's verified record)."""

    def __init__(
        self,
        settings: Settings,
        count_recent_writes: Callable[[str], int],
        learned: Callable[[str, str], LearnedPolicy] | None = None,
    ) -> None:
        self.settings = settings
        self.count_recent_writes = count_recent_writes
        self.learned = learned

    @activity.defn(name=contracts.POLICY.name)
    async def evaluate(self, request: PolicyRequest) -> PolicyDecision:
        target = str(request.target)
        recent = await asyncio.to_thread(self.count_recent_writes, target)
        learned = (
            await asyncio.to_thread(self.learned, request.action, target) if self.learned else None
        )
        return decide(self.settings, request, recent, learned)
