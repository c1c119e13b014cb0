"""The Temporal worker: every workflow, and every activity wired to its dependencies."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.catalog import Catalog, TargetClients
from activities.incident import IncidentActivities
from activities.llm import LLMActivities
from activities.locks import LockActivities
from activities.memory.activities import MemoryActivities
from activities.notify import Notifier, NotifyActivities
from activities.proactive.activities import ProactiveActivities
from activities.problems import ProblemActivities
from activities.records import RecordActivities
from activities.runbooks import load_runbooks
from activities.store import Store
from activities.sweeps import SweepActivities
from activities.tools import ToolActivities, ToolRunner
from activities.toolsets import default_catalog
from activities.topology import TopologyActivities
from approval.gate import DecisionVerifier, PolicyActivities
from core.config import Settings
from workers.routing import AlertRouter
from workflows.incident import IncidentWorkflow
from workflows.rollback import RollbackWorkflow
from workflows.scheduled.anomalies import AnomalyWorkflow
from workflows.scheduled.forecast import ForecastWorkflow
from workflows.scheduled.patterns import PatternReportWorkflow
from workflows.scheduled.sweep import SweepWorkflow
from workflows.target_lock import TargetLockWorkflow

log = logging.getLogger(__name__)

WORKFLOWS: list[type] = [
    IncidentWorkflow,
    RollbackWorkflow,
    TargetLockWorkflow,
    ForecastWorkflow,
    AnomalyWorkflow,
    PatternReportWorkflow,
    SweepWorkflow,
]


@dataclass
class Components:
    """What a worker process holds for its lifetime (closed on shutdown)."""

    settings: Settings
    catalog: Catalog
    clients: TargetClients
    store: Store
    notifiers: list[Notifier] = field(default_factory=list)

    def close(self) -> None:
        self.clients.close()
        self.store.close()

    async def aclose(self) -> None:
        """Like ``close``, awaiting async clients (PostgreSQL pools) on the worker's loop."""
        await self.clients.aclose()
        self.store.close()


def build_components(settings: Settings, notifiers: list[Notifier] | None = None) -> Components:
    store = Store(settings.store_url)
    store.migrate()
    return Components(
        settings=settings,
        catalog=default_catalog(),
        clients=TargetClients(settings),
        store=store,
        notifiers=list(notifiers or []),
    )


def activities_for(client: Client, parts: Components) -> list[Callable[..., Any]]:
    settings = parts.settings
    runner = ToolRunner(parts.catalog, parts.clients)
    runbooks = load_runbooks(parts.catalog, settings.runbook_dirs)
    incident = IncidentActivities(settings, parts.catalog, runner, runbooks)
    llm = LLMActivities(settings, parts.catalog, parts.store)
    records = RecordActivities(parts.store, settings.memory)
    policy = PolicyActivities(
        settings,
        parts.store.count_recent_writes,
        parts.store.learned_policy,
        paused=lambda: bool(parts.store.paused()["paused"]),
        lock_holds=parts.store.lock_holds,
    )
    verifier = DecisionVerifier(settings)
    locks = LockActivities(client, parts.store)
    notify = NotifyActivities(parts.notifiers)
    router = AlertRouter(client, settings.temporal.task_queue, parts.store.owner_of_alert)
    proactive = ProactiveActivities(settings, parts.clients, parts.store, client, router.route)
    memory = MemoryActivities(settings, parts.store)
    problems = ProblemActivities(client, parts.store)
    topology = TopologyActivities(router.route)
    sweeps = SweepActivities(settings, runner)
    return [
        *ToolActivities(runner, "", settings.site_of).all(),
        incident.triage,
        incident.plan,
        llm.route,
        llm.plan,
        incident.verify,
        records.record_change,
        records.get_change,
        records.record_approval,
        records.record_incident,
        records.paused,
        policy.evaluate,
        policy.admit,
        verifier.verify,
        locks.take,
        locks.release,
        locks.check,
        locks.acquire,
        notify.notify,
        proactive.forecast,
        proactive.anomalies,
        proactive.patterns,
        proactive.route,
        proactive.finish,
        sweeps.certificates,
        sweeps.backups,
        memory.remember,
        memory.recall,
        memory.flapping,
        problems.claim,
        problems.release,
        topology.open_parent,
    ]


def build_site_worker(client: Client, parts: Components, site: str) -> Worker:
    """A site's worker: only the activities that touch targets (tools, ``tool.prepare``,
    ``incident.verify``, the sweeps), only for its own site's targets, on the site's own task
    queue."""
    settings = parts.settings
    runner = ToolRunner(parts.catalog, parts.clients)
    runbooks = load_runbooks(parts.catalog, settings.runbook_dirs)
    incident = IncidentActivities(settings, parts.catalog, runner, runbooks, site=site)
    sweeps = SweepActivities(settings, runner, site)
    return Worker(
        client,
        task_queue=settings.site_queue(site),
        activities=[
            *ToolActivities(runner, site, settings.site_of).all(),
            incident.verify,
            sweeps.certificates,
            sweeps.backups,
        ],
        max_concurrent_activities=settings.worker.max_concurrent_activities,
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


def build_worker(client: Client, parts: Components, **overrides: Any) -> Worker:
    settings = parts.settings
    kwargs: dict[str, Any] = {
        "task_queue": settings.temporal.task_queue,
        "workflows": WORKFLOWS,
        "activities": activities_for(client, parts),
        "max_concurrent_activities": settings.worker.max_concurrent_activities,
        "graceful_shutdown_timeout": timedelta(seconds=10),
    }
    kwargs.update(overrides)
    return Worker(client, **kwargs)
