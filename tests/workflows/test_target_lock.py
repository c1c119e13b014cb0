"""The target lock on the time-skipping server with its real activities and a real SQLite store:
one holder at a time, the release wakes the next waiter, a closed holder loses the lock, a waiter
that gives up leaves the queue, and ownership is checked before a write."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import workflow
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.locks import LockActivities
from activities.store import Store

with workflow.unsafe.imports_passed_through():
    from workflows.target_lock import LockUnavailable, TargetLock


HOLD_TICK = timedelta(minutes=10)
"""The time-skipping server jumps to the next thing that happens when nothing is running; with no
timer ahead, that is the holder's own end, and a test that awaits another workflow's result could
see its holder time out."""


@workflow.defn(name="LockProbe")
class LockProbe:
    """Takes the lock on a target, reports, holds it until told to stop, releases."""

    def __init__(self) -> None:
        self.lock = TargetLock()
        self.held = False
        self.done = False
        self.checks: list[bool] = []

    @workflow.run
    async def run(self, target: str) -> str:
        try:
            async with self.lock:
                await self.lock.acquire(target)
                self.held = True
                self.checks.append(await self.lock.holds())
                while not self.done:  # a timer ahead, so skipped time cannot run past it
                    try:
                        await workflow.wait_condition(lambda: self.done, timeout=HOLD_TICK)
                    except TimeoutError:
                        pass
                self.checks.append(await self.lock.holds())
        except LockUnavailable as err:
            return f"unavailable: {err}"
        return "released"

    @workflow.signal
    def lock_granted(self, request_id: str) -> None:
        self.lock.grant(request_id)

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.query
    def status(self) -> dict[str, Any]:
        return {"held": self.held, "checks": self.checks}


async def held(handle: WorkflowHandle[Any, Any], expected: bool = True) -> None:
    for _ in range(200):
        if (await handle.query(LockProbe.status))["held"] is expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id}: held never became {expected}")


async def start(env: WorkflowEnvironment, queue: str, target: str) -> WorkflowHandle[Any, Any]:
    return await env.client.start_workflow(
        LockProbe.run, target, id=f"probe-{uuid.uuid4().hex[:8]}", task_queue=queue
    )


async def test_one_holder_and_the_release_wakes_the_next(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    locks = LockActivities(ts_env.client, store)
    queue = f"lock-{uuid.uuid4().hex[:6]}"
    target = "docker:lab/web"
    async with Worker(
        ts_env.client,
        task_queue=queue,
        workflows=[LockProbe],
        activities=[locks.take, locks.release, locks.check],
    ):
        first = await start(ts_env, queue, target)
        await held(first)
        second = await start(ts_env, queue, target)
        await asyncio.sleep(1)
        assert (await second.query(LockProbe.status))["held"] is False  # queued behind first
        assert store.lock_holder(target).workflow_id == first.id  # type: ignore[union-attr]

        await first.signal(LockProbe.finish)
        assert await first.result() == "released"
        await held(second)  # woken by the release, not by a timer
        assert store.lock_holder(target).workflow_id == second.id  # type: ignore[union-attr]
        await second.signal(LockProbe.finish)
        assert await second.result() == "released"
        assert (await first.query(LockProbe.status))["checks"] == [True, True]
    assert store.lock_holder(target) is None


async def test_a_closed_holder_loses_the_lock_and_its_late_write_is_refused(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    locks = LockActivities(ts_env.client, store)
    queue = f"lock-{uuid.uuid4().hex[:6]}"
    target = "proxmox:pve/lxc/100"
    async with Worker(
        ts_env.client,
        task_queue=queue,
        workflows=[LockProbe],
        activities=[locks.take, locks.release, locks.check],
    ):
        stale = await start(ts_env, queue, target)
        await held(stale)
        await stale.terminate("gone without releasing")  # no release ever comes
        heir = await start(ts_env, queue, target)
        await held(heir)  # taken over at once: the holder's workflow is closed
        holder = store.lock_holder(target)
        assert holder is not None and holder.workflow_id == heir.id
        await heir.signal(LockProbe.finish)
        assert await heir.result() == "released"


async def test_a_waiter_that_gives_up_leaves_the_queue(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    locks = LockActivities(ts_env.client, store)
    queue = f"lock-{uuid.uuid4().hex[:6]}"
    target = "postgres:main/shop"
    async with Worker(
        ts_env.client,
        task_queue=queue,
        workflows=[LockProbe],
        activities=[locks.take, locks.release, locks.check],
    ):
        holder = await start(ts_env, queue, target)
        await held(holder)
        waiter = await start(ts_env, queue, target)
        result = await waiter.result()  # time skips the 30-minute wait
        assert result.startswith("unavailable:") and holder.id in result
        assert store.lock_release(target, "not-the-holder") == []  # nobody queued any more
        await holder.signal(LockProbe.finish)
        assert await holder.result() == "released"


async def test_ownership_is_fenced_by_the_token(tmp_path: Path) -> None:
    """A lock row replaced behind the holder's back makes its next write check fail."""
    from core.models import LockRequest

    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    mine = LockRequest(target="t", task_queue="q", holder_workflow_id="a", request_id="r1")
    other = LockRequest(target="t", task_queue="q", holder_workflow_id="b", request_id="r2")
    assert store.lock_take(mine) is None and store.lock_holds("t", "r1")
    gone = store.lock_take(other)
    assert gone is not None and gone.token == "r1"
    assert store.lock_take_over(other, gone)
    assert not store.lock_holds("t", "r1") and store.lock_holds("t", "r2")
    assert not store.lock_take_over(mine, gone)  # the stale token cannot take it back
    assert store.lock_release("t", "r1") == []  # a stale release frees nothing
    assert store.lock_holds("t", "r2")
