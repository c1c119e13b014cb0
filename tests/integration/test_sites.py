"""Site workers end to end: two private dockerds at two sites, two `homelab-agents worker --site`
processes and the main worker on the dev server. Each incident's tools run on its site's queue
and nowhere else; with a site's worker down its incident waits, and completes once it is back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
import yaml
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from core.config import load_settings
from core.models import ChangeResult, IncidentState, Outcome, Phase
from tests.integration.stack import (
    CRASH_ONCE,
    alertmanager_payload,
    am_alert,
    run_container,
    running_stack,
    target_host,
    wait_exited,
)
from tests.integration.test_durability import CLI, kill9
from workers.lab.dockerd import DockerEngine
from workers.lab.processes import free_port
from workflows.incident import IncidentWorkflow

pytestmark = pytest.mark.integration


def site_worker(config: Path, site: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [CLI, "--config", str(config), "worker", "--site", site],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            kill9(proc)


async def tool_queues(stack: object, workflow_id: str) -> dict[str, set[str]]:
    """Activity type → the task queues it was scheduled on, from the incident's history."""
    seen: dict[str, set[str]] = {}
    async for event in stack.handle(workflow_id).fetch_history_events():  # type: ignore[attr-defined]
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            seen.setdefault(attrs.activity_type.name, set()).add(attrs.task_queue.name)
    return seen


async def test_each_site_runs_its_own_tools_and_a_missing_site_waits(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    west_root = Path(tempfile.mkdtemp(prefix="west-", dir="/tmp"))  # unix socket paths are short
    west = DockerEngine(west_root).start()
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "homelab.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "temporal": {
                    "address": target_host(dev_env),
                    "task_queue": queue,
                    "state_dir": str(tmp_path / "state"),
                },
                "store": {"url": f"sqlite:///{tmp_path / 'store.db'}"},
                "intake": {"port": free_port()},
                "docker": [
                    {"name": "east", "url": docker_engine.url, "site": "east"},
                    {"name": "west", "url": west.url, "site": "west", "watch_events": False},
                ],
                "worker": {"metrics_port": 0},
            }
        )
    )
    settings = load_settings(config)
    logs = tmp_path / "sites.log"
    east_worker = site_worker(config, "east", logs)
    west_worker: subprocess.Popen[bytes] | None = None
    try:
        async with running_stack(dev_env, docker_engine, tmp_path, settings=settings) as stack:
            name = f"s-{uuid.uuid4().hex[:6]}"
            for engine in (docker_engine, west):
                with contextlib.closing(engine.client()) as client:
                    wait_exited(run_container(client, name, CRASH_ONCE))
            east_alert = am_alert("ContainerKilled", name, homelab_target="east")
            west_alert = am_alert("ContainerKilled", name, homelab_target="west")
            await stack.post(alertmanager_payload(east_alert, west_alert))
            east_id, west_id = (f"incident-{a['fingerprint']}" for a in (east_alert, west_alert))

            east = await stack.result(east_id, timeout=90)
            assert east.outcome is Outcome.RESOLVED, east.notes
            # West's worker is not running: its incident waits in diagnosis, durably.
            await asyncio.sleep(3)
            waiting: IncidentState = await stack.handle(west_id).query(IncidentWorkflow.get_state)
            assert waiting.phase is Phase.DIAGNOSE and waiting.outcome is None
            doctor = await asyncio.to_thread(
                subprocess.run,
                [CLI, "--config", str(config), "doctor", "--json"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            sites = {f["target"]: f for f in json.loads(doctor.stdout) if f["check"] == "site"}
            assert sites["east"]["ok"] and f"{queue}@east: 1 poller(s)" in sites["east"]["detail"]
            assert not sites["west"]["ok"] and "worker --site west" in sites["west"]["detail"]
            assert doctor.returncode == 1  # a site nobody serves is a failure

            west_worker = site_worker(config, "west", logs)
            done = await stack.result(west_id, timeout=90)
            assert done.outcome is Outcome.RESOLVED, done.notes
            assert [(a.action.tool, a.result) for a in done.actions] == [
                ("docker.start", ChangeResult.APPLIED)
            ]
            for engine in (docker_engine, west):
                with contextlib.closing(engine.client()) as client:
                    assert client.containers.get(name).status == "running"

            for wid, site in ((east_id, "east"), (west_id, "west")):
                queues = await tool_queues(stack, wid)
                for activity in ("docker.inspect", "docker.logs", "tool.prepare", "docker.start"):
                    assert queues[activity] == {f"{queue}@{site}"}, (wid, activity, queues)
                assert queues["incident.verify"] == {f"{queue}@{site}"}
                assert queues["incident.triage"] == {queue}  # the rest stays on the main queue
    finally:
        stop(east_worker)
        if west_worker is not None:
            stop(west_worker)
        west.stop()
        shutil.rmtree(west_root, ignore_errors=True)


async def test_a_worker_refuses_a_site_that_is_not_its_own(tmp_path: Path) -> None:
    """`worker --site` with a name no target has is a usage error, never a worker for nothing."""
    config = tmp_path / "homelab.yaml"
    config.write_text(yaml.safe_dump({"docker": [{"name": "east", "site": "east"}]}))
    done = subprocess.run(
        [CLI, "--config", str(config), "worker", "--site", "north"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "no target is at site 'north'" in done.stderr and "east" in done.stderr
