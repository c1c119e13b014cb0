"""The scheduled jobs' activities: evaluate, report, route findings, record the run."""

from __future__ import annotations

import asyncio
import time

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.catalog import TargetClients, ToolFailure
from activities.proactive import jobs, patterns
from activities.proactive.findings import FindingRouter, Route
from activities.store import Store
from core import contracts
from core.config import Settings
from core.metrics import (
    SCHEDULE_FINDINGS,
    SCHEDULE_LAST_SUCCESS,
    SCHEDULE_PERIOD,
    SCHEDULE_RUN_DURATION,
    SCHEDULE_RUNS,
)
from core.models import ToolErrorKind
from core.schedules import (
    AnomalyInput,
    Evaluation,
    ForecastInput,
    PatternReport,
    PatternReportInput,
    RouteRequest,
    RouteResult,
    RunRecord,
)

PERMANENT = {ToolErrorKind.INVALID, ToolErrorKind.UNAUTHORIZED, ToolErrorKind.NOT_FOUND}


def _failure(exc: ToolFailure) -> ApplicationError:
    return ApplicationError(
        exc.message, type=f"Tool{exc.kind.value.title()}", non_retryable=exc.kind in PERMANENT
    )


def publish_periods(settings: Settings) -> None:
    """The expected period of each configured schedule, and a start for the missed-run alert."""
    now = time.time()
    for name, job in settings.schedule_jobs().items():
        SCHEDULE_PERIOD.labels(name).set(job.period.total_seconds())
        SCHEDULE_LAST_SUCCESS.labels(name).set(now)


class ProactiveActivities:
    def __init__(
        self, settings: Settings, clients: TargetClients, store: Store, client: Client, route: Route
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.store = store
        self.router = FindingRouter(settings, store, client, route)

    @activity.defn(name=contracts.FORECAST_EVALUATE.name)
    async def forecast(self, inp: ForecastInput) -> Evaluation:
        try:
            return await jobs.forecast(self.clients, inp)
        except ToolFailure as exc:
            raise _failure(exc) from None

    @activity.defn(name=contracts.ANOMALIES_EVALUATE.name)
    async def anomalies(self, inp: AnomalyInput) -> Evaluation:
        try:
            return await jobs.anomalies(self.clients, inp)
        except ToolFailure as exc:
            raise _failure(exc) from None

    @activity.defn(name=contracts.PATTERNS_REPORT.name)
    async def patterns(self, inp: PatternReportInput) -> PatternReport:
        return await asyncio.to_thread(patterns.build, self.store, inp)

    @activity.defn(name=contracts.FINDINGS_ROUTE.name)
    async def route(self, req: RouteRequest) -> RouteResult:
        if not req.run_url:
            req = req.model_copy(update={"run_url": self._run_url()})
        return await self.router.route(req)

    @activity.defn(name=contracts.SCHEDULE_FINISH.name)
    async def finish(self, record: RunRecord) -> None:
        outcome = "ok" if record.ok else "failed"
        SCHEDULE_RUNS.labels(record.schedule, record.workflow, outcome).inc()
        SCHEDULE_RUN_DURATION.labels(record.schedule).observe(
            (record.finished_at - record.started_at).total_seconds()
        )
        if record.ok:
            SCHEDULE_FINDINGS.labels(record.schedule).set(record.findings)
            SCHEDULE_LAST_SUCCESS.labels(record.schedule).set(record.finished_at.timestamp())

    def _run_url(self) -> str:
        base = self.settings.temporal.web_ui()
        if not base:
            return ""
        info = activity.info()
        return (
            f"{base}/namespaces/{self.settings.temporal.namespace}/workflows/"
            f"{info.workflow_id}/{info.workflow_run_id}/history"
        )
