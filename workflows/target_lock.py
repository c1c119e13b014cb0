"""A durable mutex per target: incidents never run writes on the same target at the same time.

Two halves: ``TargetLockWorkflow`` (one per target, the queue and the lease) and ``TargetLock``
(the incident's handle on it).

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
    from core import contracts
    from core.models import LockRequest, LockState, lock_workflow_id
    from workflows import options
    from workflows.calls import call

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


class LockUnavailable(Exception):
    """Another incident held the target for longer than the wait allows."""


STORE_LOCK = "target-lock-in-store"
"""Patch: 0.2 keeps locks in the store (no lock workflow per target in the Web UI's list) and
checks ownership before each write. 0.1 histories keep the lock workflow."""


class TargetLock:
    """The incident's side of a target's lock: taken before its first write, held to the end.

    ``async with lock:`` releases it however the incident ends; ``acquire`` is a no-op once held
    (every write of an incident acts on its one target). While another incident holds the target
    the request waits in the store's queue: the holder's release wakes it (``lock_granted``), and
    a backoff timer retries in case that wake-up is lost; a holder whose workflow has closed loses
    the lock to the waiter.
    """

    WAIT = timedelta(minutes=30)
    RETRY_MAX = timedelta(seconds=30)

    def __init__(self) -> None:
        self.request_id = ""
        self.target = ""
        self.granted: set[str] = set()
        self.woken = False

    async def __aenter__(self) -> TargetLock:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is GeneratorExit:
            return  # the worker evicted this run from its cache: it is not ending, nothing to free
        await self.release()

    def grant(self, request_id: str) -> None:
        """The ``lock_granted`` signal: granted (0.1), or the lock is free now (0.2)."""
        self.granted.add(request_id)
        self.woken = True

    def request(self) -> LockRequest:
        info = workflow.info()
        return LockRequest(
            target=self.target,
            task_queue=info.task_queue,
            holder_workflow_id=info.workflow_id,
            holder_run_id=info.run_id,
            request_id=self.request_id,
        )

    async def acquire(self, target: str) -> bool:
        """Take the target's write lock; True if it was taken just now (time may have passed)."""
        if self.request_id:
            return False
        self.request_id, self.target = str(workflow.uuid4()), target
        if not workflow.patched(STORE_LOCK):
            return await self._acquire_workflow_lock()
        request = self.request()
        deadline = workflow.now() + self.WAIT
        delay = timedelta(seconds=1)
        while True:
            grant = await call(
                contracts.LOCK_TAKE, request, summary=f"lock {target}", **options.internal()
            )
            if grant.granted:
                return True
            left = deadline - workflow.now()
            if left <= timedelta(0):
                await self.release()  # leave the queue
                raise LockUnavailable(
                    f"the write lock on {target} was not granted within {self.WAIT} "
                    f"(held by {grant.holder})"
                )
            self.woken = False
            try:
                await workflow.wait_condition(
                    lambda: self.woken,
                    timeout=min(delay, left),
                    timeout_summary=f"lock {target} (held by {grant.holder})",
                )
            except TimeoutError:
                pass
            delay = min(delay * 2, self.RETRY_MAX)

    async def holds(self) -> bool:
        """Checked right before each write: the lock is still this incident's."""
        if not self.request_id or not workflow.patched(STORE_LOCK):
            return bool(self.request_id)
        return await call(
            contracts.LOCK_CHECK, self.request(), summary="lock held?", **options.internal()
        )

    async def release(self) -> None:
        if not self.request_id:
            return
        try:
            if workflow.patched(STORE_LOCK):
                await call(
                    contracts.LOCK_RELEASE,
                    self.request(),
                    summary=f"unlock {self.target}",
                    **options.internal(),
                )
            else:
                await workflow.get_external_workflow_handle(
                    lock_workflow_id(workflow.info().task_queue, self.target)
                ).signal("release", self.request_id)
        except Exception as err:
            workflow.logger.warning("could not release lock on %s: %s", self.target, err)
        self.request_id = ""

    async def _acquire_workflow_lock(self) -> bool:
        """0.1: signal-with-start of the target's lock workflow, then wait for its grant."""
        request_id = self.request_id
        await call(
            contracts.LOCK_ACQUIRE,
            self.request().model_copy(update={"holder_run_id": ""}),
            summary=f"lock {self.target}",
            **options.internal(),
        )
        try:
            await workflow.wait_condition(
                lambda: request_id in self.granted,
                timeout=self.WAIT,
                timeout_summary=f"lock {self.target}",
            )
        except TimeoutError:
            await self.release()  # leave the queue
            raise LockUnavailable(
                f"the write lock on {self.target} was not granted within {self.WAIT}"
            ) from None
        return True
