"""HAProxy in front of a real container, a server answering 500 on /fail, and a dead address."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import make_settings
from tests.toolsets.backends import WebContainer, failing_server
from tests.toolsets.runner import Tools
from workers.lab.dockerd import DockerEngine
from workers.lab.processes import free_port
from workers.lab.proxies import Haproxy


@pytest.fixture(scope="module")
def web(docker_engine: DockerEngine) -> Iterator[WebContainer]:
    container = WebContainer(docker_engine, "haproxy-web1")
    yield container
    container.remove()


@pytest.fixture(scope="module")
def flaky(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with failing_server(tmp_path_factory.mktemp("flaky")) as address:
        yield address


@pytest.fixture(scope="module")
def dead() -> Iterator[str]:
    """An address that refuses connections for the whole module: bound, never listening, so
    nothing else started meanwhile (a dev server, a proxy) can take the port."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{held.getsockname()[1]}"


@pytest.fixture(scope="module")
def haproxy(
    tmp_path_factory: pytest.TempPathFactory, web: WebContainer, flaky: str, dead: str
) -> Iterator[Haproxy]:
    servers = {"web1": web.address, "flaky": flaky, "web2": dead}
    server = Haproxy(tmp_path_factory.mktemp("haproxy"), free_port()).start(servers)
    yield server
    server.stop()


def haproxy_target(server: Haproxy, web: WebContainer, **extra: Any) -> dict[str, Any]:
    return {
        "name": "lb",
        "socket": str(server.socket),
        "config_file": str(server.cfg),
        "reload_command": server.reload_command,
        "backends": {web.address: f"docker:lab/{web.name}"},
        **extra,
    }


@pytest_asyncio.fixture
async def tools(haproxy: Haproxy, web: WebContainer, tmp_path: Path) -> AsyncIterator[Tools]:
    t = Tools(make_settings(tmp_path, haproxy=[haproxy_target(haproxy, web)]), "haproxy:lb")
    yield t
    await t.aclose()
