"""Caddy (admin API on loopback) reverse-proxying to a real container, once per module."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.conftest import make_settings
from tests.toolsets.backends import WebContainer
from tests.toolsets.runner import Tools
from workers.lab.dockerd import DockerEngine
from workers.lab.processes import free_ports
from workers.lab.proxies import Caddy


@pytest.fixture(scope="module")
def web(docker_engine: DockerEngine) -> Iterator[WebContainer]:
    container = WebContainer(docker_engine, "caddy-upstream")
    yield container
    container.remove()


@pytest.fixture(scope="module")
def caddy(tmp_path_factory: pytest.TempPathFactory, web: WebContainer) -> Iterator[Caddy]:
    port, admin = free_ports(2)
    server = Caddy(tmp_path_factory.mktemp("caddy"), port, admin).start([web.address])
    yield server
    server.stop()


@pytest_asyncio.fixture
async def tools(caddy: Caddy, web: WebContainer, tmp_path: Path) -> AsyncIterator[Tools]:
    target = {
        "name": "edge",
        "admin_url": caddy.admin_url,
        "config_file": str(caddy.file),
        "backends": {web.address: f"docker:lab/{web.name}"},
        "probe_timeout": 1,
    }
    t = Tools(make_settings(tmp_path, caddy=[target]), "caddy:edge")
    yield t
    await t.aclose()
