"""The incident annotation channel against the Grafana fake: one annotation per step (request
shapes asserted), retries that find their annotation, secrets and markup kept out, the config that
turns it on, and a Grafana outage that neither blocks nor repeats the other channels."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.notify import NotifyActivities
from activities.toolsets.grafana.notifier import GrafanaAnnotations, grafana_notifiers
from core.config import Settings
from core.models import Notification
from tests.conftest import make_settings
from tests.fakes.grafana import FakeGrafana
from tests.toolsets.grafana.test_tools import grafana_target
from workers.lab.processes import free_port
from workers.stack import _notifiers

WID = "incident-0123456789abcdef"
AT = datetime(2025, 5, 17, 10, 30, 0, 123000, tzinfo=UTC)
AT_MS = int(AT.timestamp() * 1000)


def note(kind: str, title: str, *lines: str, **extra: Any) -> Notification:
    return Notification(
        kind=kind,
        incident_id=WID,
        workflow_id=WID,
        title=title,
        lines=list(lines),
        severity="critical",
        **extra,
    )


def settings(grafana: FakeGrafana, tmp_path: Path, **extra: Any) -> Settings:
    return make_settings(tmp_path, grafana=[grafana_target(grafana, tmp_path, **extra)])


def env_at(scheduled: datetime, attempt: int = 1, delivered: list[str] | None = None) -> Any:
    """An activity context as the worker gives it: first scheduled at ``scheduled``."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info,
        scheduled_time=scheduled,
        attempt=attempt,
        heartbeat_details=[delivered] if delivered else [],
    )
    return env


@pytest.fixture
async def channel(grafana: FakeGrafana, tmp_path: Path) -> AsyncIterator[GrafanaAnnotations]:
    async def alert_of(workflow_id: str) -> str:
        lookups.append(workflow_id)
        return "ContainerKilled"

    lookups: list[str] = []
    annotations = GrafanaAnnotations(settings(grafana, tmp_path), "lab", alert_of)
    annotations.lookups = lookups  # type: ignore[attr-defined]
    yield annotations
    await annotations.aclose()


async def test_each_step_is_one_tagged_annotation(
    channel: GrafanaAnnotations, grafana: FakeGrafana
) -> None:
    notify = NotifyActivities([channel])
    steps = [
        note("opened", "Incident opened: ContainerKilled on docker:lab/web"),
        note("plan", "Plan (runbook): 1 action(s)", "a1: docker.start on docker:lab/web"),
        note("action", "Applied docker.start on docker:lab/web", "started web"),
        note("verification", "Verification passed", "web running for 5s"),
        note("resolved", "resolved: ContainerKilled", "docker.start: applied"),
    ]
    for i, step in enumerate(steps):
        assert await env_at(AT + timedelta(seconds=i)).run(notify.notify, step) == 1

    posts = [r for r in grafana.requests if r.method == "POST"]
    assert [p.body["tags"][2] for p in posts] == [
        "kind:opened",
        "kind:action",
        "kind:verification",
        "kind:resolved",
    ]  # the plan is left out: its actions are annotated as they run
    first = posts[0]
    assert first.path == "/api/annotations"
    assert first.headers["authorization"] == f"Bearer {grafana.token}"
    assert first.headers["x-grafana-org-id"] == "2"
    assert first.body == {
        "time": AT_MS,
        "tags": [
            "homelab-agents",
            f"incident:{WID}",
            "kind:opened",
            "alert:ContainerKilled",
            "severity:critical",
        ],
        "text": "<b>Incident opened: ContainerKilled on docker:lab/web</b>",
    }  # no dashboardUID: an org annotation, on every dashboard that shows the tags
    assert posts[1].body["text"] == ("<b>Applied docker.start on docker:lab/web</b><br>started web")
    assert [p.body["time"] for p in posts] == [AT_MS, AT_MS + 2000, AT_MS + 3000, AT_MS + 4000]
    assert channel.lookups == [WID]  # type: ignore[attr-defined]  # once per incident
    assert len(grafana.annotations) == 4


async def test_a_retry_finds_its_annotation(
    channel: GrafanaAnnotations, grafana: FakeGrafana
) -> None:
    notify = NotifyActivities([channel])
    step = note("approval", "Approval needed: docker.update on docker:lab/db", "memory 1g → 2g")
    await env_at(AT).run(notify.notify, step)
    # the answer was lost: the attempt is retried with the same scheduled time
    await env_at(AT, attempt=2).run(notify.notify, step)
    assert len(grafana.annotations) == 1
    assert [r.method for r in grafana.requests].count("POST") == 1

    # Grafana failing mid-delivery: the attempt raises (Temporal retries it), the next writes once
    grafana.requests.clear()
    grafana.fail_next.append((500, {"message": "database is locked"}, {}))
    closed = note("approval_closed", "docker.update: approved by alice")
    with pytest.raises(RuntimeError, match=r"grafana:lab: .*database is locked"):
        await env_at(AT + timedelta(minutes=2)).run(notify.notify, closed)
    await env_at(AT + timedelta(minutes=2), attempt=2).run(notify.notify, closed)
    await env_at(AT + timedelta(minutes=2), attempt=3).run(notify.notify, closed)
    assert [a["text"] for a in grafana.annotations] == [
        "<b>Approval needed: docker.update on docker:lab/db</b><br>memory 1g → 2g",
        "<b>docker.update: approved by alice</b>",
    ]


