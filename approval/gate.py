"""The policy as a Temporal activity: decisions are made at gate time and recorded in history."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from temporalio import activity

from approval.policy import decide
from core import contracts
from core.config import Settings
from core.models import PolicyDecision, PolicyRequest


class PolicyActivities:
    """``count_recent_writes`` is the store's, injected by the worker (approval/ knows no SQL)."""

    def __init__(self, settings: Settings, count_recent_writes: Callable[[str], int]) -> None:
        self.settings = settings
        self.count_recent_writes = count_recent_writes

    @activity.defn(name=contracts.POLICY.name)
    async def evaluate(self, request: PolicyRequest) -> PolicyDecision:
        recent = await asyncio.to_thread(self.count_recent_writes, str(request.target))
        return decide(self.settings, request, recent)
