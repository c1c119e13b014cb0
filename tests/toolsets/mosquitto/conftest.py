"""A real Mosquitto broker (password auth, ACLs) per module."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.conftest import make_settings
from tests.toolsets.runner import Tools
from workers.lab.brokers import AGENT_USER, Mosquitto


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    yield server
    server.stop()


@pytest_asyncio.fixture
async def tools(broker: Mosquitto, tmp_path: Path) -> AsyncIterator[Tools]:
    target = {
        "name": "ha",
        "port": broker.port,
        "username": AGENT_USER,
        "password": broker.password,
        "sys_wait": 1.0,
    }
    t = Tools(make_settings(tmp_path, mosquitto=[target]), "mosquitto:ha")
    yield t
    await t.aclose()
