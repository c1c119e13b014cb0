"""Incident notifications: a structured log line always, plus every configured channel.

Delivery is best-effort by design: the workflow calls this with a short retry policy and carries on
if it still fails, so a chat outage never holds an incident up.
"""

from __future__ import annotations

import logging
from typing import Protocol

from temporalio import activity

from core import contracts
from core.metrics import NOTIFICATIONS
from core.models import Notification
from core.redact import redact_text

log = logging.getLogger("homelab.incidents")


class Notifier(Protocol):
    name: str

    async def send(self, note: Notification) -> None: ...


class NotifyActivities:
    def __init__(self, channels: list[Notifier]) -> None:
        self.channels = channels

    @activity.defn(name=contracts.NOTIFY.name)
    async def notify(self, note: Notification) -> int:
        """Log the event, deliver it to every channel; raise (to retry) if a channel failed.

        Each channel that took the event is recorded as heartbeat details, which Temporal hands
        to the next attempt: a retry goes only to the channels that failed, so a Grafana outage
        does not repeat every chat message."""
        info = activity.info()
        delivered: list[str] = list(info.heartbeat_details[0]) if info.heartbeat_details else []
        if info.attempt == 1:
            log.info(
                "%s %s: %s%s",
                note.workflow_id,
                note.kind,
                redact_text(note.title),
                "".join(f"\n  {redact_text(line)}" for line in note.lines),
            )
        failures = []
        for channel in self.channels:
            if channel.name in delivered:
                continue
            try:
                await channel.send(note)
                NOTIFICATIONS.labels(channel.name, "ok").inc()
                delivered.append(channel.name)
                activity.heartbeat(list(delivered))
            except Exception as exc:
                NOTIFICATIONS.labels(channel.name, "error").inc()
                failures.append(f"{channel.name}: {exc}")
        if failures:
            raise RuntimeError("; ".join(failures))
        return len(self.channels)