async def test_secrets_and_markup_stay_out(
    channel: GrafanaAnnotations, grafana: FakeGrafana
) -> None:
    step = note(
        "escalated",
        "Escalated: <PostgresDown> on db",
        "psql failed: password=hunter2sekrit for postgres://app:s3cr3tpw@db:5432/app",
        "Authorization: Bearer glsa_leaked_token_abcdef0123",
        "x" * 3000,
        ui_url="http://temporal.lan:8233/namespaces/default/workflows/" + WID,
    )
    await env_at(AT).run(NotifyActivities([channel]).notify, step)
    (posted,) = [r for r in grafana.requests if r.method == "POST"]
    text = posted.body["text"]
    for secret in ("hunter2sekrit", "s3cr3tpw", "glsa_leaked_token_abcdef0123", grafana.token):
        assert secret not in text
    assert text.startswith("<b>Escalated: &lt;PostgresDown&gt; on db</b><br>psql failed: ")
    assert "***" in text and len(text) <= 2000
    assert text.endswith(
        '<a href="http://temporal.lan:8233/namespaces/default/workflows/'
        f'{WID}">incident in the Temporal Web UI</a>'
    )
    assert "x" * 390 in text and "x" * 401 not in text  # a long line is clipped, not dropped


async def test_dashboard_target_and_config(grafana: FakeGrafana, tmp_path: Path) -> None:
    on_dashboard = settings(grafana, tmp_path, dashboard_uid="agents", tags=["lab", "homelab"])
    (channel,) = grafana_notifiers(on_dashboard)
    try:
        await channel.send(note("rollback", "Rolling back: docker.update failed"))
    finally:
        await channel.aclose()
    (posted,) = [r for r in grafana.requests if r.method == "POST"]
    assert posted.body["dashboardUID"] == "agents"
    assert posted.body["tags"] == [
        "lab",
        "homelab",
        "homelab-agents",
        f"incident:{WID}",
        "kind:rollback",
        "severity:critical",
    ]  # the target's tags first; no alert tag without a lookup
    (lookup,) = [r for r in grafana.requests if r.method == "GET"][:1]
    assert lookup.query["dashboardUID"] == ["agents"]

    assert [c.name for c in _notifiers(settings(grafana, tmp_path))] == ["grafana:lab"]
    assert _notifiers(settings(grafana, tmp_path, annotate_incidents=False)) == []
    with pytest.raises(ValueError, match="dashboard_uid"):
        settings(grafana, tmp_path, dashboard_uid="no/slashes")


async def test_unreachable_grafana_is_a_failed_delivery(tmp_path: Path) -> None:
    gone = make_settings(
        tmp_path,
        grafana=[{"name": "gone", "url": f"http://127.0.0.1:{free_port()}", "token": "glsa_x1"}],
    )
    (channel,) = grafana_notifiers(gone)
    try:
        with pytest.raises(RuntimeError, match="grafana:gone") as raised:
            await env_at(AT).run(NotifyActivities([channel]).notify, note("opened", "opened"))
    finally:
        await channel.aclose()
    assert "glsa_x1" not in str(raised.value)


# --- on the dev server: a Grafana outage costs a retry of Grafana alone ------------------------


class Recorder:
    name = "chat"

    def __init__(self) -> None:
        self.got: list[str] = []

    async def send(self, note: Notification) -> None:
        self.got.append(note.title)


@workflow.defn(sandboxed=False)
class NotifyOnce:
    @workflow.run
    async def run(self, note: Notification) -> int:
        return await workflow.execute_activity(
            "notify.event",
            note,
            result_type=int,
            start_to_close_timeout=timedelta(seconds=20),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=200), maximum_attempts=3
            ),
        )


async def test_a_grafana_outage_repeats_no_other_channel(
    dev_env: WorkflowEnvironment, grafana: FakeGrafana, tmp_path: Path
) -> None:
    (channel,) = grafana_notifiers(settings(grafana, tmp_path))
    chat = Recorder()
    grafana.fail_next.extend([(503, {"message": "upstream down"}, {})] * 2)
    queue = f"tq-{uuid.uuid4().hex[:10]}"
    activities = NotifyActivities([channel, chat])
    try:
        async with Worker(
            dev_env.client, task_queue=queue, workflows=[NotifyOnce], activities=[activities.notify]
        ):
            sent = await dev_env.client.execute_workflow(
                NotifyOnce.run,
                note("opened", "Incident opened: ContainerKilled on docker:lab/web"),
                id=f"notify-{uuid.uuid4().hex[:8]}",
                task_queue=queue,
            )
    finally:
        await channel.aclose()
    assert sent == 2
    assert chat.got == ["Incident opened: ContainerKilled on docker:lab/web"]  # not 3 times
    assert len(grafana.annotations) == 1
