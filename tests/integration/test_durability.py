"""kill -9 the worker mid-incident: the incident resumes and remediates exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from core.config import load_settings
from core.models import ApprovalDecision, ChangeResult, Outcome
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
from workers.lab.processes import free_port

pytestmark = pytest.mark.integration
CLI = str(Path(sys.prefix) / "bin" / "homelab-agents")


def spawn_worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [CLI, "--config", str(config), "worker"], stdout=out, stderr=subprocess.STDOUT
        )


def kill9(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


async def wait_activity_completed(
    stack: Any, workflow_id: str, activity: str, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        scheduled: set[int] = set()
        async for event in stack.handle(workflow_id).fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                if event.activity_task_scheduled_event_attributes.activity_type.name == activity:
                    scheduled.add(event.event_id)
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                if event.activity_task_completed_event_attributes.scheduled_event_id in scheduled:
                    return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{activity} never completed in {workflow_id}")


async def test_worker_killed_while_waiting_and_between_activities(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    name = f"postgres-{uuid.uuid4().hex[:6]}"
    config = tmp_path / "homelab.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "temporal": {
                    "address": target_host(dev_env),
                    "task_queue": f"tq-{uuid.uuid4().hex[:8]}",
                    "state_dir": str(tmp_path / "state"),
                },
                "store": {"url": f"sqlite:///{tmp_path / 'store.db'}"},
                "intake": {"port": free_port()},
                "docker": [{"name": "lab", "url": docker_engine.url}],
                "approval": {"approvers": ["alice"], "critical": ["docker:*/postgres*"]},
                "worker": {"metrics_port": 0},
            }
        )
    )
    settings = load_settings(config)
    log = tmp_path / "worker.log"
    worker = spawn_worker(config, log)
    try:
        async with running_stack(
            dev_env, docker_engine, tmp_path, worker=False, settings=settings
        ) as stack:
            docker = stack.docker()
            container = run_container(docker, name, CRASH_ONCE)
            wait_exited(container)
            since = time.time()
            alert = am_alert("ContainerKilled", name)
            assert (await stack.post(alertmanager_payload(alert))).status_code == 202
            wid = f"incident-{alert['fingerprint']}"
            await stack.wait_state(wid, lambda s: s.pending_approval is not None, timeout=60)

            kill9(worker)  # while the incident waits for a human
            worker = spawn_worker(config, log)
            record = await asyncio.wait_for(
                stack.decide(
                    wid,
                    ApprovalDecision(approve=True, approver="alice", via="cli"),
                ),
                timeout=60,
            )
            assert record.approver == "alice"

            await wait_activity_completed(stack, wid, "docker.start")
            kill9(worker)  # between the remediation and the next activity
            worker = spawn_worker(config, log)

            state = await stack.result(wid, timeout=120)
            container.reload()
            assert container.status == "running"
            assert start_events(docker, name, since) == 1, (
                "the container was started more than once"
            )
            assert state.outcome is Outcome.RESOLVED
            applied = [c for c in stack.store.list_changes(wid) if c.result is ChangeResult.APPLIED]
            assert [c.action for c in applied] == ["docker.start"]
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                kill9(worker)
