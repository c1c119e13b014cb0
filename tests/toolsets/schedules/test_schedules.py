"""The proactive side end to end on the dev server: schedules applied from the config (twice,
nothing duplicated), the real forecast workflow triggered on a real Prometheus holding backfilled
history, its findings opening PredictedExhaustion incidents on the normal path (and not again on
a rerun), a forecast out of the horizon resolving its finding, a user's pause kept by apply."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.testing import WorkflowEnvironment

from core.config import Settings
from core.models import IncidentState, Outcome
from tests.conftest import make_settings
from tests.integration.stack import target_host
from tests.schedules import run_once
from tests.toolsets.schedules.conftest import History
from workers.schedules import apply, list_schedules, schedule_id
from workers.worker import build_components, build_worker

DAY = 86400.0


def settings_for(
    env: WorkflowEnvironment, history: History, tmp: Path, task_queue: str, **schedules: Any
) -> Settings:
    return make_settings(
        tmp,
        task_queue,
        temporal={
            "address": target_host(env),
            "state_dir": str(tmp / "state"),
            "ui_url": "http://127.0.0.1:8233",
        },
        prometheus=[{"name": "history", "url": history.prometheus.url}],
        docker=[{"name": "lab", "url": "unix:///nonexistent.sock", "instances": ["nas:9100"]}],
        worker={"metrics_port": 0},
        schedules=schedules,
    )


def forecast_job(history: History, horizon_days: float) -> dict[str, Any]:
    at = datetime.fromtimestamp(history.end, UTC).isoformat()
    return {
        "workflow": "ForecastWorkflow",
        "every": "1h",
        "input": {"at": at, "horizon": f"{horizon_days * 24:.0f}h"},
    }


def mount(history: History, fp_summary: str) -> str:
    return next(c.name for c in history.cases if f"/srv/{c.name} " in fp_summary)


async def test_forecast_schedule_opens_and_resolves_incidents(
    dev_env: WorkflowEnvironment, history: History, tmp_path: Path, task_queue: str
) -> None:
    client = dev_env.client
    truth = {c.name: c.true_eta(history.end, 0.9) for c in history.cases}
    wide, narrow = 10.6, 9.0
    expected_wide = {n for n, eta in truth.items() if eta is not None and eta <= wide * DAY}
    expected_narrow = {n for n, eta in truth.items() if eta is not None and eta <= narrow * DAY}
    assert expected_narrow < expected_wide  # the set moves between the two horizons

    settings = settings_for(
        dev_env,
        history,
        tmp_path,
        task_queue,
        forecast=forecast_job(history, wide),
        patterns={
            "workflow": "PatternReportWorkflow",
            "cron": "0 7 * * 1",
            "input": {"notify": False},
        },
    )
    assert [a.action for a in await apply(client, settings)] == ["created", "created"]
    assert [a.action for a in await apply(client, settings)] == ["unchanged", "unchanged"]
    listed = await list_schedules(client, settings)
    assert [r.name for r in listed] == ["forecast", "patterns"]  # nothing duplicated
    assert listed[0].next_runs and listed[0].workflow == "ForecastWorkflow"

    parts = build_components(settings)
    worker = build_worker(client, parts)
    task = asyncio.create_task(worker.run())
    try:
        handle = client.get_schedule_handle(schedule_id(settings, "forecast"))
        run_id, result = await run_once(client, handle)
        assert result.series == len(history.cases)
        firing = {mount(history, r.summary): r for r in result.routed if r.status == "firing"}
        assert set(firing) == expected_wide, result
        assert result.opened == len(expected_wide)

        # The incident: the normal path, the forecast as evidence, a link back to the run.
        name = sorted(expected_narrow)[0]
        incident = client.get_workflow_handle(firing[name].workflow_id, result_type=IncidentState)
        state: IncidentState = await asyncio.wait_for(incident.result(), 90)
        assert state.alert.name == "PredictedExhaustion" and state.alert.source == "schedule"
        assert state.alert.labels["mountpoint"] == f"/srv/{name}"
        assert run_id in state.alert.annotations["run_url"]
        assert '"eta_seconds"' in state.alert.annotations["evidence"]
        assert state.triage and state.triage.runbook
        assert state.triage.runbook.name == "docker-predicted-exhaustion"
        assert str(state.triage.target) == "docker:lab"
        # Every mount's finding is the engine's one disk problem: one incident owns it (the
        # engine is unreachable: a human decides), the others joined it.
        states = [
            await asyncio.wait_for(
                client.get_workflow_handle(r.workflow_id, result_type=IncidentState).result(), 90
            )
            for r in firing.values()
        ]
        (owner,) = [s for s in states if s.outcome is Outcome.ESCALATED]
        members = [s for s in states if s is not owner]
        assert all(s.outcome is Outcome.JOINED for s in members), [s.outcome for s in members]
        assert {s.joined_to for s in members} <= {owner.workflow_id}
        assert state.outcome in (Outcome.ESCALATED, Outcome.JOINED)

        # A rerun: the same findings, no second incident for a closed one (repeat_interval).
        _, again = await run_once(client, handle)
        assert again.findings == len(expected_wide) and again.opened == 0
        runs = [w async for w in client.list_workflows(f"WorkflowId = '{incident.id}'")]
        assert len(runs) == 1

        # The horizon narrows: what moved out of it is resolved.
        settings = settings_for(
            dev_env,
            history,
            tmp_path,
            task_queue,
            forecast=forecast_job(history, narrow),
            patterns={
                "workflow": "PatternReportWorkflow",
                "cron": "0 7 * * 1",
                "input": {"notify": False},
            },
        )
        assert [a.action for a in await apply(client, settings)] == ["updated", "unchanged"]
        _, narrowed = await run_once(client, handle)
        resolved = {r.fingerprint for r in narrowed.routed if r.status == "resolved"}
        moved = {firing[n].fingerprint for n in expected_wide - expected_narrow}
        assert resolved == moved and narrowed.resolved == len(moved)
        row = parts.store.finding(next(iter(moved)))
        assert row is not None and row.status == "resolved"
    finally:
        await worker.shutdown()
        await task
        parts.close()

    # Paused with the CLI: apply keeps the pause; removed from the config: deleted.
    done = subprocess.run(
        [
            str(Path(sys.prefix) / "bin" / "temporal"),
            "schedule",
            "toggle",
            "--address",
            target_host(dev_env),
            "--schedule-id",
            schedule_id(settings, "forecast"),
            "--pause",
            "--reason",
            "maintenance",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    changed = settings.model_copy(
        update={
            "schedules": {
                **(settings.schedules or {}),
                "forecast": settings.schedule_jobs()["forecast"].model_copy(
                    update={"jitter": settings.schedule_jobs()["forecast"].jitter * 2}
                ),
            }
        }
    )
    assert {a.name: a.action for a in await apply(client, changed)}["forecast"] == "updated"
    described = await client.get_schedule_handle(schedule_id(settings, "forecast")).describe()
    assert described.schedule.state.paused and described.schedule.state.note == "maintenance"
    dropped = settings.model_copy(
        update={"schedules": {"forecast": settings.schedule_jobs()["forecast"]}}
    )
    assert {a.name: a.action for a in await apply(client, dropped)}["patterns"] == "deleted"
    assert [r.name for r in await list_schedules(client, dropped)] == ["forecast"]
