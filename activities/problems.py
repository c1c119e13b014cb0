"""Correlation activities: who owns a problem (one incident per canonical target and incident
type), recorded in the store so the grouping decision is in the workflow's history, never only in
the intake's memory.

A claim whose owner's workflow has closed (terminated, or closed without releasing) is taken over,
checked against Temporal like a target lock's holder.
"""

from __future__ import annotations

import asyncio
import logging

from temporalio import activity
from temporalio.client import Client

from activities.locks import workflow_running
from activities.store import Store
from core import contracts
from core.metrics import ALERTS_JOINED
from core.models import ProblemClaim, ProblemClaimRequest, ProblemRelease

log = logging.getLogger(__name__)


class ProblemActivities:
    def __init__(self, client: Client, store: Store) -> None:
        self.client = client
        self.store = store

    @activity.defn(name=contracts.PROBLEM_CLAIM.name)
    async def claim(self, request: ProblemClaimRequest) -> ProblemClaim:
        """Own the problem, or name the running incident that does (and map the alert to it)."""
        r = request
        owner = await asyncio.to_thread(
            self.store.problem_claim, r.key, r.target, r.incident_type, r.workflow_id, r.run_id
        )
        note = ""
        if owner is not None and not await workflow_running(
            self.client, owner.workflow_id, owner.run_id
        ):
            if await asyncio.to_thread(
                self.store.problem_take_over, r.key, owner, r.workflow_id, r.run_id
            ):
                log.warning("problem %s taken over from %s (closed)", r.key, owner.workflow_id)
                note = f"took over problem {r.key} from {owner.workflow_id} (its workflow closed)"
                owner = None
            else:  # another incident took it over first: ask again who owns it now
                owner = await asyncio.to_thread(
                    self.store.problem_claim,
                    r.key,
                    r.target,
                    r.incident_type,
                    r.workflow_id,
                    r.run_id,
                )
        owner_id = r.workflow_id if owner is None else owner.workflow_id
        await asyncio.to_thread(self.store.problem_alert, r.fingerprint, r.key, owner_id)
        if owner is not None:
            ALERTS_JOINED.labels(r.incident_type).inc()
        return ProblemClaim(owned=owner is None, owner_workflow_id=owner_id, note=note)

    @activity.defn(name=contracts.PROBLEM_RELEASE.name)
    async def release(self, request: ProblemRelease) -> None:
        """The owner closed: the next alert of this problem opens a new incident."""
        await asyncio.to_thread(self.store.problem_close, request.key, request.workflow_id)
