"""One real RabbitMQ node (management plugin) per session: Erlang starts slowly, so once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.conftest import make_settings
from tests.toolsets.runner import Tools
from workers.lab.brokers import AGENT_USER, RabbitMQ

ADMIN = ("admin", "admin-secret")


@pytest.fixture(scope="session")
def rabbitmq(session_root: Path) -> Iterator[RabbitMQ]:
    broker = RabbitMQ(session_root / "rabbitmq").start()
    print(f"\nRabbitMQ ready in {broker.started_in:.1f}s")
    yield broker
    broker.stop()


def rabbit_target(broker: RabbitMQ, name: str = "mq", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "url": broker.url,
        "username": AGENT_USER,
        "password": broker.password,
        "backends": {"jobs": "docker:lab/worker"},
        **extra,
    }


class Workload:
    """The applications' side, as the admin user: declare, publish, read exact depths."""

    def __init__(self, broker: RabbitMQ) -> None:
        self.broker = broker
        self.http = httpx.Client(base_url=broker.url + "/api", auth=ADMIN, timeout=10)

    def declare(self, queue: str) -> None:
        self.http.put(f"/queues/%2F/{queue}", json={"durable": True}).raise_for_status()

    def publish(self, queue: str, count: int) -> None:
        for i in range(count):
            body = {
                "properties": {"delivery_mode": 2},
                "routing_key": queue,
                "payload": f"m{i}",
                "payload_encoding": "string",
            }
            answer = self.http.post("/exchanges/%2F/amq.default/publish", json=body).json()
            assert answer["routed"]

    def exact_depth(self, queue: str) -> int:
        """From rabbitmqctl, not the lagging management statistics."""
        for line in self.broker.ctl("list_queues", "name", "messages").splitlines():
            name, _, count = line.rpartition("\t")
            if name == queue:
                return int(count)
        raise AssertionError(f"no queue {queue}")

    def delete(self, queue: str) -> None:
        self.http.delete(f"/queues/%2F/{queue}")

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def workload(rabbitmq: RabbitMQ) -> Iterator[Workload]:
    w = Workload(rabbitmq)
    yield w
    w.close()


@pytest_asyncio.fixture
async def tools(rabbitmq: RabbitMQ, tmp_path: Path) -> AsyncIterator[Tools]:
    t = Tools(make_settings(tmp_path, rabbitmq=[rabbit_target(rabbitmq)]), "rabbitmq:mq")
    yield t
    await t.aclose()


async def wait_depth(
    tools: Tools, queue: str, want: int, within: float = 15, target: str | None = None
) -> dict[str, Any]:
    """Poll the queue tool until the management statistics catch up (they lag ~5 s)."""
    deadline = time.monotonic() + within
    data: dict[str, Any] = {}
    while time.monotonic() < deadline:
        data = await tools.ok("rabbitmq.queue", target=target or f"rabbitmq:mq/{queue}")
        if data["messages_ready"] == want:
            return data
        await asyncio.sleep(0.5)
    raise AssertionError(f"{queue} depth never reached {want}: {data}")
