"""Target locks as activities: take (or queue), release (and wake the next waiter), check.

The lock rows live in the store (``activities.store.locks``); liveness of a holder is asked of
Temporal itself, so a lock is never held by a workflow that has closed and never lost by one that
still runs, however long its write takes. ``lock.acquire`` is the 0.1 mechanism (a lock workflow
per target), kept for incidents started before 0.2 until they have drained.
"""

from __future__ import annotations

import asyncio
import logging

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.store import Store
from activities.store.locks import Holder
from core import contracts
from core.models import LockGrant, LockRequest, LockState, lock_workflow_id

log = logging.getLogger(__name__)


async def workflow_running(client: Client, workflow_id: str, run_id: str) -> bool:
    """Whether a holder's (a lock's, a problem's) workflow run still runs: a closed one loses
    what it held."""
    try:
        desc = await client.get_workflow_handle(workflow_id, run_id=run_id or None).describe()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return False
        raise
    return desc.status is WorkflowExecutionStatus.RUNNING


class LockActivities:
    def __init__(self, client: Client, store: Store) -> None:
        self.client = client
        self.store = store

    async def _running(self, workflow_id: str, run_id: str) -> bool:
        return await workflow_running(self.client, workflow_id, run_id)

    @activity.defn(name=contracts.LOCK_TAKE.name)
    async def take(self, request: LockRequest) -> LockGrant:
        holder: Holder | None = await asyncio.to_thread(self.store.lock_take, request)
        if holder is None:
            return LockGrant(granted=True)
        if not await self._running(holder.workflow_id, holder.run_id):
            if await asyncio.to_thread(self.store.lock_take_over, request, holder):
                log.warning(
                    "lock on %s taken over from %s (its workflow has closed)",
                    request.target,
                    holder.workflow_id,
                )
                return LockGrant(granted=True, took_over_from=holder.workflow_id)
            holder = await asyncio.to_thread(self.store.lock_holder, request.target) or holder
        return LockGrant(granted=False, holder=holder.workflow_id)

    @activity.defn(name=contracts.LOCK_RELEASE.name)
    async def release(self, request: LockRequest) -> int:
        """Release the lock if ours; wake the oldest waiter that still runs. Returns 1 if woken."""
        waiters = await asyncio.to_thread(
            self.store.lock_release, request.target, request.request_id
        )
        for request_id, workflow_id, run_id in waiters:
            try:
                await self.client.get_workflow_handle(workflow_id, run_id=run_id or None).signal(
                    "lock_granted", request_id
                )
                return 1
            except RPCError:  # it closed while waiting: it no longer wants the lock
                await asyncio.to_thread(self.store.lock_forget_waiter, request_id)
        return 0

    @activity.defn(name=contracts.LOCK_CHECK.name)
    async def check(self, request: LockRequest) -> bool:
        return await asyncio.to_thread(self.store.lock_holds, request.target, request.request_id)

    @activity.defn(name=contracts.LOCK_ACQUIRE.name)
    async def acquire(self, request: LockRequest) -> None:
        """0.1: signal-with-start of the target's lock workflow."""
        await self.client.start_workflow(
            "TargetLockWorkflow",
            LockState(target=request.target),
            id=lock_workflow_id(request.task_queue, request.target),
            task_queue=request.task_queue,
            start_signal="acquire",
            start_signal_args=[request],
            static_summary=f"write lock for {request.target}",
        )
