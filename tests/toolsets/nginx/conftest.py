"""nginx in front of a real container, once per module; tools run against it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import make_settings
from tests.toolsets.backends import WebContainer
from tests.toolsets.runner import Tools
from workers.lab.dockerd import DockerEngine
from workers.lab.processes import free_port
from workers.lab.proxies import Nginx


@pytest.fixture(scope="module")
def web(docker_engine: DockerEngine) -> Iterator[WebContainer]:
    container = WebContainer(docker_engine, "nginx-upstream")
    yield container
    container.remove()


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory, web: WebContainer) -> Iterator[Nginx]:
    server = Nginx(tmp_path_factory.mktemp("nginx"), free_port()).start([web.address])
    yield server
    server.stop()


def nginx_target(
    server: Nginx, web: WebContainer, name: str = "edge", **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "command": server.command,
        "status_url": server.status_url,
        "backends": {web.address: f"docker:lab/{web.name}"},
        "probe_timeout": 1,
        **extra,
    }


@pytest_asyncio.fixture
async def tools(nginx: Nginx, web: WebContainer, tmp_path: Path) -> AsyncIterator[Tools]:
    t = Tools(make_settings(tmp_path, nginx=[nginx_target(nginx, web)]), "nginx:edge")
    yield t
    await t.aclose()
