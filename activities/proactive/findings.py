"""Findings become alerts on the normal path: fingerprinted, labelled for a target, routed.

A finding's fingerprint hashes its alert name and identifying labels, so every rerun that sees it
lands on the same ``incident-<fingerprint>`` (a signal while the incident runs, exactly like an
Alertmanager re-notification). Once that incident has closed, the finding opens a new one only
after ``repeat_interval`` (Alertmanager's repeat_interval), so an hourly forecast does not
escalate the same disk every hour. A key a run evaluated and found fine resolves its finding.
A job may make its findings into alerts itself (the daily sweeps: the fingerprint names the
problem's instance, the evidence is in the annotations); they are routed the same way, as they are.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.store import Store
from activities.store.findings import FindingRow
from core.config import Settings
from core.metrics import SCHEDULE_ROUTED
from core.models import Alert, AlertStatus
from core.redact import redact
from core.schedules import Finding, RoutedFinding, RouteRequest, RouteResult

MAX_EVIDENCE = 6000


class Routed(Protocol):
    @property
    def workflow_id(self) -> str: ...

    @property
    def action(self) -> str: ...


Route = Callable[[Alert], Awaitable[Routed]]
"""``workers.routing.AlertRouter.route``: signal-with-start of ``incident-<fingerprint>``."""


def fingerprint(alert: str, key: dict[str, str]) -> str:
    text = json.dumps([alert, sorted(key.items())], separators=(",", ":"))
    return hashlib.sha256(b"schedule\x00" + text.encode()).hexdigest()[:16]


def _key_id(key: dict[str, str]) -> str:
    return json.dumps(sorted(key.items()))


def target_labels(settings: Settings, labels: dict[str, str]) -> dict[str, str]:
    """The service a filesystem belongs to: a host's when its instance names a hosts target
    (its runbook then answers), else the Docker engine's (the default disk runbook)."""
    out = dict(labels)
    if out.get("resource_kind") != "filesystem" or out.get("homelab_service"):
        return out
    instance = out.get("instance", "")
    host = instance.rsplit(":", 1)[0]
    docker = any(instance in t.instances or host in t.instances for t in settings.docker)
    hosts = [t for t in settings.hosts if instance in t.instances or host in t.instances]
    if hosts and not docker:
        out["homelab_service"] = "hosts"
    return out


def _annotations(finding: Finding, schedule: str, run_url: str) -> dict[str, str]:
    evidence = json.dumps(redact(finding.evidence), default=str, separators=(",", ":"))
    if len(evidence) > MAX_EVIDENCE:
        evidence = evidence[:MAX_EVIDENCE] + "…"
    lines = [finding.summary] + [
        f"{k}: {v}" for k, v in finding.evidence.items() if not isinstance(v, dict | list)
    ]
    return {
        "summary": finding.summary[:1000],
        "description": "\n".join(lines)[:4000],
        "evidence": evidence,
        "schedule": schedule,
        "run_url": run_url,
    }


class FindingRouter:
    def __init__(self, settings: Settings, store: Store, client: Client, route: Route) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.send = route

    async def _running(self, workflow_id: str) -> bool:
        try:
            described = await self.client.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return False
            raise
        return described.status is WorkflowExecutionStatus.RUNNING

    async def route(self, req: RouteRequest) -> RouteResult:
        now = datetime.now(UTC)
        result = RouteResult()
        seen: set[str] = set()
        for finding in req.evaluation.findings:
            fp = fingerprint(finding.alert, finding.key)
            labels = target_labels(
                self.settings,
                {
                    **finding.labels,
                    "alertname": finding.alert,
                    "severity": finding.severity,
                    "schedule": req.schedule,
                },
            )
            annotations = _annotations(finding, req.schedule, req.run_url)
            alert = Alert(
                name=finding.alert,
                status=AlertStatus.FIRING,
                fingerprint=fp,
                labels=labels,
                annotations=annotations,
                starts_at=now,
                source="schedule",
            )
            await self._route_one(req, now, alert, finding.key, finding.summary, result)
            seen.add(fp)
        for made in req.evaluation.alerts:  # already alerts: their job's fingerprint and source
            alert = Alert.model_validate(
                {
                    **made.model_dump(),
                    "labels": {**made.labels, "schedule": req.schedule},
                    "annotations": {
                        **made.annotations,
                        "schedule": req.schedule,
                        "run_url": req.run_url,
                    },
                }
            )
            summary = made.annotations.get("summary", made.name)
            key = {"fingerprint": made.fingerprint}
            await self._route_one(req, now, alert, key, summary, result)
            seen.add(made.fingerprint)
        await self._resolve(req, seen, now, result)
        return result

    async def _route_one(
        self,
        req: RouteRequest,
        now: datetime,
        alert: Alert,
        key: dict[str, str],
        summary: str,
        result: RouteResult,
    ) -> None:
        """Signal-with-start the finding's incident, unless it closed within repeat_interval."""
        fp = alert.fingerprint
        row = await asyncio.to_thread(self.store.finding, fp)
        episode = row is not None and row.status == "firing"
        running = await self._running(f"incident-{fp}")
        recent = (
            episode
            and row is not None
            and row.last_routed is not None
            and now - row.last_routed < req.repeat_interval
        )
        first_seen = row.first_seen if episode and row is not None else now
        last_routed = row.last_routed if row is not None else None
        if not running and recent:
            result.suppressed += 1
            SCHEDULE_ROUTED.labels(req.schedule, "suppressed").inc()
        else:
            routed = await self.send(
                Alert.model_validate(
                    {
                        **alert.model_dump(),
                        "starts_at": first_seen,
                        "generator_url": req.run_url,
                        "received_at": now,
                    }
                )
            )
            kind = "renotified" if running else "opened"
            SCHEDULE_ROUTED.labels(req.schedule, kind).inc()
            result.routed.append(
                RoutedFinding(
                    fingerprint=fp,
                    workflow_id=routed.workflow_id,
                    status="firing",
                    action=routed.action if not running else "signalled",
                    summary=summary,
                )
            )
            last_routed = now
        await asyncio.to_thread(
            self.store.save_finding,
            FindingRow(
                fingerprint=fp,
                schedule=req.schedule,
                alert=alert.name,
                key=key,
                labels=alert.labels,
                status="firing",
                first_seen=first_seen,
                last_seen=now,
                last_routed=last_routed,
                resolved_at=None,
            ),
        )

    async def _resolve(
        self, req: RouteRequest, seen: set[str], now: datetime, result: RouteResult
    ) -> None:
        clear = {_key_id(k) for k in req.evaluation.clear}
        for row in await asyncio.to_thread(self.store.firing_findings, req.schedule):
            if row.fingerprint in seen or _key_id(row.key) not in clear:
                continue
            alert = Alert(
                name=row.alert,
                status=AlertStatus.RESOLVED,
                fingerprint=row.fingerprint,
                labels=row.labels,
                annotations={
                    "summary": f"no longer found by {req.schedule}",
                    "run_url": req.run_url,
                },
                starts_at=row.first_seen,
                ends_at=now,
                generator_url=req.run_url,
                source="schedule",
                received_at=now,
            )
            routed = await self.send(alert)
            SCHEDULE_ROUTED.labels(req.schedule, "resolved").inc()
            result.routed.append(
                RoutedFinding(
                    fingerprint=row.fingerprint,
                    workflow_id=routed.workflow_id,
                    status="resolved",
                    action=routed.action,
                )
            )
            await asyncio.to_thread(
                self.store.save_finding,
                FindingRow(**{**row.__dict__, "status": "resolved", "resolved_at": now}),
            )
