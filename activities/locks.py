"""Asks a target's lock workflow for the lock (signal-with-start, so the first asker creates it)."""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client

from core.models import LockRequest, LockState, lock_workflow_id


class LockActivities:
    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn(name="lock.acquire")
    async def acquire(self, request: LockRequest) -> None:
        await self.client.start_workflow(
            "TargetLockWorkflow",
            LockState(target=request.target),
            id=lock_workflow_id(request.task_queue, request.target),
            task_queue=request.task_queue,
            start_signal="acquire",
            start_signal_args=[request],
            static_summary=f"write lock for {request.target}",
        )
