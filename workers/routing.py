"""Alert → workflow routing, shared by the intake's forwarder, the Docker events watcher (through
the intake's outbox) and the scheduled findings.

Firing alerts signal-with-start ``incident-<fingerprint>``: the first notification starts the
incident, every later one signals the running one (never a second workflow). Resolved
notifications only signal; with no open incident they are acknowledged and dropped.

Each call carries a request id. Temporal keeps the ids of the signals (and the signal-with-start)
a workflow received and drops a repeat, so a caller that re-sends after not hearing back (the
forwarder after a crash between sending and recording) cannot deliver the same alert twice. The
SDK draws a random id per call, so the request is built here from the API's own messages.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import WorkflowIdConflictPolicy, WorkflowIdReusePolicy
from temporalio.api.sdk.v1 import UserMetadata
from temporalio.api.workflowservice.v1 import (
    SignalWithStartWorkflowExecutionRequest,
    SignalWorkflowExecutionRequest,
)
from temporalio.client import Client
from temporalio.converter import encode_search_attributes
from temporalio.service import RPCError, RPCStatusCode

from activities.store.problems import Owner
from core.metrics import ALERTS_RECEIVED
from core.models import Alert, AlertStatus, IncidentInput
from workflows.incident import start_attributes

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


WORKFLOW_TYPE = "IncidentWorkflow"  # @workflow.defn(name=...) of workflows/incident.py
RPC_TIMEOUT = timedelta(seconds=10)
"""A call that hears nothing back within this is retried (with the same request id)."""


def workflow_id_for(alert: Alert) -> str:
    return f"incident-{alert.fingerprint}"


def summary_for(alert: Alert) -> str:
    labels = alert.labels
    where = labels.get("container") or labels.get("name") or labels.get("instance", "")
    return f"{alert.name} {where}".strip()


class AlertRouter:
    """``owner_of(fingerprint)``: the open incident an alert joined (one incident per problem),
    so a joined alert's resolved notification reaches the incident that owns its problem."""

    def __init__(
        self,
        client: Client,
        task_queue: str,
        owner_of: Callable[[str], Owner | None] | None = None,
    ) -> None:
        self.client = client
        self.task_queue = task_queue
        self.owner_of = owner_of

    async def route(self, alert: Alert, request_id: str | None = None) -> Routed:
        """Deliver one alert; ``request_id`` makes a repeat of the same delivery a no-op."""
        wid = workflow_id_for(alert)
        rid = request_id or str(uuid.uuid4())
        try:
            if alert.status is AlertStatus.FIRING:
                run_id = await self._signal_with_start(alert, wid, rid)
                result = Routed(
                    fingerprint=alert.fingerprint,
                    alertname=alert.name,
                    status=alert.status,
                    workflow_id=wid,
                    run_id=run_id,
                    action="signal-with-start",
                )
            else:
                try:
                    await self._signal(alert, wid, rid)
                    action: Literal["signalled", "no-open-incident"] = "signalled"
                except RPCError as err:
                    if err.status is not RPCStatusCode.NOT_FOUND:
                        raise
                    action = "no-open-incident"
                    owner = await self._owner(alert)
                    if owner and owner != wid:
                        try:
                            await self._signal(alert, owner, rid)
                            wid, action = owner, "signalled"
                        except RPCError as again:
                            if again.status is not RPCStatusCode.NOT_FOUND:
                                raise
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
        except RuntimeError as err:  # a lazy client that cannot connect yet
            ALERTS_RECEIVED.labels(alert.source, alert.status.value, "unavailable").inc()
            raise TemporalUnavailable(
                f"Temporal did not accept alert {alert.fingerprint}: {err}"
            ) from err
        ALERTS_RECEIVED.labels(alert.source, alert.status.value, result.action).inc()
        return result

    async def _owner(self, alert: Alert) -> str:
        """The running incident this alert's problem belongs to, if it joined one."""
        if self.owner_of is None:
            return ""
        owner = await asyncio.to_thread(self.owner_of, alert.fingerprint)
        return owner.workflow_id if owner else ""

    async def _signal_with_start(self, alert: Alert, wid: str, request_id: str) -> str:
        """``start_workflow(IncidentWorkflow.run, ..., start_signal="alert")`` with our id."""
        converter = self.client.data_converter
        req = SignalWithStartWorkflowExecutionRequest(
            namespace=self.client.namespace,
            workflow_id=wid,
            identity=self.client.identity,
            request_id=request_id,
            signal_name="alert",
            workflow_id_reuse_policy=WorkflowIdReusePolicy.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
            workflow_id_conflict_policy=WorkflowIdConflictPolicy.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
        )
        req.workflow_type.name = WORKFLOW_TYPE
        req.task_queue.name = self.task_queue
        req.input.payloads.extend(await converter.encode([IncidentInput(alert=alert)]))
        req.signal_input.payloads.extend(await converter.encode([alert]))
        encode_search_attributes(start_attributes(alert), req.search_attributes)
        req.user_metadata.CopyFrom(
            UserMetadata(summary=(await converter.encode([summary_for(alert)]))[0])
        )
        response = await self.client.workflow_service.signal_with_start_workflow_execution(
            req, retry=True, timeout=RPC_TIMEOUT
        )
        return response.run_id

    async def _signal(self, alert: Alert, wid: str, request_id: str) -> None:
        req = SignalWorkflowExecutionRequest(
            namespace=self.client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=wid),
            signal_name="alert",
            identity=self.client.identity,
            request_id=request_id,
        )
        req.input.payloads.extend(await self.client.data_converter.encode([alert]))
        await self.client.workflow_service.signal_workflow_execution(
            req, retry=True, timeout=RPC_TIMEOUT
        )
