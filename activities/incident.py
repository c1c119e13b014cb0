"""Incident activities: triage (runbook, target, criticality), the runbook planner, verification."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.catalog import Catalog
from activities.planner import (
    ALERT_KEY,
    TARGET_KEY,
    ParamError,
    alert_evidence,
    resolve_param,
    runbook_plan,
)
from activities.runbooks import match
from activities.tools import ToolRunner
from core import contracts
from core.config import Settings
from core.expectations import check as expectation_check
from core.expectations import check_all, stable_values
from core.models import (
    UNREACHABLE_ALERT,
    Alert,
    Check,
    Evidence,
    Plan,
    PlanRequest,
    Runbook,
    TargetRef,
    ToolCall,
    ToolErrorKind,
    Triage,
    VerificationResult,
    VerifyRequest,
)

TARGET_LABELS = ("homelab_target", "engine")
INSTANCE_LABELS = ("instance", "server")  # `server`: postgres_exporter's host:port of the database


def resolve_target(
    settings: Settings, runbook: Runbook, alert: Alert
) -> tuple[TargetRef | None, list[str]]:
    """Map an alert's labels to a configured target and resource, or say why not."""
    service = runbook.service
    targets = settings.targets(service)
    labels = alert.labels
    notes: list[str] = []
    chosen = None
    named = next((labels[k] for k in TARGET_LABELS if labels.get(k)), "")
    if named:
        chosen = settings.find_target(service, named)
        if chosen is None:
            notes.append(f"no such target: no {service} target named {named!r} is configured")
            return None, notes
    else:
        instance = labels.get("instance", "")
        addresses = [labels[k] for k in INSTANCE_LABELS if labels.get(k)]
        for target in targets:
            if any(
                a in target.instances or a.rsplit(":", 1)[0] in target.instances for a in addresses
            ):
                chosen = target
                break
        if chosen is None and len(targets) == 1:
            chosen = targets[0]
        if chosen is None:
            why = (
                f"instance {instance!r}"
                + (f" / server {labels['server']!r}" if labels.get("server") else "")
                + f" matches no {service} target's `instances`"
                if targets
                else f"no {service} targets are configured"
            )
            notes.append(f"no such target: {why}")
            return None, notes
    resource = next((labels[k] for k in runbook.resource_labels if labels.get(k)), "")
    if runbook.resource_labels and not resource:
        notes.append(
            f"the alert has none of the labels {runbook.resource_labels} naming the resource"
        )
        return None, notes
    return TargetRef(service=service, target=chosen.name, resource=resource), notes


def bind_alert_params(
    runbook: Runbook, alert: Alert, target: TargetRef | None = None
) -> tuple[Runbook, list[str]]:
    """Resolve ``{from: alert.labels.X}`` and ``{template: '…{target.resource}…'}`` in diagnostics
    and checks (they run before any other evidence exists), so the workflow history holds the
    exact calls. A step of another service that cannot be bound is left out (a note, not a
    problem: it is extra evidence)."""
    source = {ALERT_KEY: alert_evidence(alert)}
    if target is not None:
        source[TARGET_KEY] = Evidence(
            key=TARGET_KEY,
            tool="triage",
            target=str(target),
            ok=True,
            data={"service": target.service, "name": target.target, "resource": target.resource},
        )
    problems: list[str] = []

    def bound(params: dict[str, Any], where: str, into: list[str]) -> dict[str, Any]:
        out = {}
        for name, spec in params.items():
            try:
                out[name] = resolve_param(spec, source)
            except ParamError as exc:
                into.append(f"{where} needs {name} from the alert: {exc}")
        return out

    diagnostics = []
    for step in runbook.diagnostics:
        optional = step.tool.split(".", 1)[0] != runbook.service
        missing: list[str] = []
        params = bound(step.params, f"diagnostic {step.key!r}", missing)
        if missing and optional:
            continue  # extra evidence this alert cannot feed
        problems.extend(missing)
        diagnostics.append(step.model_copy(update={"params": params}))
    checks = [
        check.model_copy(update={"params": bound(check.params, f"check {check.tool}", problems)})
        for check in runbook.verification.checks
    ]
    verification = runbook.verification.model_copy(update={"checks": checks})
    return runbook.model_copy(
        update={"diagnostics": diagnostics, "verification": verification}
    ), problems


