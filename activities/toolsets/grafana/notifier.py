"""Incident annotations: every incident's steps on the user's own Grafana dashboards.

A notification channel (``activities.notify.Notifier``) like the Telegram one, so the workflow's
one stream of notifications is all it takes: each notification of a kind worth a mark on a graph
becomes one annotation, written by the toolset's own ``annotate`` (same client, same tags, same
lookup before writing).

Retries never duplicate: the annotation's time is when the workflow first scheduled the
``notify.event`` activity (``activity.info().scheduled_time``, the same on every attempt), so a
retried delivery finds the annotation it wrote (same time, tags and text) instead of adding one.
"""

from __future__ import annotations

import html
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from temporalio import activity

from activities.catalog import TargetClients, ToolContext, call_maybe_async
from activities.toolsets.grafana.annotations import AnnotateParams, annotate
from core.config import Settings
from core.models import Notification, TargetRef
from core.redact import redact_text
from core.targets import GrafanaTarget

ANNOTATED = frozenset(
    {
        "opened",
        "approval",
        "approval_closed",
        "action",
        "verification",
        "rollback",
        "resolved",
        "escalated",
    }
)
"""Every kind but ``plan``: the plan's actions get their own annotation when they run."""

BASE_TAG = "homelab-agents"
TEXT_LIMIT = 2000  # AnnotateParams.text
LINE_LIMIT = 400

AlertOf = Callable[[str], Awaitable[str | None]]
"""The alert name an incident (workflow id) was opened for, when it can be known."""


def tag(value: str) -> str:
    """A valid Grafana tag (no commas, no leading space, at most 100 characters)."""
    return re.sub(r"[,\s]+", "_", value.strip())[:100]


def annotation_text(note: Notification) -> str:
    """Title (bold), each line, and the Web UI link: redacted, HTML-escaped (Grafana renders
    sanitized HTML in the tooltip), within Grafana's text limit."""

    def clip(text: str) -> str:
        text = redact_text(text)
        return text if len(text) <= LINE_LIMIT else text[: LINE_LIMIT - 1] + "…"

    link = (
        f'<a href="{html.escape(note.ui_url, quote=True)}">incident in the Temporal Web UI</a>'
        if note.ui_url.startswith(("http://", "https://"))
        else ""
    )
    parts = [f"<b>{html.escape(clip(note.title))}</b>"]
    budget = TEXT_LIMIT - len(parts[0]) - len(link) - 20
    for line in note.lines:
        escaped = html.escape(clip(line))
        if len(escaped) + 4 > budget:
            parts.append("…")
            break
        parts.append(escaped)
        budget -= len(escaped) + 4
    if link:
        parts.append(link)
    return "<br>".join(parts)


def notification_time_ms() -> int:
    """When the workflow first scheduled this delivery (stable across retries), else now."""
    if activity.in_activity():
        return int(activity.info().scheduled_time.timestamp() * 1000)
    return int(time.time() * 1000)


class GrafanaAnnotations:
    """`activities.notify.Notifier` writing annotations to one Grafana target."""

    def __init__(self, settings: Settings, target: str, alert_of: AlertOf | None = None) -> None:
        found = settings.find_target("grafana", target)
        if not isinstance(found, GrafanaTarget):
            raise ValueError(f"no grafana target named {target!r}")
        self.target = found
        self.name = f"grafana:{found.name}"
        self.clients = TargetClients(settings)
        self.alert_of = alert_of
        self._alerts: OrderedDict[str, str | None] = OrderedDict()

    async def _alert(self, workflow_id: str) -> str | None:
        """Looked up once per incident (a failed lookup raises, so a retry has the same tags)."""
        if self.alert_of is None:
            return None
        if workflow_id not in self._alerts:
            self._alerts[workflow_id] = await self.alert_of(workflow_id)
            while len(self._alerts) > 256:
                self._alerts.popitem(last=False)
        return self._alerts[workflow_id]

    async def tags(self, note: Notification) -> list[str]:
        alert = await self._alert(note.workflow_id)
        candidates = [
            BASE_TAG,
            f"incident:{note.workflow_id}",
            f"kind:{note.kind}",
            f"alert:{alert}" if alert else "",
            f"severity:{note.severity}" if note.severity else "",
        ]
        return [tag(c) for c in candidates if c and tag(c)]

    async def send(self, note: Notification) -> None:
        if note.kind not in ANNOTATED:
            return
        params = AnnotateParams(
            text=annotation_text(note),
            tags=await self.tags(note),
            time_ms=notification_time_ms(),
            dashboard_uid=self.target.dashboard_uid,
        )
        ctx = ToolContext(
            ref=TargetRef(service="grafana", target=self.target.name),
            params=params,
            clients=self.clients,
            incident_id=note.incident_id,
        )
        await call_maybe_async(annotate, ctx)

    async def aclose(self) -> None:
        await self.clients.aclose()


def grafana_notifiers(
    settings: Settings, alert_of: AlertOf | None = None
) -> list[GrafanaAnnotations]:
    """One channel per Grafana target with ``annotate_incidents`` (the default)."""
    return [
        GrafanaAnnotations(settings, target.name, alert_of)
        for target in settings.grafana
        if target.annotate_incidents
    ]
