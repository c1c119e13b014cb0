"""Alert → workflow routing, shared by the HTTP intake and the Docker events watcher.

Firing alerts signal-with-start ``incident-<fingerprint>``: the first notification starts the
incident, every re-notification signals the running one (never a second workflow). Resolved
notifications only signal; with no open incident they are acknowledged and dropped.
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import BaseModel
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from core.metrics import ALERTS_RECEIVED
from core.models import Alert, AlertStatus, IncidentInput
from workflows.incident import IncidentWorkflow, start_attributes

log = logging.getLogger(__name__)


class TemporalUnavailable(Exception):
    """Temporal could not take the alert; the sender should retry (HTTP 503)."""


class AlertRefused(Exception):
    """Temporal refused this one alert (e.g. an attribute it will not store): retrying cannot
    help, so the alert is rejected alone and the rest of its group is still routed."""


TRANSIENT = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.ABORTED,
    RPCStatusCode.CANCELLED,
    RPCStatusCode.UNKNOWN,
    RPCStatusCode.INTERNAL,
}


class Routed(BaseModel):
    fingerprint: str
    alertname: str
    status: AlertStatus
    workflow_id: str
    run_id: str = ""
    action: Literal["signal-with-start", "signalled", "no-open-incident"]


def workflow_id_for(alert: Alert) -> str:
    return f"incident-{alert.fingerprint}"


class AlertRouter:
    def __init__(self, client: Client, task_queue: str) -> None:
        self.client = client
        self.task_queue = task_queue

    async def route(self, alert: Alert) -> Routed:
        wid = workflow_id_for(alert)
        try:
            if alert.status is AlertStatus.FIRING:
                handle = await self.client.start_workflow(
                    IncidentWorkflow.run,
                    IncidentInput(alert=alert),
                    id=wid,
                    task_queue=self.task_queue,
                    start_signal="alert",
                    start_signal_args=[alert],
                    search_attributes=start_attributes(alert),
                    static_summary=f"{alert.name} {alert.labels.get('container') or alert.labels.get('instance', '')}".strip(),
                )
                result = Routed(
                    fingerprint=alert.fingerprint,
                    alertname=alert.name,
                    status=alert.status,
                    workflow_id=wid,
                    run_id=handle.result_run_id or "",
                    action="signal-with-start",
                )
            else:
                try:
                    await self.client.get_workflow_handle(wid).signal("alert", alert)
                    action: Literal["signalled", "no-open-incident"] = "signalled"
                except RPCError as err:
                    if err.status is not RPCStatusCode.NOT_FOUND:
                        raise
                    action = "no-open-incident"
                result = Routed(
                    fingerprint=alert.fingerprint,
                    alertname=alert.name,
                    status=alert.status,
                    workflow_id=wid,
                    action=action,
                )
        except RPCError as err:
            if err.status not in TRANSIENT:
                ALERTS_RECEIVED.labels(alert.source, alert.status.value, "refused").inc()
                raise AlertRefused(
                    f"Temporal refused alert {alert.fingerprint} ({err.status.name}): {err}"
                ) from err
            ALERTS_RECEIVED.labels(alert.source, alert.status.value, "unavailable").inc()
            raise TemporalUnavailable(
                f"Temporal did not accept alert {alert.fingerprint}: {err}"
            ) from err
        ALERTS_RECEIVED.labels(alert.source, alert.status.value, result.action).inc()
        return result
