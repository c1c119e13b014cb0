"""Topology: a container runs on an engine, a guest on a node. When a child's incident finds its
parent not answering, the parent gets one incident of its own (a ``TargetUnreachable`` alert on
the parent, through the normal routing path, so it is deduplicated by its fingerprint and shows in
the Web UI like any incident) and the children wait for it instead of each trying to fix a piece of
a problem that has one cause.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from temporalio import activity

from core import contracts
from core.metrics import CHILDREN_WAITING
from core.models import UNREACHABLE_ALERT, Alert, AlertStatus, ParentRequest, TargetRef


def parent_alert(parent: TargetRef, reason: str) -> Alert:
    """The parent's alert: one fingerprint per parent, so every child finds the same incident."""
    fingerprint = "unreachable-" + hashlib.sha256(str(parent).encode()).hexdigest()[:24]
    return Alert(
        name=UNREACHABLE_ALERT,
        status=AlertStatus.FIRING,
        fingerprint=fingerprint,
        labels={
            "alertname": UNREACHABLE_ALERT,
            "severity": "critical",
            "service": parent.service,
            "homelab_target": parent.target,
            "homelab_source": "topology",
        },
        annotations={"summary": f"{parent} does not answer", "description": reason[:1000]},
        starts_at=datetime.now(UTC),
        source="topology",
    )


class TopologyActivities:
    def __init__(self, route: Callable[[Alert], Awaitable[Any]]) -> None:
        self.route = route

    @activity.defn(name=contracts.TOPOLOGY_OPEN_PARENT.name)
    async def open_parent(self, request: ParentRequest) -> str:
        """Start the parent's incident, or signal the running one; its workflow id."""
        routed = await self.route(parent_alert(request.parent, request.reason))
        CHILDREN_WAITING.labels(request.parent.service).inc()
        return str(routed.workflow_id)
