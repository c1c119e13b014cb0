"""The saga, the kill switch and cancellation on the time-skipping server, with the Docker tools
faked (tests/workflows/fakes.py) and every other activity real (store, policy, lock, records)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core.config import Settings
from core.models import (
    ChangeResult,
    IncidentInput,
    IncidentState,
    Outcome,
    Phase,
    VerificationResult,
    VerifyRequest,
)
from tests.alerts import make_alert
from tests.workflows.fakes import FakeDocker, merge
from workers.worker import WORKFLOWS, Components, activities_for, build_components
from workflows.incident import IncidentWorkflow


class SlowToVerify(FakeDocker):
    """Verification that waits (heartbeating) until cancelled, or fails after it, as asked."""

    def __init__(self, *, passes: bool | None) -> None:
        super().__init__(running=False)
        self.passes = passes
        self.verifying = asyncio.Event()
        self.cancelled = asyncio.Event()

    def activities(self) -> list[Any]:
        fake = self

        @activity.defn(name="incident.verify")
        async def verify(request: VerifyRequest) -> VerificationResult:
            fake.verifying.set()
            if fake.passes is None:
                try:
                    while True:
                        activity.heartbeat()
                        await asyncio.sleep(0.1)
                finally:
                    fake.cancelled.set()
            return VerificationResult(passed=bool(fake.passes), detail="exited again")

        return merge(super().activities(), [verify])


@asynccontextmanager
async def running(
    env: WorkflowEnvironment, settings: Settings, fake: FakeDocker
) -> AsyncIterator[Components]:
    parts = build_components(settings)
    async with Worker(
        env.client,
        task_queue=settings.temporal.task_queue,
        workflows=WORKFLOWS,
        activities=merge(activities_for(env.client, parts), fake.activities()),
        workflow_failure_exception_types=[Exception],
    ):
        yield parts
    parts.close()


def lab(settings_factory: Any) -> Settings:
    return settings_factory(
        docker=[{"name": "lab", "url": "unix:///nonexistent.sock"}],
        approval={"approvers": ["alice"]},
    )


async def start(env: WorkflowEnvironment, settings: Settings) -> WorkflowHandle[Any, IncidentState]:
    alert = make_alert()
    return await env.client.start_workflow(
        IncidentWorkflow.run,
        IncidentInput(alert=alert),
        id=f"incident-{alert.fingerprint}",
        task_queue=settings.temporal.task_queue,
        execution_timeout=timedelta(days=2),
    )


async def test_failed_verification_runs_the_compensation(
    ts_env: WorkflowEnvironment, settings_factory: Any
) -> None:
    settings = lab(settings_factory)
    fake = SlowToVerify(passes=False)
    async with running(ts_env, settings, fake) as parts:
        handle = await start(ts_env, settings)
        state = await handle.result()
    assert [w.tool for w in fake.writes] == ["docker.start", "docker.stop"]
    assert state.outcome is Outcome.ROLLED_BACK and state.phase is Phase.ESCALATED
    changes = parts.store.list_changes(handle.id)
    start_change, undo = changes
    assert (start_change.action, start_change.result) == ("docker.start", ChangeResult.APPLIED)
    assert (undo.action, undo.step, undo.rollback_of) == (
        "docker.stop",
        "rollback",
        start_change.change_id,
    )
    assert start_change.rolled_back_by == undo.change_id
    assert parts.store.lock_holder("docker:lab/web") is None


async def test_kill_switch_holds_the_write_until_resume(
    ts_env: WorkflowEnvironment, settings_factory: Any
) -> None:
    settings = lab(settings_factory)
    fake = SlowToVerify(passes=True)
    async with running(ts_env, settings, fake) as parts:
        parts.store.set_paused(True, "test", "maintenance")
        handle = await start(ts_env, settings)
        for _ in range(200):
            state = await handle.query(IncidentWorkflow.get_state)
            if state.paused:
                break
            await asyncio.sleep(0.05)
        assert state.paused and state.phase is Phase.PAUSED
        await ts_env.sleep(timedelta(hours=2))  # many rechecks: still nothing written
        assert fake.writes == []
        parts.store.set_paused(False, "test", "done")
        await handle.signal(IncidentWorkflow.resume)
        state = await handle.result()
    assert [w.tool for w in fake.writes] == ["docker.start"]
    assert state.outcome is Outcome.RESOLVED


async def test_cancelled_incident_compensates_releases_and_records(
    ts_env: WorkflowEnvironment, settings_factory: Any
) -> None:
    settings = lab(settings_factory)
    fake = SlowToVerify(passes=None)  # verification never ends on its own
    async with running(ts_env, settings, fake) as parts:
        handle = await start(ts_env, settings)
        await asyncio.wait_for(fake.verifying.wait(), 30)
        assert parts.store.lock_holder("docker:lab/web") is not None
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        # The compensation ran only after the verification activity had stopped
        # (WAIT_CANCELLATION_COMPLETED): nothing races the undo.
        assert fake.cancelled.is_set()
    assert isinstance(failed.value.cause, CancelledError)
    assert [w.tool for w in fake.writes] == ["docker.start", "docker.stop"]  # undone
    assert parts.store.lock_holder("docker:lab/web") is None  # released
    record = parts.store.get_incident(handle.id)
    assert record is not None and record.outcome is Outcome.CANCELLED
    assert record.phase is Phase.CLOSED and record.closed_at is not None
    results = [(c.action, c.result) for c in parts.store.list_changes(handle.id)]
    assert results == [
        ("docker.start", ChangeResult.APPLIED),
        ("docker.stop", ChangeResult.APPLIED),
    ]


class StoreDown(SlowToVerify):
    """The change log refuses every record (a store outage that does not end in time)."""

    def __init__(self) -> None:
        super().__init__(passes=True)
        self.record_attempts = 0

    def activities(self) -> list[Any]:
        fake = self

        @activity.defn(name="changes.record")
        async def record(change: Any) -> bool:
            fake.record_attempts += 1
            raise RuntimeError("could not connect to server: Connection refused")

        @activity.defn(name="incidents.record")
        async def record_incident(state: Any) -> None:
            raise RuntimeError("could not connect to server: Connection refused")

        return merge(super().activities(), [record, record_incident])


async def test_a_write_the_store_cannot_record_is_undone_and_escalated(
    ts_env: WorkflowEnvironment, settings_factory: Any
) -> None:
    settings = lab(settings_factory)
    fake = StoreDown()
    async with running(ts_env, settings, fake):
        handle = await start(ts_env, settings)
        state = await handle.result()
    # The write ran, its record was retried until the deadline (skipped time), then undone.
    assert [w.tool for w in fake.writes] == ["docker.start", "docker.stop"]
    assert fake.record_attempts > 10
    assert state.outcome is Outcome.ESCALATED and state.phase is Phase.ESCALATED
    (start_outcome,) = state.actions
    assert start_outcome.result is ChangeResult.FAILED
    assert "could not record it" in start_outcome.error and "rolled back" in start_outcome.error
    assert any("docker.stop" in r for r in state.rollbacks)
    assert any("incident record could not be stored" in n for n in state.notes)
