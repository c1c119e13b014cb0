"""Running scheduled jobs in tests: a schedule triggered now and its run awaited, the incidents a
task queue has on the server, and a sweep schedule run end to end by the real worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from temporalio.client import Client, ScheduleHandle
from temporalio.testing import WorkflowEnvironment

from activities.catalog import TargetClients
from activities.sweeps import Sweeper
from activities.tools import ToolRunner
from activities.toolsets import default_catalog
from core.config import Settings
from core.models import Alert, IncidentState
from core.schedules import ScheduleRunResult
from tests.conftest import make_settings
from workers.schedules import apply, list_schedules, schedule_id
from workers.worker import build_components, build_site_worker, build_worker


async def run_once(client: Client, handle: ScheduleHandle) -> tuple[str, ScheduleRunResult]:
    """Trigger the schedule now and wait for that run's result."""
    before = len((await handle.describe()).info.recent_actions)
    await handle.trigger()
    for _ in range(300):
        actions = (await handle.describe()).info.recent_actions
        if len(actions) > before:
            action: Any = sorted(actions, key=lambda a: a.started_at)[-1].action
            run = client.get_workflow_handle(
                action.workflow_id,
                run_id=action.first_execution_run_id,
                result_type=ScheduleRunResult,
            )
            return action.workflow_id, await asyncio.wait_for(run.result(), 120)
        await asyncio.sleep(0.2)
    raise AssertionError("the triggered run never started")


async def incident_runs(client: Client, task_queue: str) -> list[str]:
    """The workflow id of every incident run on this task queue (one entry per run)."""
    query = f"TaskQueue = '{task_queue}' AND WorkflowType = 'IncidentWorkflow'"
    return sorted([w.id async for w in client.list_workflows(query)])


async def settled_incident_runs(client: Client, task_queue: str, count: int) -> list[str]:
    """``incident_runs`` once visibility (eventually consistent) shows at least ``count``."""
    deadline = time.monotonic() + 20
    runs = await incident_runs(client, task_queue)
    while len(runs) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        runs = await incident_runs(client, task_queue)
    return runs


def settings_on(env: WorkflowEnvironment, tmp: Path, task_queue: str, **sections: Any) -> Settings:
    """Settings for a worker on the session's dev server (no metrics port, a Web UI for run
    links); ``sections`` as ``make_settings`` takes them."""
    return make_settings(
        tmp,
        task_queue,
        temporal={
            "address": env.client.service_client.config.target_host,
            "state_dir": str(tmp / "state"),
            "ui_url": "http://127.0.0.1:8233",
        },
        worker={"metrics_port": 0},
        **sections,
    )


@dataclass
class SweepRuns:
    """Two triggered runs of a sweep schedule: what they returned and the incidents they left."""

    applied: Mapping[str, str]
    listed: dict[str, Any]
    expected: list[Alert]
    run_id: str
    first: ScheduleRunResult
    second: ScheduleRunResult
    states: dict[str, IncidentState] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)


async def sweep_twice(
    env: WorkflowEnvironment,
    settings: Settings,
    schedule: str,
    sweep: Literal["certificates", "backups"],
    served: list[str] | None = None,
) -> SweepRuns:
    """Apply the config's schedules, then with the real workers (the main one, and one for each
    site ``served``, default all): trigger ``schedule``, wait for every incident it opened,
    trigger it again. ``expected``: what the sweep itself finds on the served sites."""
    client = env.client
    applied = {a.name: a.action for a in await apply(client, settings)}
    listed = {r.name: r for r in await list_schedules(client, settings)}
    sites = settings.sites() if served is None else served
    clients = TargetClients(settings)
    expected: list[Alert] = []
    try:
        for site in ["", *sites]:
            sweeper = Sweeper(settings, ToolRunner(default_catalog(), clients), site)
            expected += await {"certificates": sweeper.certificates, "backups": sweeper.backups}[
                sweep
            ]()
    finally:
        await clients.aclose()
    parts = build_components(settings)
    workers = [build_worker(client, parts)]
    workers += [build_site_worker(client, parts, site) for site in sites]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        handle = client.get_schedule_handle(schedule_id(settings, schedule))
        run_id, first = await run_once(client, handle)
        states = {}
        for routed in first.routed:
            incident = client.get_workflow_handle(routed.workflow_id, result_type=IncidentState)
            states[routed.workflow_id] = await asyncio.wait_for(incident.result(), 60)
        _, second = await run_once(client, handle)
        runs = await settled_incident_runs(client, settings.temporal.task_queue, len(states))
    finally:
        for worker in workers:
            await worker.shutdown()
        await asyncio.gather(*tasks)
        parts.close()
        await apply(client, settings.model_copy(update={"schedules": {}}))  # no cron run later
    return SweepRuns(applied, listed, expected, run_id, first, second, states, runs)
