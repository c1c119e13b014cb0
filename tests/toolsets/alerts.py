"""Posting one Alertmanager alert to a running stack and waiting for its incident to close."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from core.models import IncidentState
from tests.integration.stack import Stack, alertmanager_payload


def am(name: str, **labels: str) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {"alertname": name, "severity": "warning", **labels},
        "annotations": {"summary": name},
        "startsAt": datetime.now(UTC).isoformat(),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": uuid.uuid4().hex[:16],
    }


async def post(stack: Stack, name: str, **labels: str) -> str:
    """The incident's workflow id."""
    alert = am(name, **labels)
    response = await stack.post(alertmanager_payload(alert))
    assert response.status_code == 202, response.text
    return f"incident-{alert['fingerprint']}"


async def incident(stack: Stack, name: str, timeout: float = 120, **labels: str) -> IncidentState:
    """Post the alert and return the closed incident."""
    return await stack.result(await post(stack, name, **labels), timeout)


def evidence(state: IncidentState, key: str) -> dict[str, Any]:
    found = next(e for e in state.evidence if e.key == key)
    assert found.ok, found.error
    return found.data
