"""Upstreams for the proxy tests: real containers on the session's dockerd (busybox httpd on a
loopback port, host network), and a loopback HTTP server process answering 500 on /fail."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx

from workers.lab.dockerd import BUSYBOX_IMAGE, DockerEngine
from workers.lab.processes import Proc, free_port, wait_for


class WebContainer:
    """``httpd`` in a container on 127.0.0.1:port: stop it and the upstream is really dead."""

    def __init__(self, engine: DockerEngine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.port = free_port()
        self.client = engine.client()
        with contextlib.suppress(docker.errors.NotFound):
            self.client.containers.get(name).remove(force=True)
        self.container = self.client.containers.run(
            BUSYBOX_IMAGE,
            ["httpd", "-f", "-p", f"127.0.0.1:{self.port}", "-h", "/www"],
            name=name,
            detach=True,
            network_mode="host",
            init=True,
        )
        self.wait_serving()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_serving(self) -> None:
        wait_for(
            lambda: httpx.get(f"http://{self.address}/", timeout=1).status_code == 200,
            15,
            f"container {self.name}",
        )

    def stop(self) -> None:
        self.container.stop(timeout=1)

    def start(self) -> None:
        self.container.start()
        self.wait_serving()

    def status(self) -> str:
        self.container.reload()
        return str(self.container.status)

    def remove(self) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.container.remove(force=True)
        self.client.close()


FAILING_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        status = 500 if self.path.startswith("/fail") else 200
        self.send_response(status)
        self.send_header("content-length", "3")
        self.end_headers()
        try:
            self.wfile.write(b"ok\\n" if status == 200 else b"no\\n")
        except OSError:
            pass

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


@contextlib.contextmanager
def failing_server(root: Path) -> Iterator[str]:
    """An HTTP server in its own process (its own GIL: health checks get answered in time even
    while the test process runs a worker): 200 on /, 500 on /fail. Yields its host:port."""
    port = free_port()
    proc = Proc.spawn(
        "failing-http", [sys.executable, "-c", FAILING_SERVER, str(port)], root / "failing.log"
    )
    try:
        wait_for(lambda: get(f"http://127.0.0.1:{port}/") == 200, 10, "failing server")
        yield f"127.0.0.1:{port}"
    finally:
        proc.stop()


TRAFFIC = """
import sys, time, urllib.error, urllib.request

url, out = sys.argv[1], sys.argv[2]
with open(out, "a", buffering=1) as log:
    while True:
        try:
            status = urllib.request.urlopen(url, timeout=3).status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            status = 0
        log.write(f"{status}\\n")
"""


class Traffic:
    """Requests to ``url`` from their own process until stopped; the statuses seen, in order."""

    def __init__(self, url: str, root: Path) -> None:
        self.log = root / "traffic.log"
        self.proc = Proc.spawn(
            "traffic", [sys.executable, "-c", TRAFFIC, url, str(self.log)], root / "traffic.out"
        )

    def statuses(self) -> list[int]:
        try:
            return [int(line) for line in self.log.read_text().split()]
        except OSError:
            return []

    def stop(self) -> None:
        self.proc.stop()


def get(url: str) -> int:
    """Status of a GET, or 0 when nothing answers."""
    try:
        return httpx.get(url, timeout=3, trust_env=False).status_code
    except httpx.HTTPError:
        return 0


def until(check: Any, timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout}s")
