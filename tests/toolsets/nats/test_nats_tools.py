"""Every NATS tool on a real nats-server: server figures, JetStream stream and consumer lag,
and a real slow consumer (a subscriber that stops reading while a publisher floods it), closed
by the server and found by name with its configured container."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest

from core.models import ToolErrorKind
from tests.conftest import make_settings
from tests.toolsets.nats.conftest import stalled_subscriber
from tests.toolsets.runner import Tools
from workers.lab.brokers import Nats
from workers.lab.processes import free_port

pytestmark = pytest.mark.integration


async def test_varz_and_jetstream_lag(tools: Tools, nats_server: Nats) -> None:
    nc = await nats.connect(f"nats://127.0.0.1:{nats_server.port}", name="app")
    try:
        js = nc.jetstream()
        await js.add_stream(name="EVENTS", subjects=["events.>"])
        for i in range(10):
            await js.publish(f"events.{i}", b"payload")
        sub = await js.pull_subscribe("events.>", durable="worker")
        for m in await sub.fetch(3, timeout=2):
            await m.ack()
        varz = await tools.ok("nats.varz")
        assert varz["version"] and varz["connections"] >= 1 and varz["jetstream"]
        for _ in range(30):  # acks are asynchronous
            jsz = await tools.ok("nats.jsz")
            if jsz["worst_consumer"] and jsz["worst_consumer"]["num_ack_pending"] == 0:
                break
            await asyncio.sleep(0.1)
        assert jsz["stream_count"] == 1 and jsz["consumer_count"] == 1
        worst = jsz["worst_consumer"]
        assert (worst["stream"], worst["consumer"], worst["num_pending"]) == ("EVENTS", "worker", 7)
        assert jsz["max_pending"] == 7
        conns = await tools.ok("nats.connz")
        assert any(c["name"] == "app" and c["lang"] == "python3" for c in conns["connections"])
    finally:
        await nc.close()


async def test_slow_consumer_is_found(tools: Tools, nats_server: Nats) -> None:
    before = (await tools.ok("nats.varz"))["slow_consumers"]
    stalled = stalled_subscriber(nats_server, "flood", "slowpoke")
    nc = await nats.connect(f"nats://127.0.0.1:{nats_server.port}", name="publisher")
    try:
        payload = b"x" * 64 * 1024
        for _ in range(200):  # 12.5 MiB into a socket nobody reads, max_pending 1 MiB
            await nc.publish("flood", payload)
        await nc.flush()
        for _ in range(50):
            varz = await tools.ok("nats.varz")
            if varz["slow_consumers"] > before:
                break
            await asyncio.sleep(0.1)
        assert varz["slow_consumers"] > before
        closed = await tools.ok("nats.connz", {"closed": True})
        (slow,) = [c for c in closed["slow_consumers_closed"] if c["name"] == "slowpoke"]
        assert "slow consumer" in slow["reason"].lower()
        assert slow["backend"]["ref"] == "docker:lab/slow-worker"
    finally:
        stalled.close()
        await nc.close()


async def test_typed_failures(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, nats=[{"name": "down", "url": f"http://127.0.0.1:{free_port()}", "timeout": 1}]
    )
    tools = Tools(settings, "nats:down")
    try:
        result = await tools.run("nats.varz")
        assert not result.ok and result.error.kind is ToolErrorKind.UNREACHABLE
        bad = await tools.run("nats.connz", {"sort": "random"})
        assert not bad.ok and bad.error.kind is ToolErrorKind.INVALID
    finally:
        await tools.aclose()


async def test_doctor_probe(nats_server: Nats) -> None:
    from activities.toolsets.nats import TOOLSET
    from core.targets import NatsTarget

    assert TOOLSET.probe is not None
    found = await asyncio.to_thread(TOOLSET.probe, NatsTarget(name="bus", url=nats_server.url))
    assert found.startswith("nats 2.") and " lab," in found
