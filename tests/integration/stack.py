"""A running homelab-agents stack for integration tests: the real worker, intake and watcher
against the session's Temporal dev server and private dockerd."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import httpx
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from activities.store import Store
from core.config import Settings
from core.models import Alert, ApprovalDecision, ApprovalRecord, IncidentState
from tests.approvals import key as approver_key
from tests.conftest import make_settings
from workers import operations
from workers.docker_events import DockerEventsWatcher
from workers.lab.dockerd import BUSYBOX_IMAGE, DockerEngine
from workers.lab.processes import free_port
from workers.routing import AlertRouter
from workers.stack import _notifiers, _serve_intake
from workers.telegram import serve_bot
from workers.worker import build_components, build_worker
from workflows.incident import IncidentWorkflow


@dataclass
class Stack:
    settings: Settings
    client: Client
    store: Store
    engine: DockerEngine | None
    intake_url: str
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def post(
        self, payload: Any, headers: dict[str, str] | None = None, raw: bytes | None = None
    ) -> httpx.Response:
        body = raw if raw is not None else json.dumps(payload).encode()
        async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
            return await http.post(
                f"{self.intake_url}/alerts/alertmanager",
                content=body,
                headers={"content-type": "application/json", **(headers or {})},
            )

    async def crash_and_alert(self, name: str) -> tuple[Any, str]:
        """A container that exits once (code 3), then its ContainerKilled webhook posted:
        (the container, the incident's workflow id)."""
        container = run_container(self.docker(), name, CRASH_ONCE)
        wait_exited(container)
        alert = am_alert("ContainerKilled", name)
        response = await self.post(alertmanager_payload(alert))
        assert response.status_code == 202, response.text
        return container, f"incident-{alert['fingerprint']}"

    async def decide(self, workflow_id: str, decision: ApprovalDecision) -> ApprovalRecord:
        """As ``homelab-agents approve`` does it: signed with the approver's key."""
        return await operations.decide(
            self.client,
            self.store,
            workflow_id,
            decision,
            key=approver_key(self.settings, decision.approver),
        )

    def handle(self, workflow_id: str) -> WorkflowHandle[Any, IncidentState]:
        return self.client.get_workflow_handle_for(IncidentWorkflow.run, workflow_id)

    async def result(self, workflow_id: str, timeout: float = 90) -> IncidentState:
        """The incident's final state; waits for it to exist first (events arrive asynchronously)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await asyncio.wait_for(self.handle(workflow_id).result(), timeout)
            except RPCError as err:
                if err.status is not RPCStatusCode.NOT_FOUND or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def wait_state(
        self, workflow_id: str, predicate: Any, timeout: float = 30
    ) -> IncidentState:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                state = await self.handle(workflow_id).query(IncidentWorkflow.get_state)
                last = state
                if predicate(state):
                    return state
            except Exception as exc:  # not started yet
                last = exc
            await asyncio.sleep(0.1)
        raise AssertionError(f"{workflow_id} never reached the expected state; last: {last}")

    def docker(self) -> docker.DockerClient:
        assert self.engine is not None, "this stack runs without a Docker engine"
        return self.engine.client()


def target_host(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


def stack_settings(
    env: WorkflowEnvironment, engine: DockerEngine | None, tmp: Path, **overrides: Any
) -> Settings:
    """Settings for a stack on ``env``; without ``engine`` no docker target (and no dockerd)."""
    approval = {"approvers": ["alice"], **overrides.pop("approval", {})}
    intake = {"port": free_port(), **overrides.pop("intake", {})}
    return make_settings(
        tmp,
        f"tq-{uuid.uuid4().hex[:10]}",
        temporal={"address": target_host(env), "state_dir": str(tmp / "state")},
        intake=intake,
        docker=overrides.pop("docker", None)
        or ([{"name": "lab", "url": engine.url, "timeout": 30}] if engine else []),
        approval=approval,
        worker={"metrics_port": 0},
        **overrides,
    )


@contextlib.asynccontextmanager
async def running_stack(
    env: WorkflowEnvironment,
    engine: DockerEngine | None,
    tmp: Path,
    *,
    watch: bool = False,
    worker: bool = True,
    bot: bool = False,
    settings: Settings | None = None,
    **overrides: Any,
) -> AsyncIterator[Stack]:
    settings = settings or stack_settings(env, engine, tmp, **overrides)
    client = env.client
    parts = build_components(settings, _notifiers(settings))
    router = AlertRouter(client, settings.temporal.task_queue, parts.store.owner_of_alert)
    stack = Stack(settings, client, parts.store, engine, f"http://127.0.0.1:{settings.intake.port}")
    the_worker = build_worker(client, parts) if worker else None
    if the_worker is not None:
        stack.tasks.append(asyncio.create_task(the_worker.run()))
    stack.tasks.append(asyncio.create_task(_serve_intake(settings, router, parts.store)))
    watcher = DockerEventsWatcher(settings, router.route) if watch else None
    if watcher is not None:
        stack.tasks.append(asyncio.create_task(watcher.run()))
    if bot:  # the Telegram bot as `up` runs it (polling or webhook, per settings.telegram)
        bot_started = asyncio.Event()
        bot_task = asyncio.create_task(
            serve_bot(settings, client, parts.store, started=bot_started)
        )
        stack.tasks.append(bot_task)
        await asyncio.wait(
            [bot_task, asyncio.create_task(bot_started.wait())],
            return_when=asyncio.FIRST_COMPLETED,
            timeout=30,
        )
        if bot_task.done():
            bot_task.result()  # raise what stopped it
    async with httpx.AsyncClient(trust_env=False) as http:
        for _ in range(100):
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{stack.intake_url}/healthz")).status_code == 200:
                    break
            await asyncio.sleep(0.05)
    try:
        yield stack
    finally:
        if watcher is not None:
            watcher.stop()
        if the_worker is not None:
            await the_worker.shutdown()
        for task in stack.tasks:
            task.cancel()
        await asyncio.gather(*stack.tasks, return_exceptions=True)
        for notifier in parts.notifiers:
            aclose = getattr(notifier, "aclose", None)
            if aclose is not None:
                await aclose()
        await parts.aclose()


def alertmanager_payload(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    return {
        "receiver": "homelab-agents",
        "status": status,
        "alerts": list(alerts),
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
    }


def as_webhook(alert: Alert) -> dict[str, Any]:
    """An alert (a sweep's finding) as Alertmanager would send it: what the intake takes."""
    return {
        "status": alert.status.value,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": alert.starts_at.isoformat(),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": alert.generator_url,
        "fingerprint": alert.fingerprint,
    }


def am_alert(
    alertname: str,
    container: str,
    *,
    status: str = "firing",
    fingerprint: str | None = None,
    **labels: str,
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {
            "alertname": alertname,
            "name": container,
            "instance": "lab:8080",
            "severity": "warning",
            **labels,
        },
        "annotations": {"summary": f"{alertname} on {container}"},
        "startsAt": datetime.now(UTC).isoformat(),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": fingerprint or uuid.uuid4().hex[:16],
    }


CRASH_ONCE = "if [ -f /tmp/crashed ]; then exec sleep 100000; fi; touch /tmp/crashed; exit 3"


def run_container(client: docker.DockerClient, name: str, command: str, **kwargs: Any) -> Any:
    return client.containers.run(
        BUSYBOX_IMAGE, ["sh", "-c", command], name=name, detach=True, **kwargs
    )


def wait_exited(container: Any, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        if container.status == "exited":
            return dict(container.attrs["State"])
        time.sleep(0.1)
    raise AssertionError(f"{container.name} did not exit")


def start_events(client: docker.DockerClient, name: str, since: float) -> int:
    """How many times the engine started this container since ``since`` (independent check)."""
    events = client.events(
        since=since, until=time.time(), decode=True, filters={"container": name, "event": "start"}
    )
    return sum(1 for _ in events)
