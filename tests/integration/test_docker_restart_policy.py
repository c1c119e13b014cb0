"""The engine's own restart policy gets the first chance (a real dockerd and the real watcher): a
death it restarts opens no incident, a policy that gives up does, and so does a crash loop."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from core.models import Alert
from tests.conftest import make_settings
from tests.integration.stack import CRASH_ONCE, run_container
from workers.docker_events import DockerEventsWatcher
from workers.lab.dockerd import DockerEngine

pytestmark = pytest.mark.integration


async def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: not after {timeout}s")


async def test_restart_policy_first_then_gave_up_and_crash_loop(
    docker_engine: DockerEngine, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path,
        docker=[
            {
                "name": "lab",
                "url": docker_engine.url,
                "crash_loop_restarts": 3,
                "crash_loop_window": "60s",
            }
        ],
    )
    alerts: list[Alert] = []

    async def route(alert: Alert) -> None:
        alerts.append(alert)

    def alerts_for(name: str) -> list[Alert]:
        return [a for a in alerts if a.labels["container"] == name]

    watcher = DockerEventsWatcher(settings, route)
    watching = asyncio.create_task(watcher.run())
    docker = docker_engine.client()
    tag = uuid.uuid4().hex[:6]
    names = {k: f"rp-{k}-{tag}" for k in ("probe", "once", "gives-up", "loops")}
    try:
        # The watcher is listening once a death without any policy reaches it.
        probe = run_container(docker, names["probe"], "sleep 0.5; exit 4")
        await wait_until(lambda: alerts_for(names["probe"]), 30, "the probe's death seen")
        assert "restart_policy" not in alerts_for(names["probe"])[0].labels
        probe.remove(force=True)

        once = run_container(
            docker, names["once"], f"sleep 0.3; {CRASH_ONCE}", restart_policy={"Name": "on-failure"}
        )
        gives_up = run_container(
            docker,
            names["gives-up"],
            "sleep 0.3; exit 3",
            restart_policy={"Name": "on-failure", "MaximumRetryCount": 2},
        )
        loops = run_container(
            docker, names["loops"], "sleep 0.3; exit 5", restart_policy={"Name": "always"}
        )

        def restarted_once() -> bool:
            once.reload()
            return once.attrs["RestartCount"] == 1 and once.status == "running"

        await wait_until(restarted_once, 30, "the engine restarted the container that died once")
        await wait_until(lambda: alerts_for(names["gives-up"]), 30, "the policy that gave up")
        await wait_until(lambda: alerts_for(names["loops"]), 30, "the crash loop")
        loops.remove(force=True)
        await asyncio.sleep(1.0)  # anything still in flight from the engine arrives

        assert alerts_for(names["once"]) == []  # the policy restored it: no incident
        [gave_up] = alerts_for(names["gives-up"])  # one incident, after the last try
        gives_up.reload()
        assert gives_up.status == "exited" and gives_up.attrs["RestartCount"] == 2
        assert gave_up.labels["restart_policy"] == "on-failure"
        assert gave_up.labels["restart_count"] == "2" and gave_up.labels["exit_code"] == "3"
        assert "gave up after 2 restarts" in gave_up.annotations["summary"]
        loop = alerts_for(names["loops"])[0]
        assert loop.name == "ContainerKilled" and loop.labels["restart_policy"] == "always"
        assert "crash loop: 3 restarts" in loop.annotations["summary"]
    finally:
        watcher.stop()
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        for name in names.values():
            try:
                docker.containers.get(name).remove(force=True)
            except Exception:
                pass
        docker.close()
