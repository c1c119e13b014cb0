"""The intake's outbox against a real kill -9: an accepted alert is never lost and never delivered
twice, whether the intake died before sending it or after Temporal had it but before it heard so.

The intake runs as its own process (`homelab-agents intake`) and reaches the dev server through a
TCP proxy that can lose Temporal's answers (the alert arrives, the intake never learns) or the
whole link. No worker polls the task queue, so each incident's history is exactly what the intake
delivered.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from activities.store import Store
from tests.conftest import BIN
from tests.integration.stack import alertmanager_payload, am_alert, target_host
from tests.integration.tcp_proxy import TcpProxy
from workers.lab.processes import free_port

pytestmark = pytest.mark.integration


class Intake:
    """`homelab-agents intake` as a process of its own, restartable on the same store."""

    def __init__(self, root: Path, temporal: str, task_queue: str) -> None:
        self.root = root
        self.port = free_port()
        self.store_url = f"sqlite:///{root / 'store.db'}"
        self.task_queue = task_queue
        self.proc: subprocess.Popen[bytes] | None = None
        self.temporal = temporal

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        config = self.root / "homelab.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "temporal": {
                        "address": self.temporal,
                        "task_queue": self.task_queue,
                        "state_dir": str(self.root / "state"),
                    },
                    "store": {"url": self.store_url},
                    "intake": {"port": self.port},
                    "docker": [],
                }
            )
        )
        self.proc = subprocess.Popen(
            [str(BIN / "homelab-agents"), "-c", str(config), "intake"],
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "intake.log", "ab"),  # the child holds it
            env={**os.environ, "NO_PROXY": "*"},
            start_new_session=True,
        )
        await until(self._healthy, 30, f"intake on {self.url}")

    async def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError((self.root / "intake.log").read_text()[-2000:])
        try:
            async with httpx.AsyncClient(trust_env=False) as http:
                return (await http.get(f"{self.url}/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)

    async def post(self, *alerts: dict[str, Any]) -> httpx.Response:
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            return await http.post(
                f"{self.url}/alerts/alertmanager", json=alertmanager_payload(*alerts)
            )

    async def backlog(self) -> float:
        async with httpx.AsyncClient(trust_env=False) as http:
            text = (await http.get(f"{self.url}/metrics")).text
        line = next(x for x in text.splitlines() if x.startswith("homelab_intake_backlog "))
        return float(line.split()[1])


async def until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: not reached in {timeout}s")


async def alert_signals(client: Client, fingerprint: str) -> list[str]:
    """The statuses of the ``alert`` signals incident-<fingerprint> received, in order."""
    out = []
    try:
        async for event in client.get_workflow_handle(
            f"incident-{fingerprint}"
        ).fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                attrs = event.workflow_execution_signaled_event_attributes
                if attrs.signal_name == "alert":
                    decoded = await client.data_converter.decode(attrs.input.payloads)
                    alert = decoded[0]
                    out.append(alert["status"] if isinstance(alert, dict) else alert.status.value)
    except RPCError as err:
        if err.status is not RPCStatusCode.NOT_FOUND:
            raise
    return out


def states(store: Store) -> dict[tuple[str, str], str]:
    return {(r["fingerprint"], r["status"]): r["state"] for r in store.outbox_rows()}


@pytest.fixture
async def proxy(dev_env: WorkflowEnvironment) -> AsyncIterator[TcpProxy]:
    host, port = target_host(dev_env).rsplit(":", 1)
    proxy = await TcpProxy(host, int(port)).start()
    yield proxy
    await proxy.stop()


async def test_kill9_between_accept_and_delivery_loses_and_duplicates_nothing(
    dev_env: WorkflowEnvironment, proxy: TcpProxy, tmp_path: Path
) -> None:
    client = dev_env.client
    queue = f"outbox-{uuid.uuid4().hex[:8]}"
    intake = Intake(tmp_path, proxy.address, queue)
    store = Store(intake.store_url)
    warm, lost_answer, unsent = (am_alert("OutboxTest", f"c{i}") for i in range(3))
    fp = {
        name: a["fingerprint"]
        for name, a in (("warm", warm), ("lost", lost_answer), ("unsent", unsent))
    }
    await intake.start()
    try:
        # 1. A normal delivery (and a connection to Temporal through the proxy).
        assert (await intake.post(warm)).status_code == 202
        await until(
            lambda: asyncio.sleep(0, states(store).get((fp["warm"], "firing")) == "delivered"),
            20,
            "warm alert delivered",
        )
        # 2. Temporal gets the next alerts, the intake never hears back.
        proxy.mode = "drop-responses"
        resolved = {**warm, "status": "resolved", "endsAt": warm["startsAt"]}
        for alert in (lost_answer, resolved):
            answer = await intake.post(alert)
            assert answer.status_code == 202 and answer.json()["results"][0]["action"] == "accepted"

        async def temporal_has_them() -> bool:
            return await alert_signals(client, fp["lost"]) == ["firing"] and await alert_signals(
                client, fp["warm"]
            ) == ["firing", "resolved"]

        await until(temporal_has_them, 20, "Temporal received the alerts whose answers were lost")
        assert states(store)[(fp["lost"], "firing")] == "pending"
        assert states(store)[(fp["warm"], "resolved")] == "pending"
        # 3. Then nothing gets through: accepted, durable, never sent.
        proxy.mode = "blackhole"
        assert (await intake.post(unsent)).status_code == 202
        await asyncio.sleep(1.0)
        assert await alert_signals(client, fp["unsent"]) == []
        assert await intake.backlog() >= 3  # /metrics shows what waits
        intake.kill9()
    finally:
        intake.stop()

    # 4. A new intake on the same store, straight to Temporal; Alertmanager re-sends one alert.
    intake.temporal = target_host(dev_env)
    await intake.start()
    try:
        again = await intake.post(lost_answer)
        assert again.json()["results"][0]["action"] == "duplicate"

        async def all_delivered() -> bool:
            return set(states(store).values()) == {"delivered"}

        await until(all_delivered, 30, "every accepted alert delivered after the restart")
        assert len(states(store)) == 4
        assert await alert_signals(client, fp["warm"]) == ["firing", "resolved"]
        # Sent before the kill (Temporal had it, the row was pending), sent again after the
        # restart with the same request id: Temporal kept one.
        assert await alert_signals(client, fp["lost"]) == ["firing"]
        assert await alert_signals(client, fp["unsent"]) == ["firing"]
        assert await intake.backlog() == 0
        rows = {(r["fingerprint"], r["status"]): r for r in store.outbox_rows()}
        assert rows[(fp["warm"], "resolved")]["action"] == "signalled"
    finally:
        intake.stop()
        store.close()