class VerificationAborted(Exception):
    """An abort condition holds: the checks can no longer pass."""


def silencer(settings: Settings, alert: Alert) -> TargetRef | None:
    """Where the incident may mute its own alert: Alertmanager's alerts only."""
    if alert.source != "alertmanager":
        return None
    chosen = next((t for t in settings.alertmanager if t.silence_own_alerts), None)
    return TargetRef(service="alertmanager", target=chosen.name) if chosen else None


class IncidentActivities:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        runner: ToolRunner,
        runbooks: list[Runbook],
        site: str = "",
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.runner = runner
        self.runbooks = runbooks
        self.site = site

    @activity.defn(name=contracts.TRIAGE.name)
    async def triage(self, alert: Alert) -> Triage:
        runbook = match(self.runbooks, alert)
        settings = self.settings
        common: dict[str, Any] = {
            "severity": alert.severity,
            "approval_timeout": settings.approval.timeout,
            "approvers": list(settings.approval.approvers),
            "ui_url": self._ui_url(),
            "llm_offer": list(settings.llm.offer),
            "silencer": silencer(settings, alert),
            "site_queues": settings.site_queues(),
        }
        if runbook is None:
            return Triage(
                incident_type="unknown",
                service=alert.labels.get("service", "unknown"),
                target=None,
                critical=False,
                runbook=None,
                notes=[f"no runbook answers alert {alert.name!r}"],
                **common,
            )
        target, notes = resolve_target(settings, runbook, alert)
        if target is not None:
            if settings.site_of(target):  # its site's worker reaches it, this one does not
                notes.append(f"{target} is at site {settings.site_of(target)}")
            else:
                target, note = await self.runner.canonical(target)
                if note:
                    notes.append(note)
            runbook, problems = bind_alert_params(runbook, alert, target)
            if problems:
                notes.extend(problems)
                target = None
            else:
                runbook = self.other_services(runbook, notes)
        why = settings.critical_reason(target) if target is not None else ""
        if why:
            notes.append(why)
        parents = any(
            rb.service == runbook.service and UNREACHABLE_ALERT in rb.alerts for rb in self.runbooks
        )
        return Triage(
            incident_type=runbook.incident_type,
            service=runbook.service,
            target=target,
            parent_incidents=parents,
            critical=bool(why),
            runbook=runbook,
            notes=notes,
            **common,
        )

    def other_services(self, runbook: Runbook, notes: list[str]) -> Runbook:
        """Steps that read another service (metrics from Prometheus) get that service's target
        (``on:``, or its only one); without one configured the step is left out, with a note."""
        steps = []
        for step in runbook.diagnostics:
            service = self.catalog.get(step.tool).service
            if service == runbook.service:
                steps.append(step)
                continue
            targets = self.settings.targets(service)
            chosen = (
                self.settings.find_target(service, step.on)
                if step.on
                else (targets[0] if len(targets) == 1 else None)
            )
            if chosen is None:
                why = (
                    f"no {service} target named {step.on!r}"
                    if step.on
                    else f"{len(targets)} {service} targets and no `on:`"
                    if targets
                    else f"no {service} target is configured"
                )
                notes.append(f"diagnostic {step.key!r} ({step.tool}) left out: {why}")
                continue
            steps.append(
                step.model_copy(update={"target": TargetRef(service=service, target=chosen.name)})
            )
        return runbook.model_copy(update={"diagnostics": steps})

    def _ui_url(self) -> str:
        base = self.settings.temporal.web_ui()
        if not base:
            return ""
        info = activity.info()
        return f"{base}/namespaces/{self.settings.temporal.namespace}/workflows/{info.workflow_id}"

    @activity.defn(name=contracts.PLAN_RUNBOOK.name)
    async def plan(self, request: PlanRequest) -> Plan:
        return runbook_plan(request, self.catalog)

    async def _run_checks(
        self, target: TargetRef, checks: list[Check]
    ) -> tuple[bool, list[dict[str, Any]], list[Any]]:
        results = await asyncio.gather(
            *(
                self.runner.run(ToolCall(tool=c.tool, target=target, params=c.params))
                for c in checks
            )
        )
        ok_all = True
        report: list[dict[str, Any]] = []
        data: list[Any] = []
        for check, result in zip(checks, results, strict=True):
            if not result.ok:
                if result.error and result.error.kind is ToolErrorKind.UNAUTHORIZED:
                    # Rejected credentials do not fix themselves: polling on is a retry storm.
                    raise VerificationAborted(f"{check.tool}: {result.error.message}")
                ok_all = False
                error = result.error.message if result.error else "failed"
                report.append(
                    {"tool": check.tool, "ok": False, "summary": f"{check.tool}: {error}"}
                )
                data.append(None)
                continue
            ok, reasons = check_all(check.expect, result.data)
            doomed = [
                r for hit, r in (expectation_check(e, result.data) for e in check.abort_when) if hit
            ]
            if doomed:
                raise VerificationAborted(f"{check.tool}: " + ", ".join(doomed))
            ok_all = ok_all and ok
            report.append(
                {"tool": check.tool, "ok": ok, "summary": f"{check.tool}: " + ", ".join(reasons)}
            )
            data.append(result.data)
        return ok_all, report, data

    @activity.defn(name=contracts.VERIFY.name)
    async def verify(self, request: VerifyRequest) -> VerificationResult:
        where = self.settings.site_of(request.target)
        if where != self.site:
            raise ApplicationError(
                f"{request.target} is at {f'site {where!r}' if where else 'no site'}; this "
                f"worker serves {f'site {self.site!r}' if self.site else 'the main queue'}",
                type="ToolInvalid",
                non_retryable=True,
            )
        try:
            return await self._verify(request)
        except VerificationAborted as exc:
            return VerificationResult(passed=False, detail=f"gave up early: {exc}")

    async def _verify(self, request: VerifyRequest) -> VerificationResult:
        """Poll until every check passes, then hold for ``stable_for`` with stable values unchanged."""
        spec = request.spec
        interval = spec.interval.total_seconds()
        deadline = time.monotonic() + spec.timeout.total_seconds()
        while True:
            ok, report, data = await self._run_checks(request.target, spec.checks)
            activity.heartbeat("checking")
            if ok:
                break
            if time.monotonic() >= deadline:
                failing = "; ".join(r["summary"] for r in report if not r["ok"])
                return VerificationResult(
                    passed=False, checks=report, detail=f"not met within {spec.timeout}: {failing}"
                )
            await asyncio.sleep(interval)
        first_pass = datetime.now(UTC)
        baseline = [stable_values(c.expect, d) for c, d in zip(spec.checks, data, strict=True)]
        end = time.monotonic() + spec.stable_for.total_seconds()
        while time.monotonic() < end:
            await asyncio.sleep(min(interval, max(end - time.monotonic(), 0)))
            ok, report, data = await self._run_checks(request.target, spec.checks)
            activity.heartbeat("holding")
            current = [stable_values(c.expect, d) for c, d in zip(spec.checks, data, strict=True)]
            if not ok or current != baseline:
                changed = [
                    f"{k}: {before.get(k)!r} → {now.get(k)!r}"
                    for before, now in zip(baseline, current, strict=True)
                    for k in before
                    if before.get(k) != now.get(k)
                ]
                problems = [str(r["summary"]) for r in report if not r["ok"]] + changed
                return VerificationResult(
                    passed=False,
                    checks=report,
                    first_pass_at=first_pass,
                    detail=f"did not hold for {spec.stable_for}: " + "; ".join(problems),
                )
        return VerificationResult(
            passed=True,
            checks=report,
            first_pass_at=first_pass,
            verified_at=datetime.now(UTC),
            detail="all checks passed"
            + (f" and held for {spec.stable_for}" if spec.stable_for else ""),
        )
