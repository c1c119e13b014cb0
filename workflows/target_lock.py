"""A durable mutex per target: incidents never run writes on the same target at the same time.

Incidents ask through the ``lock.acquire`` activity (signal-with-start of this workflow), wait for
the ``lock_granted`` signal, and send ``release`` when done. A holder that never releases (a
terminated incident) loses the lock when its lease runs out. The workflow closes as soon as nobody
holds or waits for the lock (the next incident's signal-with-start opens a new one), so no idle
lock lingers, and continues-as-new after many grants to keep its history short.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.models import LockRequest, LockState

LEASE = timedelta(minutes=15)
IDLE = timedelta(seconds=30)
GRANTS_PER_RUN = 200


@workflow.defn(name="TargetLockWorkflow")
class TargetLockWorkflow:
    @workflow.init
    def __init__(self, state: LockState) -> None:
        self.queue: list[LockRequest] = list(state.queue)
        self.released: set[str] = set()
        self.holder: LockRequest | None = None

    @workflow.run
    async def run(self, state: LockState) -> None:
        grants = 0
        while True:
            if not self.queue:
                try:  # started by signal-with-start, so a request is normally already here
                    await workflow.wait_condition(lambda: bool(self.queue), timeout=IDLE)
                except TimeoutError:
                    return
            request = self.queue.pop(0)
            if request.request_id in self.released:
                continue  # released before it was ever granted (the holder gave up)
            self.holder = request
            try:
                await workflow.get_external_workflow_handle(request.holder_workflow_id).signal(
                    "lock_granted", request.request_id
                )
            except Exception:
                workflow.logger.warning("lock holder %s is gone", request.holder_workflow_id)
                self.holder = None
                continue
            try:
                await workflow.wait_condition(
                    lambda rid=request.request_id: rid in self.released,  # type: ignore[misc]
                    timeout=LEASE,
                    timeout_summary="lock lease",
                )
            except TimeoutError:
                workflow.logger.warning("lease of %s expired", request.holder_workflow_id)
            self.holder = None
            grants += 1
            if not self.queue:
                return  # free: close now rather than idle
            if grants >= GRANTS_PER_RUN or workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(LockState(target=state.target, queue=self.queue))

    @workflow.signal
    def acquire(self, request: LockRequest) -> None:
        known = [r.request_id for r in self.queue]
        if self.holder is not None:
            known.append(self.holder.request_id)
        if request.request_id not in known:
            self.queue.append(request)

    @workflow.signal
    def release(self, request_id: str) -> None:
        self.released.add(request_id)

    @workflow.query
    def holder_id(self) -> str:
        return self.holder.holder_workflow_id if self.holder else ""
