"""Safety and reversibility on the real dev server and dockerd: observe mode, saga rollback,
kill switch, per-target serialization, reruns that ask again, manual rollback, the change log API."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from core.models import ApprovalDecision, ChangeResult, Outcome, Phase
from tests.approvals import signal as signed
from tests.integration.stack import (
    CRASH_ONCE,
    alertmanager_payload,
    am_alert,
    run_container,
    running_stack,
    start_events,
    target_host,
    wait_exited,
)
from workers.lab.dockerd import DockerEngine
from workers.operations import set_paused, start_rollback
from workflows.incident import IncidentWorkflow

pytestmark = pytest.mark.integration
OOM_FOREVER = "dd if=/dev/zero of=/dev/null bs=48M count=1 && exec sleep 100000"  # needs > 32 MiB
OOM_ONCE = "dd if=/dev/zero of=/dev/null bs=24M count=1 && exec sleep 100000"  # fits in 32 MiB


async def test_observe_mode_changes_nothing_and_previews_exactly(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    name = f"obs-{uuid.uuid4().hex[:6]}"
    async with running_stack(
        dev_env, docker_engine, tmp_path, approval={"mode": "observe"}
    ) as stack:
        docker = stack.docker()
        container = run_container(docker, name, OOM_ONCE, mem_limit="16m", memswap_limit="16m")
        assert wait_exited(container)["OOMKilled"]
        container.reload()
        before = container.attrs
        alert = am_alert("ContainerOOMKilled", name)
        await stack.post(alertmanager_payload(alert))
        state = await stack.result(f"incident-{alert['fingerprint']}")
        container.reload()
        after = container.attrs
        assert after["State"] == before["State"] and after["HostConfig"] == before["HostConfig"]
        assert state.outcome is Outcome.DRY_RUN
        assert [(a.action.tool, a.result, a.dry_run) for a in state.actions] == [
            ("docker.update_resources", ChangeResult.DRY_RUN, True),
            ("docker.start", ChangeResult.DRY_RUN, True),
        ]
        assert (
            state.actions[0].preview
            == f"memory 16 MiB → 32 MiB, memory-swap 16 MiB → 32 MiB on container {name}@lab"
        )
        records = stack.store.list_changes(state.workflow_id)
        assert (
            all(r.dry_run and r.result is ChangeResult.DRY_RUN for r in records)
            and len(records) == 2
        )


async def test_failed_verification_restores_limits_and_escalates(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    name = f"oomloop-{uuid.uuid4().hex[:6]}"
    async with running_stack(dev_env, docker_engine, tmp_path) as stack:
        docker = stack.docker()
        container = run_container(docker, name, OOM_FOREVER, mem_limit="16m", memswap_limit="16m")
        assert wait_exited(container)["OOMKilled"]
        alert = am_alert("ContainerOOMKilled", name)
        await stack.post(alertmanager_payload(alert))
        state = await stack.result(f"incident-{alert['fingerprint']}")

        container.reload()
        assert container.attrs["HostConfig"]["Memory"] == 16 * 1024**2  # back to the before-value
        assert container.attrs["HostConfig"]["MemorySwap"] == 16 * 1024**2
        assert state.verification is not None and not state.verification.passed
        assert "gave up early" in state.verification.detail  # exited again: no point waiting 60 s
        assert state.outcome is Outcome.ROLLED_BACK and state.phase is Phase.ESCALATED
        records = stack.store.list_changes(state.workflow_id)
        forward = [r for r in records if r.step == "remediate"]
        undo = [r for r in records if r.rollback_of]
        assert [r.action for r in forward] == ["docker.update_resources", "docker.start"]
        assert [(r.action, r.result) for r in undo] == [
            # exited again before the undo: a stop would change nothing, so it is not run
            ("docker.stop", ChangeResult.SKIPPED),
            ("docker.update_resources", ChangeResult.APPLIED),
        ]
        by_id = {r.change_id: r for r in records}
        resize = forward[0]
        assert by_id[resize.change_id].rolled_back_by == undo[1].change_id
        assert undo[1].params == {"memory": 16 * 1024**2, "memory_swap": 16 * 1024**2}


async def test_kill_switch_holds_an_approved_write_until_resume(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    name = f"postgres-{uuid.uuid4().hex[:6]}"
    async with running_stack(
        dev_env, docker_engine, tmp_path, approval={"critical": ["docker:*/postgres*"]}
    ) as stack:
        container, wid = await stack.crash_and_alert(name)
        await stack.wait_state(wid, lambda s: s.pending_approval is not None)
        told = await set_paused(stack.client, stack.store, True, "cli:alice", "maintenance window")
        assert told >= 1
        await stack.decide(
            wid,
            ApprovalDecision(approve=True, approver="alice", via="cli"),
        )
        paused = await stack.wait_state(wid, lambda s: s.phase is Phase.PAUSED)
        assert paused.paused
        await asyncio.sleep(2)
        container.reload()
        assert container.status == "exited"  # approved, but no write while paused
        await set_paused(stack.client, stack.store, False, "cli:alice")
        state = await stack.result(wid)
        container.reload()
        assert container.status == "running" and state.outcome is Outcome.RESOLVED


async def test_concurrent_incidents_on_one_container_never_overlap(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    name = f"shared-{uuid.uuid4().hex[:6]}"
    async with running_stack(dev_env, docker_engine, tmp_path) as stack:
        docker = stack.docker()
        container = run_container(docker, name, CRASH_ONCE)
        wait_exited(container)
        since = time.time()
        first, second = am_alert("ContainerKilled", name), am_alert("ContainerExited", name)
        await asyncio.gather(
            stack.post(alertmanager_payload(first)), stack.post(alertmanager_payload(second))
        )
        states = await asyncio.gather(
            stack.result(f"incident-{first['fingerprint']}"),
            stack.result(f"incident-{second['fingerprint']}"),
        )
        container.reload()
        assert container.status == "running"
        assert start_events(docker, name, since) == 1  # one start, by one incident
        # Both alerts are one problem (this container exited): the second joins the first.
        assert sorted(s.outcome.value for s in states if s.outcome) == ["joined", "resolved"]
        results = sorted(a.result.value for s in states for a in s.actions)
        assert results == ["applied"]
        records = [
            r
            for s in states
            for r in stack.store.list_changes(s.workflow_id)
            if r.result is ChangeResult.APPLIED
        ]
        windows = sorted(
            (r.started_at, r.finished_at) for r in records if r.started_at and r.finished_at
        )
        for (_, end), (start, _) in zip(windows, windows[1:], strict=False):
            assert start >= end, "two incidents wrote to one target at the same time"


async def test_reset_rerun_asks_for_approval_again(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    name = f"postgres-{uuid.uuid4().hex[:6]}"
    async with running_stack(
        dev_env, docker_engine, tmp_path, approval={"critical": ["docker:*/postgres*"]}
    ) as stack:
        container, wid = await stack.crash_and_alert(name)
        first = await stack.wait_state(wid, lambda s: s.pending_approval is not None)
        assert first.pending_approval is not None
        old_run_approval = signed(stack.settings, wid, first.pending_approval, "alice")
        await stack.handle(wid).signal(IncidentWorkflow.approve, old_run_approval)
        assert (await stack.result(wid)).outcome is Outcome.RESOLVED

        container.kill()  # the fault comes back; rerun the incident
        wait_exited(container)
        temporal = str(Path(sys.prefix) / "bin" / "temporal")
        subprocess.run(
            [
                temporal,
                "workflow",
                "reset",
                "--address",
                target_host(dev_env),
                "-w",
                wid,
                "--type",
                "FirstWorkflowTask",
                "--reason",
                "rerun",
                "--reapply-exclude",
                "Signal",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        rerun = await stack.wait_state(wid, lambda s: s.pending_approval is not None, timeout=60)
        assert rerun.approvals == []  # the old approval was not reused
        assert rerun.pending_approval is not None
        # The first run's signed approval, sent again: bound to that run, it decides nothing here.
        await stack.handle(wid).signal(IncidentWorkflow.approve, old_run_approval)
        refused = await stack.wait_state(wid, lambda s: bool(s.approvals), timeout=30)
        assert not refused.approvals[0].accepted and "run" in refused.approvals[0].reason
        container.reload()
        assert container.status == "exited"
        await stack.handle(wid).signal(
            IncidentWorkflow.approve, signed(stack.settings, wid, rerun.pending_approval, "alice")
        )
        assert (await stack.result(wid)).outcome is Outcome.RESOLVED
        container.reload()
        assert container.status == "running"


async def test_manual_rollback_is_gated_recorded_and_once_only(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    from workers.operations import OperationError

    name = f"oom-{uuid.uuid4().hex[:6]}"
    async with running_stack(dev_env, docker_engine, tmp_path) as stack:
        docker = stack.docker()
        container = run_container(docker, name, OOM_ONCE, mem_limit="16m", memswap_limit="16m")
        wait_exited(container)
        alert = am_alert("ContainerOOMKilled", name)
        await stack.post(alertmanager_payload(alert))
        state = await stack.result(f"incident-{alert['fingerprint']}")
        resize = next(
            r
            for r in stack.store.list_changes(state.workflow_id)
            if r.action == "docker.update_resources"
        )

        rollback_wid = await start_rollback(
            stack.client, stack.settings, stack.store, resize.change_id
        )
        rolled = await stack.result(rollback_wid)
        assert rolled.outcome is Outcome.RESOLVED, rolled.notes
        container.reload()
        assert container.attrs["HostConfig"]["Memory"] == 16 * 1024**2
        record = stack.store.get_change(resize.change_id)
        assert record is not None and record.rolled_back_by
        undo = stack.store.get_change(record.rolled_back_by)
        assert (
            undo is not None
            and undo.rollback_of == resize.change_id
            and undo.workflow_id == rollback_wid
        )
        assert undo.level.value == "SOFT"  # the rollback went through the policy like any write
        with pytest.raises(OperationError, match="already rolled back"):
            await start_rollback(stack.client, stack.settings, stack.store, resize.change_id)

        async with httpx.AsyncClient(trust_env=False) as http:
            listed = (
                await http.get(
                    f"{stack.intake_url}/changes", params={"incident": state.workflow_id}
                )
            ).json()
        assert {c["change_id"] for c in listed} == {
            r.change_id for r in stack.store.list_changes(state.workflow_id)
        }
        assert (
            next(c for c in listed if c["change_id"] == resize.change_id)["rolled_back_by"]
            == undo.change_id
        )


async def test_a_second_name_for_a_container_is_the_same_target(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    """An alert naming the container by an id prefix once escaped `docker:*/db-*` (critical):
    triage resolves it to the container's name, so the policy, the lock and the limit see one
    target."""
    name = f"db-{uuid.uuid4().hex[:6]}"
    async with running_stack(
        dev_env, docker_engine, tmp_path, approval={"critical": ["docker:*/db-*"]}
    ) as stack:
        container = run_container(stack.docker(), name, CRASH_ONCE)
        wait_exited(container)
        alert = am_alert("ContainerKilled", container.id[:7])
        assert (await stack.post(alertmanager_payload(alert))).status_code == 202
        wid = f"incident-{alert['fingerprint']}"
        state = await stack.wait_state(wid, lambda s: s.pending_approval is not None)
        assert state.triage is not None and str(state.triage.target) == f"docker:lab/{name}"
        assert any("its one name" in note for note in state.notes)
        assert state.pending_approval is not None
        assert state.pending_approval.level.value == "HARD"  # the critical pattern applied
        await stack.decide(wid, ApprovalDecision(approve=False, approver="alice"))
        final = await stack.result(wid)
    assert final.actions[0].result is ChangeResult.DENIED
    (change,) = stack.store.list_changes(wid)
    assert change.target == f"docker:lab/{name}"
