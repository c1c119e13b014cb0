"""One incident per problem, end to end on the dev server and the private dockerd: alerts that
triage to the same canonical target and incident type join the incident that owns the problem
instead of opening their own, and a joined alert's resolved notification closes nothing early."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from temporalio.testing import WorkflowEnvironment

from core.models import AlertStatus, ApprovalDecision, ChangeResult, Outcome, Phase
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


def joined_total(incident_type: str) -> float:
    sample = REGISTRY.get_sample_value(
        "homelab_alerts_joined_total", {"incident_type": incident_type}
    )
    return sample or 0.0


async def test_watcher_and_cadvisor_alerts_of_one_death_make_one_incident_and_one_write(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    name = f"twice-{uuid.uuid4().hex[:6]}"
    async with running_stack(
        dev_env,
        docker_engine,
        tmp_path,
        watch=True,
        # held for approval, so the second alert surely arrives while the first incident is open
        approval={"overrides": [{"action": "docker.start", "level": "HARD"}]},
    ) as stack:
        await asyncio.sleep(0.5)  # the watcher subscribes
        before = joined_total("container_exited")
        since = time.time()
        container = run_container(stack.docker(), name, CRASH_ONCE)
        owner_id = f"incident-{fingerprint('lab', name, 'ContainerKilled')}"
        await stack.wait_state(owner_id, lambda s: s.pending_approval is not None, 60)

        # The cAdvisor rule's alert for the same death: another fingerprint, the same problem.
        cadvisor = am_alert("ContainerKilled", name, instance="cadvisor:8080")
        assert (await stack.post(alertmanager_payload(cadvisor))).status_code == 202
        member = await stack.result(f"incident-{cadvisor['fingerprint']}")
        assert member.outcome is Outcome.JOINED and member.phase is Phase.CLOSED
        assert member.joined_to == owner_id
        assert member.actions == [] and member.notifications_sent == 0
        assert joined_total("container_exited") == before + 1

        pending = await stack.wait_state(owner_id, lambda s: len(s.joined) == 1)
        (joined,) = pending.joined
        assert joined.fingerprint == cadvisor["fingerprint"]
        assert joined.status is AlertStatus.FIRING
        assert joined.labels["instance"] == "cadvisor:8080"
        assert any(e.key == f"joined.{cadvisor['fingerprint']}" for e in pending.evidence)
        # one approval asked, for the one write
        assert pending.pending_approval is not None
        await stack.decide(owner_id, ApprovalDecision(approve=True, approver="alice", via="cli"))
        owner = await stack.result(owner_id)

        assert owner.outcome is Outcome.RESOLVED, owner.notes
        assert [(a.action.tool, a.result) for a in owner.actions] == [
            ("docker.start", ChangeResult.APPLIED)
        ]
        assert start_events(stack.docker(), name, since) == 2  # its first start, and ours once
        changes = stack.store.list_changes(target=f"docker:lab/{name}")
        assert [c.action for c in changes] == ["docker.start"]
        container.reload()
        assert container.status == "running"


async def test_two_mount_point_alerts_make_one_incident_and_only_both_resolved_close_it(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    """One filesystem reported under two mount points; the docker disk runbook's problem is the
    engine's disk, so the second alert joins. A joined alert resolving alone ends nothing."""
    name = f"chatty-{uuid.uuid4().hex[:6]}"
    async with running_stack(
        dev_env,
        docker_engine,
        tmp_path,
        approval={"overrides": [{"action": "docker.clear_logs", "level": "HARD"}]},
    ) as stack:
        chatty = run_container(
            stack.docker(), name, "head -c 60000000 /dev/zero | tr '\\0' x | fold -w 4000"
        )  # a 60 MB log: the runbook's truncation applies
        wait_exited(chatty, timeout=120)
        # two mount points of the filesystem the engine keeps its data on
        root = am_alert("HostOutOfDiskSpace", name, mountpoint=str(docker_engine.root.parent))
        data = am_alert("HostOutOfDiskSpace", name, mountpoint=str(docker_engine.root))
        for alert in (root, data):
            alert["labels"].pop("name")
        owner_id = f"incident-{root['fingerprint']}"
        await stack.post(alertmanager_payload(root))
        owner = await stack.wait_state(owner_id, lambda s: s.pending_approval is not None, 90)
        assert owner.pending_approval is not None
        assert owner.pending_approval.action.tool == "docker.clear_logs"

        await stack.post(alertmanager_payload(data))
        member = await stack.result(f"incident-{data['fingerprint']}")
        assert member.outcome is Outcome.JOINED and member.joined_to == owner_id
        await stack.wait_state(
            owner_id, lambda s: [j.fingerprint for j in s.joined] == [data["fingerprint"]]
        )

        # The joined alert resolves: its member incident is closed, the owner hears it, and it
        # stays open (the root mount still fires).
        data["status"] = "resolved"
        await stack.post(alertmanager_payload(data))
        state = await stack.wait_state(
            owner_id, lambda s: s.joined[0].status is AlertStatus.RESOLVED
        )
        assert not state.alert_resolved and state.outcome is None
        assert state.pending_approval is not None

        root["status"] = "resolved"
        await stack.post(alertmanager_payload(root))
        done = await stack.result(owner_id)
        assert done.outcome is Outcome.ALERT_RESOLVED
        assert done.actions == [] or all(a.result is not ChangeResult.APPLIED for a in done.actions)
        chatty.reload()
        assert chatty.attrs["LogPath"]  # untouched: nothing was truncated

        # The problem is released: the next alert of it opens a new incident of its own.
        again = am_alert("HostOutOfDiskSpace", "x", mountpoint=str(docker_engine.root))
        again["labels"].pop("name")
        await stack.post(alertmanager_payload(again))
        fresh = await stack.wait_state(
            f"incident-{again['fingerprint']}", lambda s: s.phase is not Phase.TRIAGE, 60
        )
        assert fresh.joined_to == ""
