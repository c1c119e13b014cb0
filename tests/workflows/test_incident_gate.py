"""The approval gate on the time-skipping server: timeout, approve, deny, resolve, forbidden."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core.config import Settings
from core.models import (
    Alert,
    AlertStatus,
    ApprovalSignal,
    ApprovalVerdict,
    ChangeResult,
    IncidentInput,
    IncidentState,
    Outcome,
    Phase,
    RiskLevel,
)
from tests.approvals import signal as signed
from tests.workflows.fakes import FakeDocker, merge
from workers.worker import WORKFLOWS, activities_for, build_components
from workflows.incident import IncidentWorkflow


def exited_alert(fingerprint: str | None = None, status: AlertStatus = AlertStatus.FIRING) -> Alert:
    return Alert(
        name="ContainerKilled",
        status=status,
        fingerprint=fingerprint or uuid.uuid4().hex[:16],
        labels={
            "alertname": "ContainerKilled",
            "container": "web",
            "engine": "lab",
            "severity": "warning",
        },
        starts_at=datetime(2026, 11, 27, 3, 0, tzinfo=UTC),
    )


def lab_settings(settings_factory: Any, **approval: Any) -> Settings:
    return settings_factory(
        docker=[{"name": "lab", "url": "unix:///nonexistent.sock"}],
        approval={"approvers": ["alice"], **approval},
    )


@asynccontextmanager
async def running(
    env: WorkflowEnvironment, settings: Settings, fake: FakeDocker
) -> AsyncIterator[Any]:
    parts = build_components(settings)
    worker = Worker(
        env.client,
        task_queue=settings.temporal.task_queue,
        workflows=WORKFLOWS,
        activities=merge(activities_for(env.client, parts), fake.activities()),
        workflow_failure_exception_types=[Exception],
    )
    async with worker:
        yield parts
    parts.close()


async def start(
    env: WorkflowEnvironment, settings: Settings, alert: Alert
) -> WorkflowHandle[Any, IncidentState]:
    return await env.client.start_workflow(
        IncidentWorkflow.run,
        IncidentInput(alert=alert),
        id=f"incident-{alert.fingerprint}",
        task_queue=settings.temporal.task_queue,
        execution_timeout=timedelta(hours=1),
    )


async def wait_pending(handle: WorkflowHandle[Any, IncidentState]) -> IncidentState:
    for _ in range(200):
        state = await handle.query(IncidentWorkflow.get_state)
        if state.pending_approval is not None:
            return state
        await asyncio.sleep(0.05)
    raise AssertionError("the incident never asked for approval")


async def test_hard_action_auto_denies_after_five_minutes(
    ts_env: WorkflowEnvironment, settings_factory: Any
) -> None:
    settings = lab_settings(settings_factory, critical=["docker:lab/*"])
    fake = FakeDocker(running=False)
    async with running(ts_env, settings, fake) as parts:
        wall = time.monotonic()
        handle = await start(ts_env, settings, exited_alert())
        state = await handle.result()
        wall = time.monotonic() - wall

    assert fake.writes == []
    action = state.actions[0]
    assert action.level is RiskLevel.HARD
    assert action.approval is ApprovalVerdict.TIMEOUT
    assert action.result is ChangeResult.TIMEOUT
    assert state.outcome is Outcome.ESCALATED and state.phase is Phase.ESCALATED
    assert state.closed_at is not None
    assert state.closed_at - state.opened_at >= timedelta(minutes=5)
    assert wall < 5, f"time skipping should make a 5-minute wait fast, took {wall:.1f}s"
    changes = parts.store.list_changes(handle.id)
    assert [(c.action, c.result, c.approval) for c in changes] == [
        ("docker.start", ChangeResult.TIMEOUT, ApprovalVerdict.TIMEOUT)
    ]
    assert [a["verdict"] for a in parts.store.list_approvals(handle.id)] == ["timeout"]


async def test_approve_signal_before_timeout_runs_the_action(
    ts_env: WorkflowEnvironment, settings_factory: Any
) -> None:
    settings = lab_settings(settings_factory, critical=["docker:*/web"])
    fake = FakeDocker(running=False)
    async with running(ts_env, settings, fake) as parts:
        handle = await start(ts_env, settings, exited_alert())
        pending = await wait_pending(handle)
        assert pending.phase is Phase.AWAITING_APPROVAL
        assert "start container web" in pending.pending_approval.preview  # type: ignore[union-attr]
        await ts_env.sleep(timedelta(minutes=4))
        request = pending.pending_approval
        assert request is not None
        await handle.signal(
            IncidentWorkflow.approve, signed(settings, handle.id, request, "alice", reason="go")
        )
        state = await handle.result()

    assert len(fake.writes) == 1 and fake.writes[0].tool == "docker.start"
    assert state.actions[0].approval is ApprovalVerdict.APPROVED
    assert state.actions[0].approver == "alice"
    assert state.outcome is Outcome.RESOLVED
    applied = [c for c in parts.store.list_changes(handle.id) if c.result is ChangeResult.APPLIED]
    assert len(applied) == 1 and applied[0].approver == "alice"
    assert applied[0].rollback_action == "docker.stop"


async def test_deny_stops_and_escalates(ts_env: WorkflowEnvironment, settings_factory: Any) -> None:
    settings = lab_settings(settings_factory, critical=["docker:lab/web"])
    fake = FakeDocker(running=False)
    async with running(ts_env, settings, fake):
        handle = await start(ts_env, settings, exited_alert())
        pending = await wait_pending(handle)
        assert pending.pending_approval is not None
        await handle.signal(
            IncidentWorkflow.deny,
            signed(settings, handle.id, pending.pending_approval, "alice", approve=False),
        )
        state = await handle.result()
    assert fake.writes == []
    assert state.actions[0].result is ChangeResult.DENIED
    assert state.outcome is Outcome.ESCALATED


async def test_resolved_alert_while_waiting_closes_without_acting(
    ts_env: WorkflowEnvironment, settings_factory: Any
) -> None:
    settings = lab_settings(settings_factory, critical=["docker:lab/*"])
    fake = FakeDocker(running=False)
    alert = exited_alert()
    async with running(ts_env, settings, fake):
        handle = await start(ts_env, settings, alert)
        await wait_pending(handle)
        resolved = alert.model_copy(update={"status": AlertStatus.RESOLVED})
        await handle.signal(IncidentWorkflow.alert, resolved)
        state = await handle.result()
    assert fake.writes == []
    assert state.alert_resolved
    assert state.outcome is Outcome.ALERT_RESOLVED
    assert state.actions[0].result is ChangeResult.SKIPPED


async def test_forbidden_action_never_runs(
    ts_env: WorkflowEnvironment, settings_factory: Any
) -> None:
    settings = lab_settings(
        settings_factory, overrides=[{"action": "docker.start", "level": "FORBIDDEN"}]
    )
    fake = FakeDocker(running=False)
    async with running(ts_env, settings, fake) as parts:
        handle = await start(ts_env, settings, exited_alert())
        state = await handle.result()
    assert fake.writes == []
    assert state.actions[0].result is ChangeResult.FORBIDDEN
    assert state.actions[0].level is RiskLevel.FORBIDDEN
    assert [c.result for c in parts.store.list_changes(handle.id)] == [ChangeResult.FORBIDDEN]


async def test_non_approver_signal_is_rejected_and_recorded(
    ts_env: WorkflowEnvironment, settings_factory: Any
) -> None:
    settings = lab_settings(settings_factory, critical=["docker:lab/*"])
    fake = FakeDocker(running=False)
    async with running(ts_env, settings, fake) as parts:
        handle = await start(ts_env, settings, exited_alert())
        await wait_pending(handle)
        await handle.signal(IncidentWorkflow.approve, ApprovalSignal(approver="mallory"))
        state = await handle.result()
    assert fake.writes == []
    assert state.actions[0].approval is ApprovalVerdict.TIMEOUT
    records = parts.store.list_approvals(handle.id)
    refused = [r for r in records if not r["accepted"]]
    assert len(refused) == 1 and refused[0]["approver"] == "mallory"
    assert "not an approver" in refused[0]["reason"]


async def test_auto_level_action_runs_without_approval(
    ts_env: WorkflowEnvironment, settings_factory: Any
) -> None:
    settings = lab_settings(settings_factory)
    fake = FakeDocker(running=False)
    async with running(ts_env, settings, fake):
        handle = await start(ts_env, settings, exited_alert())
        state = await handle.result()
    assert len(fake.writes) == 1
    assert state.actions[0].level is RiskLevel.NONE
    assert state.actions[0].approval is ApprovalVerdict.NOT_REQUIRED
    assert state.outcome is Outcome.RESOLVED
