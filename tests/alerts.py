"""The one place tests make alerts: as the workflow sees them (``Alert``) and as Alertmanager posts
them (webhook v4 JSON)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from core.models import Alert, AlertStatus

STARTS = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


def make_alert(
    name: str = "ContainerKilled",
    *,
    fingerprint: str | None = None,
    status: AlertStatus = AlertStatus.FIRING,
    severity: str = "warning",
    starts_at: datetime = STARTS,
    **labels: str,
) -> Alert:
    """An alert for workflow and unit tests; by default a container `web` dying on engine `lab`."""
    if name.startswith("Container") and not labels:
        labels = {"container": "web", "engine": "lab"}
    return Alert(
        name=name,
        status=status,
        fingerprint=fingerprint or uuid.uuid4().hex[:16],
        labels={"alertname": name, "severity": severity, **labels},
        starts_at=starts_at,
    )


def webhook_alert(
    name: str,
    *,
    status: str = "firing",
    fingerprint: str | None = None,
    severity: str = "warning",
    annotations: dict[str, str] | None = None,
    **labels: str,
) -> dict[str, Any]:
    """One element of an Alertmanager webhook's ``alerts``."""
    return {
        "status": status,
        "labels": {"alertname": name, "severity": severity, **labels},
        "annotations": annotations if annotations is not None else {"summary": name},
        "startsAt": datetime.now(UTC).isoformat(),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": fingerprint or uuid.uuid4().hex[:16],
    }


def webhook(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    """An Alertmanager webhook v4 body."""
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
