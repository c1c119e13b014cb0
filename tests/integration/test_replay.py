"""Histories recorded on the real dev server replay cleanly against the current workflow code."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from core.models import ApprovalDecision, Outcome
from tests.integration.stack import (
    CRASH_ONCE,
    alertmanager_payload,
    am_alert,
    run_container,
    running_stack,
    wait_exited,
)
from workers.lab.dockerd import DockerEngine
from workers.worker import WORKFLOWS

pytestmark = pytest.mark.integration


async def test_incident_histories_replay(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    async with running_stack(
        dev_env, docker_engine, tmp_path, approval={"critical": ["docker:*/db-*"]}
    ) as stack:
        docker = stack.docker()
        ids = []
        for name in (f"web-{uuid.uuid4().hex[:6]}", f"db-{uuid.uuid4().hex[:6]}"):
            wait_exited(run_container(docker, name, CRASH_ONCE))
            alert = am_alert("ContainerKilled", name)
            await stack.post(alertmanager_payload(alert))
            ids.append(f"incident-{alert['fingerprint']}")
        await stack.wait_state(ids[1], lambda s: s.pending_approval is not None)
        await stack.decide(
            ids[1],
            ApprovalDecision(approve=True, approver="alice", via="cli"),
        )
        for wid in ids:
            assert (await stack.result(wid)).outcome is Outcome.RESOLVED

        replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
        for wid in ids:
            history = await stack.handle(wid).fetch_history()
            # Through JSON, as `temporal workflow show --output json` exports it for a bug report.
            again = WorkflowHistory.from_json(wid, history.to_json())
            result = await replayer.replay_workflow(again, raise_on_replay_failure=False)
            assert result.replay_failure is None, f"{wid}: {result.replay_failure}"
