"""The config's ``schedules:`` kept on Temporal as Schedules: apply (create, update, delete), list.

Schedules are Temporal's own (not ``cron_schedule``): visible, pausable, backfillable and
triggerable in the Web UI and with ``temporal schedule``. A schedule's id is
``<task queue>-<name>``; its memo marks it as this deployment's, so ``apply`` deletes exactly the
ones of this task queue that the config no longer names. The definition's hash travels in the
action's memo: an unchanged schedule is not updated, and an update keeps whatever pause a user
set in the Web UI or CLI.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowExecutionStatus,
)
from temporalio.service import RPCError, RPCStatusCode

from core.config import Settings
from core.schedules import SCHEDULED_INPUTS, ScheduleJob
from core.units import human_duration

MANAGED = "homelab_agents_task_queue"
HASH = "homelab_schedule_hash"


class Applied(BaseModel):
    name: str
    schedule_id: str
    action: Literal["created", "updated", "unchanged", "deleted"]


class ScheduleRow(BaseModel):
    name: str
    schedule_id: str
    workflow: str
    spec: str
    paused: bool
    note: str = ""
    next_runs: list[datetime]
    last_run: str = ""
    last_started: datetime | None = None
    last_status: str = ""
    last_result: dict[str, Any] | None = None
    in_config: bool = True


def schedule_id(settings: Settings, name: str) -> str:
    return f"{settings.temporal.task_queue}-{name}"


def describe_spec(job: ScheduleJob) -> str:
    def d(value: Any) -> str:
        return human_duration(value.total_seconds())

    when = f"every {d(job.every)}" if job.every else "cron " + " | ".join(job.cron)
    return f"{when}, jitter {d(job.jitter)}, catch-up {d(job.catchup_window)}, overlap skip"


def _definition_hash(settings: Settings, name: str, job: ScheduleJob) -> str:
    text = json.dumps(
        {"task_queue": settings.temporal.task_queue, "job": job.model_dump(mode="json")},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def build(settings: Settings, name: str, job: ScheduleJob) -> Schedule:
    inp = SCHEDULED_INPUTS[job.workflow].model_validate({**job.input, "schedule": name})
    sid = schedule_id(settings, name)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            job.workflow,
            inp,
            id=sid,
            task_queue=settings.temporal.task_queue,
            execution_timeout=job.run_timeout,
            memo={HASH: _definition_hash(settings, name, job)},
            static_summary=f"scheduled {name}",
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=job.every, offset=job.offset)]
            if job.every
            else [],
            cron_expressions=list(job.cron),
            jitter=job.jitter,
        ),
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP, catchup_window=job.catchup_window
        ),
        state=ScheduleState(paused=job.paused, note=job.note or f"homelab-agents: {name}"),
    )


async def _ours(client: Client, settings: Settings) -> dict[str, str]:
    """schedule id → name, for this deployment's schedules on the server."""
    out: dict[str, str] = {}
    prefix = f"{settings.temporal.task_queue}-"
    async for entry in await client.list_schedules():
        if not entry.id.startswith(prefix):
            continue
        memo = await entry.memo()
        if memo.get(MANAGED) == settings.temporal.task_queue:
            out[entry.id] = entry.id[len(prefix) :]
    return out


async def _action_hash(client: Client, schedule: Schedule) -> str:
    action = schedule.action
    if not isinstance(action, ScheduleActionStartWorkflow) or not action.memo:
        return ""
    raw = action.memo.get(HASH)
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw
    decoded = client.data_converter.payload_converter.from_payloads([raw])
    return str(decoded[0]) if decoded else ""


async def apply(client: Client, settings: Settings, *, delete: bool = True) -> list[Applied]:
    """Create what is missing, update what changed, delete what the config dropped."""
    jobs = settings.schedule_jobs()
    results: list[Applied] = []
    for name, job in jobs.items():
        sid = schedule_id(settings, name)
        desired = build(settings, name, job)
        try:
            await client.create_schedule(sid, desired, memo={MANAGED: settings.temporal.task_queue})
            results.append(Applied(name=name, schedule_id=sid, action="created"))
            continue
        except ScheduleAlreadyRunningError:
            pass
        handle = client.get_schedule_handle(sid)
        current = await handle.describe()
        if await _action_hash(client, current.schedule) == _definition_hash(settings, name, job):
            results.append(Applied(name=name, schedule_id=sid, action="unchanged"))
            continue

        def update(inp: ScheduleUpdateInput, desired: Schedule = desired) -> ScheduleUpdate:
            state = inp.description.schedule.state  # a user's pause and note are kept
            desired.state = ScheduleState(paused=state.paused, note=state.note)
            return ScheduleUpdate(schedule=desired)

        await handle.update(update)
        results.append(Applied(name=name, schedule_id=sid, action="updated"))
    if delete:
        wanted = {schedule_id(settings, name) for name in jobs}
        for sid, name in (await _ours(client, settings)).items():
            if sid in wanted:
                continue
            try:
                await client.get_schedule_handle(sid).delete()
            except RPCError as err:
                if err.status is not RPCStatusCode.NOT_FOUND:
                    raise
            results.append(Applied(name=name, schedule_id=sid, action="deleted"))
    return results


async def _last_result(client: Client, workflow_id: str, run_id: str) -> tuple[str, Any]:
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    try:
        described = await handle.describe()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return "unknown", None
        raise
    status = described.status.name.lower() if described.status else "unknown"
    if described.status is not WorkflowExecutionStatus.COMPLETED:
        return status, None
    try:
        result = await handle.result()
    except Exception:  # a result that cannot be read is shown as missing
        return status, None
    return status, result.model_dump(mode="json") if isinstance(result, BaseModel) else result


async def list_schedules(client: Client, settings: Settings) -> list[ScheduleRow]:
    """Each of this deployment's schedules: spec, next runs, last run and its result."""
    jobs = settings.schedule_jobs()
    ids = await _ours(client, settings)
    for name in jobs:
        ids.setdefault(schedule_id(settings, name), name)
    rows: list[ScheduleRow] = []
    for sid, name in sorted(ids.items(), key=lambda item: item[1]):
        try:
            described = await client.get_schedule_handle(sid).describe()
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                continue  # in the config, not applied yet
            raise
        action = described.schedule.action
        job = jobs.get(name)
        row = ScheduleRow(
            name=name,
            schedule_id=sid,
            workflow=action.workflow if isinstance(action, ScheduleActionStartWorkflow) else "",
            spec=describe_spec(job) if job else "(not in the config: deleted on the next apply)",
            paused=described.schedule.state.paused,
            note=described.schedule.state.note or "",
            next_runs=list(described.info.next_action_times[:3]),
            in_config=job is not None,
        )
        recent = sorted(described.info.recent_actions, key=lambda a: a.started_at)
        if recent:
            last = recent[-1]
            execution = last.action
            wid = getattr(execution, "workflow_id", "")
            run = getattr(execution, "first_execution_run_id", "")
            row.last_run = wid
            row.last_started = last.started_at
            row.last_status, row.last_result = await _last_result(client, wid, run)
        rows.append(row)
    return rows
