"""A real nats-server (JetStream, monitoring) per module, and a client that stops reading."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.conftest import make_settings
from tests.toolsets.runner import Tools
from workers.lab.brokers import Nats


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nats]:
    server = Nats(tmp_path_factory.mktemp("nats")).start()
    yield server
    server.stop()


@pytest_asyncio.fixture
async def tools(nats_server: Nats, tmp_path: Path) -> AsyncIterator[Tools]:
    target = {
        "name": "bus",
        "url": nats_server.url,
        "backends": {"slowpoke": "docker:lab/slow-worker"},
    }
    t = Tools(make_settings(tmp_path, nats=[target]), "nats:bus")
    yield t
    await t.aclose()


def stalled_subscriber(server: Nats, subject: str, name: str) -> socket.socket:
    """A client speaking the NATS protocol that subscribes and then never reads its socket:
    what a hung consumer looks like to the server."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    assert sock.recv(4096).startswith(b"INFO ")
    connect = json.dumps(
        {"verbose": False, "pedantic": False, "name": name, "lang": "raw", "protocol": 1}
    )
    sock.sendall(f"CONNECT {connect}\r\nSUB {subject} 1\r\nPING\r\n".encode())
    assert b"PONG" in sock.recv(4096)
    return sock
