"""An incident mutes its own alert in the real Alertmanager while a human is asked, and the
silence is expired when the incident closes: after an approval, and after a kill -9 of the worker
mid-wait followed by a denial (amtool is the independent witness)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.testing import WorkflowEnvironment

from core.config import load_settings
from core.models import ApprovalDecision, ChangeResult, Outcome
from tests.integration.stack import (
    CRASH_ONCE,
    alertmanager_payload,
    am_alert,
    run_container,
    running_stack,
    target_host,
    wait_exited,
)
from tests.integration.test_durability import kill9, spawn_worker
from tests.toolsets.alertmanager.conftest import amtool
from workers.lab.dockerd import DockerEngine
from workers.lab.monitoring import Alertmanager
from workers.lab.processes import free_port

pytestmark = pytest.mark.integration


def ours(am: Alertmanager, labels: dict[str, str]) -> list[dict[str, Any]]:
    """The agents' silences on exactly this alert's labels (any state), as amtool lists them."""
    rows = amtool(am, "silence", "query", "--expired", f"alertname={labels['alertname']}") or []
    rows += amtool(am, "silence", "query", f"alertname={labels['alertname']}") or []
    seen: dict[str, dict[str, Any]] = {}
    for row in rows:
        got = {m["name"]: m["value"] for m in row["matchers"]}
        if row["createdBy"] == "homelab-agents" and got == labels:
            seen[row["id"]] = row
    return list(seen.values())


async def test_the_alert_is_silenced_while_approval_waits_and_expired_at_close(
    dev_env: WorkflowEnvironment,
    docker_engine: DockerEngine,
    alertmanager: Alertmanager,
    tmp_path: Path,
) -> None:
    name = f"quiet-{uuid.uuid4().hex[:6]}"
    async with running_stack(
        dev_env,
        docker_engine,
        tmp_path,
        alertmanager=[{"name": "am", "url": alertmanager.url}],
        approval={"approvers": ["alice"], "critical": [f"docker:*/{name}"]},
    ) as stack:
        container = run_container(stack.docker(), name, CRASH_ONCE)
        wait_exited(container)
        alert = am_alert("ContainerKilled", name)
        await stack.post(alertmanager_payload(alert))
        wid = f"incident-{alert['fingerprint']}"
        await stack.wait_state(wid, lambda s: s.pending_approval is not None, 60)

        (live,) = ours(alertmanager, alert["labels"])
        assert live["status"]["state"] == "active"
        assert wid in live["comment"]  # tagged with the incident
        await stack.decide(wid, ApprovalDecision(approve=True, approver="alice", via="cli"))
        state = await stack.result(wid)

        assert state.outcome is Outcome.RESOLVED
        (ended,) = ours(alertmanager, alert["labels"])
        assert ended["id"] == live["id"] and ended["status"]["state"] == "expired"
        silences = [c for c in stack.store.list_changes(wid) if c.step == "silence"]
        assert [(c.action, c.result) for c in silences] == [
            ("alertmanager.silence", ChangeResult.APPLIED),
            ("alertmanager.expire_silence", ChangeResult.APPLIED),
        ]
        assert silences[1].rollback_of == silences[0].change_id
        assert [a.action.tool for a in state.actions] == ["docker.start"]  # not a remediation


async def test_a_worker_killed_mid_wait_still_expires_the_silence_at_close(
    dev_env: WorkflowEnvironment,
    docker_engine: DockerEngine,
    alertmanager: Alertmanager,
    tmp_path: Path,
) -> None:
    name = f"quiet-{uuid.uuid4().hex[:6]}"
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
                "alertmanager": [{"name": "am", "url": alertmanager.url}],
                "approval": {"approvers": ["alice"], "critical": [f"docker:*/{name}"]},
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
            container = run_container(stack.docker(), name, CRASH_ONCE)
            wait_exited(container)
            alert = am_alert("ContainerKilled", name)
            await stack.post(alertmanager_payload(alert))
            wid = f"incident-{alert['fingerprint']}"
            await stack.wait_state(wid, lambda s: s.pending_approval is not None, 60)
            (live,) = ours(alertmanager, alert["labels"])

            kill9(worker)  # while the incident waits for a human, its silence live
            worker = spawn_worker(config, log)
            await asyncio.wait_for(
                stack.decide(wid, ApprovalDecision(approve=False, approver="alice", via="cli")),
                timeout=60,
            )
            state = await stack.result(wid, timeout=90)

            assert state.outcome is Outcome.ESCALATED
            (ended,) = ours(alertmanager, alert["labels"])
            assert ended["id"] == live["id"] and ended["status"]["state"] == "expired"
            container.reload()
            assert container.status == "exited"  # denied: nothing ran
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                kill9(worker)
