"""Every RabbitMQ tool on a real node through the management API, as a `monitoring` user:
queues with depth and no consumer, the consuming container named, a memory alarm raised for
real, purge_queue (HARD, irreversible) emptying the queue, and typed failures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from core.models import Reversibility, RiskLevel, ToolErrorKind
from tests.conftest import make_settings
from tests.toolsets.rabbitmq.conftest import Workload, rabbit_target, wait_depth
from tests.toolsets.runner import Tools
from workers.lab.brokers import AGENT_USER, RabbitMQ
from workers.lab.processes import free_port

pytestmark = pytest.mark.integration


async def test_queue_without_consumer_then_purged(tools: Tools, workload: Workload) -> None:
    workload.declare("jobs")
    workload.publish("jobs", 25)
    try:
        q = await wait_depth(tools, "jobs", 25)
        assert q["consumers"] == 0 and q["messages_unacknowledged"] == 0
        assert q["consumer_backend"]["ref"] == "docker:lab/worker"
        listing = await tools.ok("rabbitmq.queues")
        assert "jobs" in listing["without_consumers"] and listing["deepest"]["name"] == "jobs"

        prepared, result = await tools.apply("rabbitmq.purge_queue", target="rabbitmq:mq/jobs")
        assert prepared.default_level is RiskLevel.HARD
        assert prepared.reversibility is Reversibility.IRREVERSIBLE
        assert prepared.compensation is None and not prepared.noop
        assert prepared.preview.startswith("DELETE /api/queues/%2F/jobs/contents: drop every ready")
        assert "25 ready per the management statistics" in prepared.preview
        assert result.ok, result.error
        assert workload.exact_depth("jobs") == 0
        await wait_depth(tools, "jobs", 0)
        again = await tools.prepare("rabbitmq.purge_queue", target="rabbitmq:mq/jobs")
        assert again.noop and again.preview.startswith("no-op")
    finally:
        workload.delete("jobs")


async def test_nodes_and_a_real_memory_alarm(tools: Tools, rabbitmq: RabbitMQ) -> None:
    calm = await tools.ok("rabbitmq.nodes")
    (node,) = calm["nodes"]
    assert node["running"] and node["mem_limit"] > 0 and calm["alarm_count"] == 0
    rabbitmq.ctl("set_vm_memory_high_watermark", "absolute", "10000000")  # 10 MB: over it
    try:
        for _ in range(40):
            data = await tools.ok("rabbitmq.nodes")
            if data["alarm_count"]:
                break
            await asyncio.sleep(0.5)
        assert data["alarms"] == [f"{node['name']}: memory"]
        assert data["nodes"][0]["mem_alarm"] and data["max_mem_percent"] > 100
    finally:
        rabbitmq.ctl("set_vm_memory_high_watermark", "0.4")
    for _ in range(40):
        if not (await tools.ok("rabbitmq.nodes"))["alarm_count"]:
            break
        await asyncio.sleep(0.5)


async def test_typed_failures_and_least_privilege(
    rabbitmq: RabbitMQ, tmp_path: Path, workload: Workload
) -> None:
    settings = make_settings(
        tmp_path,
        rabbitmq=[
            rabbit_target(rabbitmq),
            rabbit_target(rabbitmq, "wrong", password="nope"),
            {
                "name": "down",
                "url": f"http://127.0.0.1:{free_port()}",
                "password": "x",
                "timeout": 2,
            },
        ],
    )
    tools = Tools(settings, "rabbitmq:mq")
    try:
        bad = await tools.run("rabbitmq.queues", target="rabbitmq:wrong")
        assert not bad.ok and bad.error.kind is ToolErrorKind.UNAUTHORIZED
        assert "nope" not in bad.error.message
        down = await tools.run("rabbitmq.nodes", target="rabbitmq:down")
        assert not down.ok and down.error.kind is ToolErrorKind.UNREACHABLE
        missing = await tools.run("rabbitmq.queue", target="rabbitmq:mq/nosuch")
        assert not missing.ok and missing.error.kind is ToolErrorKind.NOT_FOUND
        noqueue = await tools.run("rabbitmq.queue")
        assert not noqueue.ok and noqueue.error.kind is ToolErrorKind.INVALID
    finally:
        await tools.aclose()
    # the agents' user may read and purge, but not publish, declare or delete
    workload.declare("guarded")
    try:
        async with httpx.AsyncClient(
            base_url=rabbitmq.url + "/api", auth=(AGENT_USER, rabbitmq.password)
        ) as agent:
            publish = await agent.post(
                "/exchanges/%2F/amq.default/publish",
                json={
                    "properties": {},
                    "routing_key": "guarded",
                    "payload": "x",
                    "payload_encoding": "string",
                },
            )
            # 400 "access_refused" from the broker (no write permission on the exchange)
            assert publish.status_code in (400, 401, 403) and "ACCESS_REFUSED" in publish.text
            assert (await agent.delete("/queues/%2F/guarded")).status_code in (401, 403)
            assert (await agent.put("/queues/%2F/other", json={})).status_code in (401, 403)
    finally:
        workload.delete("guarded")


async def test_doctor_probe(rabbitmq: RabbitMQ) -> None:
    from activities.toolsets.rabbitmq import TOOLSET
    from core.targets import RabbitmqTarget

    assert TOOLSET.probe is not None
    found = await asyncio.to_thread(TOOLSET.probe, RabbitmqTarget(**rabbit_target(rabbitmq)))
    assert found.startswith("RabbitMQ 3.") and "as homelab on vhost /" in found
