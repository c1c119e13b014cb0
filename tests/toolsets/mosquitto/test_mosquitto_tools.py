"""Every Mosquitto tool on a real broker through $SYS: clients, and messages really dropped for
an offline persistent subscriber; a user without $SYS rights, a bad password, no broker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from core.models import ToolErrorKind
from tests.conftest import make_settings
from tests.toolsets.runner import Tools
from workers.lab.brokers import Mosquitto
from workers.lab.processes import free_port

pytestmark = pytest.mark.integration


def app(broker: Mosquitto, identifier: str, clean: bool = True) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1",
        broker.port,
        username="app",
        password="app-secret",
        identifier=identifier,
        clean_session=clean,
    )


async def test_broker_figures_and_clients(tools: Tools, broker: Mosquitto) -> None:
    async with app(broker, "homeassistant"):
        await asyncio.sleep(1.2)  # sys_interval 1
        data = await tools.ok("mosquitto.broker")
    assert data["version"].startswith("mosquitto version")
    assert data["clients_connected"] >= 2  # Home Assistant's stand-in and our own reader
    assert data["topics_read"] > 10
    raw = await tools.ok("mosquitto.sys", {"prefix": "$SYS/broker/clients/"})
    assert "$SYS/broker/clients/connected" in raw["values"]


async def test_dropped_messages_for_an_offline_subscriber(tools: Tools, broker: Mosquitto) -> None:
    before = (await tools.ok("mosquitto.broker"))["publish_dropped"] or 0
    async with app(broker, "sleepy-sensor", clean=False) as sleepy:
        await sleepy.subscribe("home/#", qos=1)
    async with app(broker, "publisher") as publisher:
        for i in range(30):  # max_queued_messages 10: 20 are dropped for the offline session
            await publisher.publish("home/kitchen/temp", str(i), qos=1)
    for _ in range(10):
        result = await tools.run("mosquitto.broker")
        assert result.ok, result.error
        if (result.data["publish_dropped"] or 0) - before >= 20:
            break
    assert (result.data["publish_dropped"] or 0) - before >= 20
    assert f"{result.data['publish_dropped']} publishes dropped" in result.summary


async def test_typed_failures(broker: Mosquitto, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        mosquitto=[
            {"name": "wrong", "port": broker.port, "username": "homelab", "password": "nope"},
            {
                "name": "nosys",
                "port": broker.port,
                "username": "app",
                "password": "app-secret",
                "sys_wait": 1,
            },
            {"name": "down", "port": free_port(), "timeout": 1},
        ],
    )
    tools = Tools(settings, "mosquitto:wrong")
    try:
        bad = await tools.run("mosquitto.broker")
        assert not bad.ok and bad.error.kind is ToolErrorKind.UNAUTHORIZED
        nosys = await tools.run("mosquitto.broker", target="mosquitto:nosys")
        assert not nosys.ok and nosys.error.kind is ToolErrorKind.UNAUTHORIZED
        down = await tools.run("mosquitto.broker", target="mosquitto:down")
        assert not down.ok and down.error.kind is ToolErrorKind.UNREACHABLE
        prefix = await tools.run("mosquitto.sys", {"prefix": "home/#"})
        assert not prefix.ok and prefix.error.kind is ToolErrorKind.INVALID
    finally:
        await tools.aclose()


async def test_doctor_probe(broker: Mosquitto) -> None:
    from activities.toolsets.mosquitto import TOOLSET
    from core.targets import MosquittoTarget

    assert TOOLSET.probe is not None
    target = MosquittoTarget(
        name="ha", port=broker.port, username="homelab", password=broker.password, sys_wait=1
    )
    found = await asyncio.to_thread(TOOLSET.probe, target)
    assert found.startswith("mosquitto version")
