"""Alert in → fixed, on the real Temporal dev server and a real Docker engine."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from core.models import ApprovalVerdict, ChangeResult, Outcome, Phase
from tests.integration.stack import (
    CRASH_ONCE,
    alertmanager_payload,
    am_alert,
    run_container,
    running_stack,
    start_events,
    wait_exited,
)
from workers.docker_events import fingerprint
from workers.lab.dockerd import DockerEngine

pytestmark = pytest.mark.integration


async def test_exited_container_is_started_and_verified(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    name = f"web-{uuid.uuid4().hex[:6]}"
    async with running_stack(dev_env, docker_engine, tmp_path) as stack:
        docker = stack.docker()
        container = run_container(docker, name, CRASH_ONCE)
        assert wait_exited(container)["ExitCode"] == 3
        since = time.time()
        alert = am_alert("ContainerKilled", name)
        response = await stack.post(alertmanager_payload(alert))
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["results"][0]["workflow_id"] == f"incident-{alert['fingerprint']}"
        state = await stack.result(body["results"][0]["workflow_id"])
        container.reload()
        assert container.status == "running"
        assert start_events(docker, name, since) == 1
        assert state.outcome is Outcome.RESOLVED and state.phase is Phase.RESOLVED
        assert state.triage is not None and str(state.triage.target) == f"docker:lab/{name}"
        assert [(a.action.tool, a.result) for a in state.actions] == [
            ("docker.start", ChangeResult.APPLIED)
        ]
        assert state.verification is not None and state.verification.passed
        assert (
            state.verification.first_pass_at is not None
            and state.verification.verified_at is not None
        )
        changes = stack.store.list_changes(state.workflow_id)
        assert [(c.action, c.result, c.rollback_action) for c in changes] == [
            ("docker.start", ChangeResult.APPLIED, "docker.stop")
        ]
        assert changes[0].before["running"] is False and changes[0].after["running"] is True
        assert "start container" in changes[0].preview
        stored = stack.store.get_incident(state.workflow_id)
        assert stored is not None and stored.outcome is Outcome.RESOLVED


async def test_oom_killed_container_gets_more_memory(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    name = f"oom-{uuid.uuid4().hex[:6]}"
    async with running_stack(dev_env, docker_engine, tmp_path) as stack:
        docker = stack.docker()
        container = run_container(
            docker,
            name,
            "dd if=/dev/zero of=/dev/null bs=24M count=1 && exec sleep 100000",
            mem_limit="16m",
            memswap_limit="16m",
        )
        state_before = wait_exited(container)
        assert state_before["OOMKilled"] is True
        alert = am_alert("ContainerOOMKilled", name)
        response = await stack.post(alertmanager_payload(alert))
        assert response.status_code == 202, response.text
        state = await stack.result(f"incident-{alert['fingerprint']}")

        container.reload()
        assert container.status == "running"
        assert container.attrs["HostConfig"]["Memory"] == 32 * 1024 * 1024
        assert container.attrs["HostConfig"]["MemorySwap"] == 32 * 1024 * 1024
        assert [(a.action.tool, a.result) for a in state.actions] == [
            ("docker.update_resources", ChangeResult.APPLIED),
            ("docker.start", ChangeResult.APPLIED),
        ]
        assert "memory 16 MiB → 32 MiB" in state.actions[0].preview
        assert state.outcome is Outcome.RESOLVED


async def test_events_watcher_opens_incident_without_alertmanager(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    name = f"job-{uuid.uuid4().hex[:6]}"
    async with running_stack(dev_env, docker_engine, tmp_path, watch=True) as stack:
        await asyncio.sleep(0.5)  # the watcher subscribes
        docker = stack.docker()
        container = run_container(docker, name, CRASH_ONCE)
        wid = f"incident-{fingerprint('lab', name, 'ContainerKilled')}"
        state = await stack.result(wid)
        container.reload()
        assert container.status == "running"
        assert state.alert.source == "docker-events"
        assert state.alert.labels["exit_code"] == "3"
        assert state.outcome is Outcome.RESOLVED
        # Our own remediation's events (start) must not open another incident.
        await asyncio.sleep(1)
        rows = [wf async for wf in stack.client.list_workflows(f"WorkflowId = '{wid}'")]
        assert len(rows) == 1


async def test_identical_posts_and_mixed_batch_make_one_workflow_each(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    name = f"dup-{uuid.uuid4().hex[:6]}"
    async with running_stack(dev_env, docker_engine, tmp_path) as stack:
        docker = stack.docker()
        container = run_container(docker, name, CRASH_ONCE)
        wait_exited(container)
        since = time.time()
        alert = am_alert("ContainerKilled", name)
        other = am_alert("ContainerKilled", f"{name}-gone", status="resolved")
        payload = alertmanager_payload(alert)
        mixed = alertmanager_payload(alert, other)
        responses = await asyncio.gather(
            *(stack.post(payload) for _ in range(20)), stack.post(mixed)
        )
        assert all(r.status_code == 202 for r in responses), [r.text for r in responses]
        actions = [r.json()["results"][0]["action"] for r in responses]
        assert actions.count("accepted") == 1 and actions.count("duplicate") == 20, actions
        mixed_results = {r["fingerprint"]: r["action"] for r in responses[-1].json()["results"]}
        assert mixed_results[other["fingerprint"]] == "accepted"
        wid = f"incident-{alert['fingerprint']}"
        state = await stack.result(wid)
        assert state.alerts_received == 1  # 21 posts of one notification: delivered once
        resolved = [row for row in stack.store.outbox_rows(other["fingerprint"])]
        assert [(r["state"], r["action"]) for r in resolved] == [("delivered", "no-open-incident")]
        runs = [wf async for wf in stack.client.list_workflows(f"WorkflowId = '{wid}'")]
        assert len(runs) == 1
        assert start_events(docker, name, since) == 1
        applied = [c for c in stack.store.list_changes(wid) if c.result is ChangeResult.APPLIED]
        assert len(applied) == 1


async def test_critical_container_waits_for_cli_style_approval(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    from core.models import ApprovalDecision
    from workers.operations import OperationError

    name = f"postgres-{uuid.uuid4().hex[:6]}"
    async with running_stack(
        dev_env, docker_engine, tmp_path, approval={"critical": ["docker:*/postgres*"]}
    ) as stack:
        container, wid = await stack.crash_and_alert(name)
        pending = await stack.wait_state(wid, lambda s: s.pending_approval is not None)
        assert (
            pending.pending_approval is not None and pending.pending_approval.level.value == "HARD"
        )
        assert any("critical pattern" in r for r in pending.pending_approval.reasons)
        container.reload()
        assert container.status == "exited"  # nothing ran before the approval

        with pytest.raises(OperationError, match="not an approver"):
            await stack.decide(
                wid,
                ApprovalDecision(approve=True, approver="mallory", via="cli"),
            )
        record = await stack.decide(
            wid,
            ApprovalDecision(approve=True, approver="alice", via="cli"),
        )
        assert record.verdict is ApprovalVerdict.APPROVED
        with pytest.raises(OperationError, match="already decided"):
            await stack.decide(
                wid,
                ApprovalDecision(approve=False, approver="alice", via="cli"),
            )

        state = await stack.result(wid)
        container.reload()
        assert container.status == "running"
        assert state.actions[0].approver == "alice"
        refused = [r for r in stack.store.list_approvals(wid) if not r["accepted"]]
        assert {r["approver"] for r in refused} == {"mallory", "alice"}


UNHEALTHY_UNTIL_RESTART = (
    "if [ -f /tmp/booted ]; then touch /tmp/healthy; else touch /tmp/booted; fi; exec sleep 100000"
)


async def test_unhealthy_container_is_restarted_until_healthy(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    name = f"api-{uuid.uuid4().hex[:6]}"
    async with running_stack(dev_env, docker_engine, tmp_path, watch=True) as stack:
        await asyncio.sleep(0.5)
        docker = stack.docker()
        container = run_container(
            docker,
            name,
            UNHEALTHY_UNTIL_RESTART,
            init=True,  # tini forwards SIGTERM, so a restart is quick
            healthcheck={
                "test": ["CMD-SHELL", "test -f /tmp/healthy"],
                "interval": 300_000_000,
                "retries": 1,
            },
        )
        wid = f"incident-{fingerprint('lab', name, 'ContainerUnhealthy')}"
        state = await stack.result(wid)
        container.reload()
        assert container.attrs["State"]["Health"]["Status"] == "healthy"
        assert [(a.action.tool, a.result) for a in state.actions] == [
            ("docker.restart", ChangeResult.APPLIED)
        ]
        assert state.outcome is Outcome.RESOLVED


async def test_high_memory_usage_raises_the_limit_in_place(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    name = f"cache-{uuid.uuid4().hex[:6]}"
    async with running_stack(dev_env, docker_engine, tmp_path) as stack:
        docker = stack.docker()
        container = run_container(
            docker,
            name,
            "head -c 28000000 /dev/zero > /dev/shm/fill; exec sleep 100000",
            mem_limit="32m",
            memswap_limit="32m",
        )
        await asyncio.sleep(1.5)
        started_at = (container.reload(), container.attrs["State"]["StartedAt"])[1]
        alert = am_alert("ContainerHighMemoryUsage", name)
        await stack.post(alertmanager_payload(alert))
        state = await stack.result(f"incident-{alert['fingerprint']}")
        container.reload()
        assert container.attrs["HostConfig"]["Memory"] == 48 * 1024**2
        assert container.attrs["State"]["StartedAt"] == started_at  # in place, no restart
        assert state.evidence[1].data["memory_percent"] >= 80
        assert state.outcome is Outcome.RESOLVED, state.notes
        assert state.verification is not None and state.verification.passed


async def test_an_unreachable_engine_opens_its_own_incident_at_once(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    """It once sat in Verify for the whole 60 s verification timeout, having done nothing and told
    nobody. Now the engine gets one incident at once (a human hears of it), and the container's
    incident waits for that one without acting."""
    gone = {"name": "gone", "url": f"unix://{tmp_path}/no-docker.sock", "timeout": 2}
    async with running_stack(dev_env, docker_engine, tmp_path, docker=[gone]) as stack:
        alert = am_alert("ContainerKilled", "web", engine="gone")
        started = time.monotonic()
        assert (await stack.post(alertmanager_payload(alert))).status_code == 202
        wid = f"incident-{alert['fingerprint']}"
        child = await stack.wait_state(wid, lambda s: s.joined_to != "", 30)
        engine = await stack.wait_state(
            child.joined_to, lambda s: s.phase is Phase.VERIFY and len(s.joined) == 1, 30
        )
        took = time.monotonic() - started
        assert engine.alert.name == "TargetUnreachable"
        assert engine.triage is not None and str(engine.triage.target) == "docker:gone"
        assert engine.notifications_sent >= 1  # "opened": a human hears of it at once
        assert any("docker target gone unreachable" in n for n in child.notes), child.notes
        assert child.actions == [] and child.verification is None and child.plan is None
        assert child.notifications_sent == 0
        assert took < 30, f"took {took:.1f}s"
        for handle in (stack.handle(wid), stack.handle(child.joined_to)):
            await handle.terminate("test over")
