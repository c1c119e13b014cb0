"""The product as separate processes, the way a deployment runs it: a Temporal dev server, and
`homelab-agents worker` and `homelab-agents intake` launched from the CLI with one config file.

Benchmarks that measure the intake or the worker from the outside use this (the load generator and
the measured process never share an event loop or a GIL).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from workers.lab.processes import free_port

BIN = Path(sys.prefix) / "bin"
CLI = BIN / "homelab-agents"


async def incident_result(client: Client, workflow_id: str, timeout: float = 120) -> Any:
    """An incident's final state, once it exists: the intake answers 202 as soon as the alert
    is in its outbox, a moment before Temporal starts the workflow."""
    from core.models import IncidentState

    deadline = time.monotonic() + timeout
    while True:
        try:
            handle = client.get_workflow_handle(workflow_id, result_type=IncidentState)
            return await asyncio.wait_for(handle.result(), max(1.0, deadline - time.monotonic()))
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def rss_mb(pid: int) -> float:
    """Resident memory of one process, in MiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Launched:
    """One CLI process (worker or intake) with its log."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill9(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 20) -> None:
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Deployment:
    """A config file and the processes started from it."""

    root: Path
    config: dict[str, Any]
    processes: list[Launched] = field(default_factory=list)

    @property
    def config_path(self) -> Path:
        return self.root / "homelab.yaml"

    @property
    def intake_url(self) -> str:
        return f"http://127.0.0.1:{self.config['intake']['port']}"

    def write(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config))
        return self.config_path

    def launch(self, command: str, *extra: str) -> Launched:
        """``homelab-agents -c <config> <command>`` in its own session (killable as a group)."""
        self.write()
        log = self.root / f"{command}-{len(self.processes)}.log"
        env = {**os.environ, "NO_PROXY": "*", "no_proxy": "*"}
        popen = subprocess.Popen(
            [str(CLI), "-c", str(self.config_path), command, *extra],
            stdout=open(log, "ab"),  # the child holds it open
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            cwd=self.root,
        )
        launched = Launched(command, popen, log)
        self.processes.append(launched)
        return launched

    def wait_intake(self, proc: Launched, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"intake exited:\n{proc.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.intake_url}/healthz", trust_env=False, timeout=1).is_success:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"intake did not answer in {timeout}s:\n{proc.tail()}")

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()


def deployment(root: Path, temporal_address: str, task_queue: str, **sections: Any) -> Deployment:
    """A config for processes on an existing Temporal (the bench's dev server)."""
    config: dict[str, Any] = {
        "temporal": {
            "address": temporal_address,
            "task_queue": task_queue,
            "state_dir": str(root / "state"),
        },
        "store": {"url": f"sqlite:///{root / 'store.db'}"},
        "intake": {"port": free_port()},
        "worker": {"metrics_port": free_port()},
        "docker": [],
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return Deployment(root, config)


@contextlib.contextmanager
def launched(dep: Deployment, *commands: str) -> Iterator[dict[str, Launched]]:
    """Start the commands (the intake is waited for), stop them all on exit."""
    procs: dict[str, Launched] = {}
    try:
        for command in commands:
            procs[command] = dep.launch(command)
            if command == "intake":
                dep.wait_intake(procs[command])
        yield procs
    finally:
        dep.stop()
