"""A NATS slow consumer in → diagnosed, on the Temporal dev server with the real worker and
intake: a subscriber stops reading while a publisher floods its subject, the server drops it, and
the incident names it (client name, reason, the container behind it) and hands it over."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest
from temporalio.testing import WorkflowEnvironment

from core.models import Outcome
from tests.integration.stack import running_stack
from tests.toolsets.alerts import evidence, incident
from tests.toolsets.nats.conftest import stalled_subscriber
from workers.lab.brokers import Nats
from workers.lab.dockerd import DockerEngine

pytestmark = pytest.mark.integration


async def test_slow_consumer_is_named_and_escalated(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, nats_server: Nats, tmp_path: Path
) -> None:
    stalled = stalled_subscriber(nats_server, "sensors", "ingest-worker")
    nc = await nats.connect(f"nats://127.0.0.1:{nats_server.port}", name="sensor-gateway")
    try:
        for _ in range(200):
            await nc.publish("sensors", b"x" * 64 * 1024)
        await nc.flush()
        await asyncio.sleep(0.5)
        target = {
            "name": "bus",
            "url": nats_server.url,
            "backends": {"ingest-worker": "docker:lab/ingest-worker"},
        }
        async with running_stack(dev_env, docker_engine, tmp_path, nats=[target]) as stack:
            state = await incident(stack, "NatsSlowConsumers", instance="nats-exporter:7777")
            assert str(state.triage.target) == "nats:bus"
            assert state.outcome is Outcome.ESCALATED and state.actions == []
            assert evidence(state, "server")["slow_consumers"] >= 1
            (slow,) = [
                c
                for c in evidence(state, "closed")["slow_consumers_closed"]
                if c["name"] == "ingest-worker"
            ]
            assert "slow consumer" in slow["reason"].lower()
            assert slow["backend"]["ref"] == "docker:lab/ingest-worker"
    finally:
        stalled.close()
        await nc.close()
