"""RabbitMQ alerts in → diagnosed or fixed with a human, on the Temporal dev server with the real
worker and intake against a real node: a queue with messages and no consumer names the container
configured to consume it and escalates; a backlog with no consumer asks for approval to purge
(HARD, irreversible), and once approved the queue is really empty and verified."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from core.models import ApprovalDecision, ChangeResult, Outcome, RiskLevel
from tests.integration.stack import running_stack
from tests.toolsets.alerts import evidence, incident, post
from tests.toolsets.rabbitmq.conftest import Workload, rabbit_target, wait_depth
from tests.toolsets.runner import Tools
from workers.lab.brokers import RabbitMQ
from workers.lab.dockerd import DockerEngine

pytestmark = pytest.mark.integration

LABELS = {"instance": "rabbitmq:15692", "vhost": "/"}


async def test_no_consumer_names_the_worker_container(
    dev_env: WorkflowEnvironment,
    docker_engine: DockerEngine,
    rabbitmq: RabbitMQ,
    workload: Workload,
    tmp_path: Path,
) -> None:
    workload.declare("jobs")
    workload.publish("jobs", 5)
    try:
        async with running_stack(
            dev_env, docker_engine, tmp_path, rabbitmq=[rabbit_target(rabbitmq)]
        ) as stack:
            state = await incident(stack, "RabbitmqNoConsumer", queue="jobs", **LABELS)
            assert str(state.triage.target) == "rabbitmq:mq/jobs"
            assert state.outcome is Outcome.ESCALATED and state.actions == []
            queue = evidence(state, "queue")
            assert queue["consumers"] == 0
            assert queue["consumer_backend"]["ref"] == "docker:lab/worker"
        assert workload.exact_depth("jobs") == 5
    finally:
        workload.delete("jobs")


async def test_backlog_purged_after_approval(
    dev_env: WorkflowEnvironment,
    docker_engine: DockerEngine,
    rabbitmq: RabbitMQ,
    workload: Workload,
    tmp_path: Path,
) -> None:
    workload.declare("exports")
    workload.publish("exports", 1200)
    try:
        async with running_stack(
            dev_env, docker_engine, tmp_path, rabbitmq=[rabbit_target(rabbitmq)]
        ) as stack:
            # the alert fires after its `for:`, long after the statistics caught up
            tools = Tools(stack.settings, "rabbitmq:mq")
            await wait_depth(tools, "exports", 1200, target="rabbitmq:mq/exports")
            await tools.aclose()
            wid = await post(stack, "RabbitmqTooManyMessagesInQueue", queue="exports", **LABELS)
            pending = await stack.wait_state(wid, lambda s: s.pending_approval is not None, 60)
            request = pending.pending_approval
            assert request is not None and request.level is RiskLevel.HARD
            assert request.action.tool == "rabbitmq.purge_queue"
            assert "drop every ready message of queue rabbitmq:mq/exports" in request.preview
            assert "1200 ready per the management statistics" in request.preview
            assert request.rollback_plan == "irreversible: no rollback possible"
            assert workload.exact_depth("exports") == 1200  # nothing before the approval

            await stack.decide(
                wid,
                ApprovalDecision(approve=True, approver="alice", via="cli"),
            )
            state = await stack.result(wid)
            assert state.outcome is Outcome.RESOLVED, state.notes
            (done,) = state.actions
            assert (done.result, done.approver) == (ChangeResult.APPLIED, "alice")
            assert state.verification is not None and state.verification.passed
        assert workload.exact_depth("exports") == 0
    finally:
        workload.delete("exports")
