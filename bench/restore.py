"""Restore, side by side: the same broken container restored by the tools users run today and by
homelab-agents, on one private Docker engine, timed from the engine's own events.

* exits — a container that dies once (exit 3) 1 s after it starts:
  - Docker's ``--restart on-failure`` policy (the floor): die → start;
  - homelab-agents (events watcher → outbox → incident workflow → docker.start): die → start.
* unhealthy — a container whose healthcheck fails until it has been restarted once:
  - an autoheal-style poller, docker-autoheal's loop at its default 5 s interval (list the
    unhealthy containers labelled autoheal=true, restart each with t=10, sleep 5 s):
    health_status: unhealthy → start;
  - homelab-agents (health_status event → incident → docker.restart): unhealthy → start.

The agents run as a deployment does (`homelab-agents worker` and `intake`, the intake watching the
engine) on a Temporal dev server, and stop while the poller runs (both would restart the same
container). With the agents running, the restart-policy containers are checked to open no incident
(the engine's policy gets the first chance). Prints and writes bench/results/restore-<time>.json.

    .venv/bin/python bench/restore.py [-n 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activities.store import Store
from bench.report import summary, write
from bench.services import BIN, deployment, incident_result, launched
from core.models import IncidentState, Outcome
from workers.docker_events import fingerprint
from workers.lab.dockerd import BUSYBOX_IMAGE, DockerEngine
from workflows import search_attributes

DIES_ONCE = (
    "sleep 1; if [ -f /tmp/crashed ]; then exec sleep 100000; fi; touch /tmp/crashed; exit 3"
)
# Healthy only after one restart; stops at once on SIGTERM, so a restart costs no stop timeout.
UNHEALTHY_ONCE = (
    "trap 'exit 0' TERM; if [ -f /tmp/was-unhealthy ]; then touch /tmp/ok; "
    "else touch /tmp/was-unhealthy; fi; sleep 100000 & wait"
)
HEALTHCHECK = {"test": ["CMD-SHELL", "test -f /tmp/ok"], "interval": 1_000_000_000, "retries": 1}
AUTOHEAL_INTERVAL = 5.0
AUTOHEAL_STOP_TIMEOUT = 10


class EventLog(threading.Thread):
    """Every container event of the engine, with the engine's own timestamps."""

    def __init__(self, engine: DockerEngine) -> None:
        super().__init__(daemon=True)
        self.client = engine.client()
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.stream = self.client.events(decode=True, filters={"type": "container"})

    def run(self) -> None:
        try:
            for event in self.stream:
                with self.lock:
                    self.events.append(event)
        except Exception:
            pass  # closed

    def close(self) -> None:
        self.stream.close()
        self.client.close()

    def times(self, name: str, action: str, after: float = 0) -> list[float]:
        with self.lock:
            return [
                int(e["timeNano"]) / 1e9
                for e in self.events
                if e.get("Actor", {}).get("Attributes", {}).get("name") == name
                and str(e.get("Action", "")).startswith(action)
                and int(e["timeNano"]) / 1e9 > after
            ]

    async def wait(self, name: str, action: str, after: float = 0, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.times(name, action, after)
            if found:
                return found[0]
            await asyncio.sleep(0.02)
        raise TimeoutError(f"no {action} event for {name} within {timeout}s")


class AutohealPoller(threading.Thread):
    """docker-autoheal's loop (willfarrell/docker-autoheal, docker-entrypoint) over the API."""

    def __init__(self, engine: DockerEngine) -> None:
        super().__init__(daemon=True)
        self.client = engine.client()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for container in self.client.api.containers(
                filters={"health": "unhealthy", "label": "autoheal=true"}
            ):
                if container.get("State") == "restarting":
                    continue
                try:
                    self.client.api.restart(container["Id"], timeout=AUTOHEAL_STOP_TIMEOUT)
                except docker.errors.APIError:
                    pass
            self.stop.wait(AUTOHEAL_INTERVAL)
        self.client.close()


def run(client: docker.DockerClient, name: str, command: str, **kwargs: Any) -> Any:
    return client.containers.run(
        BUSYBOX_IMAGE, ["sh", "-c", command], name=name, detach=True, **kwargs
    )


async def incident(client: Client, alertname: str, name: str) -> IncidentState:
    """The incident the watcher opened for this container, once it has closed."""
    wid = f"incident-{fingerprint('lab', name, alertname)}"
    state: IncidentState = await incident_result(client, wid, timeout=90)
    return state


async def has_incident(client: Client, alertname: str, name: str) -> bool:
    wid = f"incident-{fingerprint('lab', name, alertname)}"
    try:
        await client.get_workflow_handle(wid).describe()
        return True
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return False
        raise


async def floor_exits(dc: Any, log: EventLog, n: int, tag: str) -> tuple[list[float], list[str]]:
    seconds, names = [], []
    for i in range(n):
        name = f"policy-{tag}-{i}"
        run(dc, name, DIES_ONCE, restart_policy={"Name": "on-failure"})
        died = await log.wait(name, "die")
        started = await log.wait(name, "start", after=died)
        seconds.append(started - died)
        names.append(name)
    return seconds, names


async def ours_exits(
    dc: Any, log: EventLog, client: Client, store: Store, n: int, tag: str
) -> tuple[list[float], list[dict[str, float]]]:
    seconds, parts = [], []
    for i in range(n):
        name = f"ours-exit-{tag}-{i}"
        run(dc, name, DIES_ONCE)
        died = await log.wait(name, "die")
        started = await log.wait(name, "start", after=died)
        seconds.append(started - died)
        state = await incident(client, "ContainerKilled", name)
        assert state.outcome is Outcome.RESOLVED, (name, state.outcome, state.notes)
        row = store.outbox_rows(fingerprint("lab", name, "ContainerKilled"))[0]
        parts.append(
            {
                "detect": row["accepted_at"].timestamp() - died,
                "deliver": row["done_at"].timestamp() - row["accepted_at"].timestamp(),
                "workflow": started - row["done_at"].timestamp(),
            }
        )
        dc.containers.get(name).remove(force=True)
    return seconds, parts


async def unhealthy(
    dc: Any, log: EventLog, n: int, tag: str, *, autoheal: bool, client: Client | None = None
) -> list[float]:
    seconds = []
    for i in range(n):
        name = f"{'autoheal' if autoheal else 'ours'}-unhealthy-{tag}-{i}"
        # A random phase against the poller's 5 s loop, as a real failure has.
        await asyncio.sleep(random.uniform(0, AUTOHEAL_INTERVAL) if autoheal else 0)
        run(
            dc,
            name,
            UNHEALTHY_ONCE,
            healthcheck=HEALTHCHECK,
            labels={"autoheal": "true"} if autoheal else {},
        )
        bad = await log.wait(name, "health_status: unhealthy")
        started = await log.wait(name, "start", after=bad, timeout=60)
        seconds.append(started - bad)
        if client is not None:
            state = await incident(client, "ContainerUnhealthy", name)
            assert state.outcome is Outcome.RESOLVED, (name, state.outcome, state.notes)
        dc.containers.get(name).remove(force=True)
    return seconds


async def main(n: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="hl-restore-"))
    engine = DockerEngine(root / "docker").start()
    log = EventLog(engine)
    log.start()
    dc = engine.client()
    tag = uuid.uuid4().hex[:6]
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=search_attributes.ALL,
        dev_server_startup_timeout=timedelta(seconds=60),
    )
    address = env.client.service_client.config.target_host
    dep = deployment(
        root / "agents",
        address,
        f"restore-{tag}",
        docker=[{"name": "lab", "url": engine.url, "timeout": 30}],
    )
    try:
        print(f"autoheal-style poller, {n} unhealthy containers …", flush=True)
        poller = AutohealPoller(engine)
        poller.start()
        autoheal = await unhealthy(dc, log, n, tag, autoheal=True)
        poller.stop.set()
        poller.join()
        print("homelab-agents up (worker, intake watching the engine) …", flush=True)
        with launched(dep, "worker", "intake"):
            client = await Client.connect(address, data_converter=pydantic_data_converter)
            store = Store(dep.config["store"]["url"])
            await asyncio.sleep(2)  # the watcher subscribes to the engine's events
            # warm-up, not counted: first imports and connections of each activity
            await ours_exits(dc, log, client, store, 1, f"{tag}w")
            print(f"Docker's restart policy, {n} exits …", flush=True)
            floor, policy_names = await floor_exits(dc, log, n, tag)
            print(f"homelab-agents, {n} exits …", flush=True)
            ours, parts = await ours_exits(dc, log, client, store, n, tag)
            print(f"homelab-agents, {n} unhealthy …", flush=True)
            ours_unhealthy = await unhealthy(dc, log, n, tag, autoheal=False, client=client)
            await asyncio.sleep(1)
            policy_incidents = sum(
                [await has_incident(client, "ContainerKilled", name) for name in policy_names]
            )
            store.close()
    finally:
        log.close()
        dc.close()
        engine.stop()
        await env.shutdown()

    def stats(values: list[float]) -> dict[str, float | None]:
        return {**summary(values, (50, 95)), "max": round(max(values), 3)}

    ratio = round(summary(ours)["p50"] / summary(floor)["p50"], 2)  # type: ignore[operator]
    ahead = round(summary(autoheal)["p50"] / summary(ours_unhealthy)["p50"], 2)  # type: ignore[operator]
    return {
        "benchmark": "restore-side-by-side",
        "at": datetime.now(UTC).isoformat(),
        "runs_each": n,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "exits_die_to_start_s": {
            "docker_restart_policy": stats(floor),
            "homelab_agents": stats(ours),
            "homelab_agents_split_p50_s": {
                k: summary([p[k] for p in parts], (50,), mean=False)["p50"]
                for k in ("detect", "deliver", "workflow")
            },
        },
        "unhealthy_to_restarted_s": {
            "autoheal_poller_5s": stats(autoheal),
            "homelab_agents": stats(ours_unhealthy),
        },
        "incidents_for_deaths_the_policy_restarted": policy_incidents,
        "summary": {
            "ratio_to_restart_policy": ratio,
            "ratio_poller_to_ours_unhealthy": ahead,
            "incidents_for_policy_restarts": policy_incidents,
        },
        "targets": {"ratio_to_restart_policy": 1.5, "ratio_poller_to_ours_unhealthy": 5.0},
        "note": "times from the engine's event timestamps; exits: a container that dies once 1 s "
        "after start; unhealthy: a healthcheck every 1 s (retries 1) that passes after one "
        "restart; split: die → alert in the intake's outbox (detect), → Temporal has it "
        "(deliver), → the engine's start event (workflow: triage, diagnose, plan, policy, lock, "
        "docker.start)",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20)
    args = parser.parse_args()
    report = asyncio.run(main(args.n))
    out = write("restore", report)
    print(json.dumps(report, indent=2))
    print(f"written to {out}")
    sys.stdout.flush()
    os._exit(0)  # the Temporal client can crash the interpreter at exit (sdk-python#300)
