"""A real Redis server once per session, and a runner of redis tools against it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis

from tests.conftest import make_settings
from tests.toolsets.runner import Tools
from workers.lab.processes import free_port
from workers.lab.redis import AGENT_USER, Redis


@pytest.fixture(scope="session")
def redis_server(session_root: Path) -> Iterator[Redis]:
    server = Redis(session_root / "redis", free_port()).start()
    yield server
    server.stop()


def redis_target(server: Redis, name: str = "cache", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "url": server.url,
        "username": AGENT_USER,
        "password": server.password,
        "timeout": 3,
        **extra,
    }


@pytest.fixture
def admin(redis_server: Redis) -> Iterator[redis.Redis]:
    """The workload's side (default user): fills, configures, holds connections."""
    client = redis.Redis(port=redis_server.port, decode_responses=True)
    yield client
    client.close()


@pytest_asyncio.fixture
async def tools(redis_server: Redis, tmp_path: Path) -> AsyncIterator[Tools]:
    settings = make_settings(tmp_path, redis=[redis_target(redis_server)])
    t = Tools(settings, "redis:cache")
    yield t
    await t.aclose()
