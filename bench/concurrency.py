"""Concurrency: 100 simultaneous incidents on 100 containers, against the Temporal floor.

100 containers on a private Docker engine exit (code 3); one Alertmanager webhook carries their 100
ContainerKilled alerts to `homelab-agents intake`, and `homelab-agents worker` (its own process,
default settings) runs the 100 incidents at once. Measured:

* restored: the post → the engine's start event of the last container;
* total: the post → the last incident closed (each holds a 3 s verification window);
* the worker's RSS: sampled every 0.1 s and its peak (VmHWM) from /proc;
* the Temporal floor, in the same run: 100 workflows of K sequential no-op activities (K = the
  activities one of these incidents ran, read from its history) on a worker process of their
  own (bench/floor.py), started at once.

Prints and writes bench/results/concurrency-<time>.json.

    .venv/bin/python bench/concurrency.py [-n 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import summary, write
from bench.restore import EventLog, run
from bench.services import BIN, deployment, incident_result, launched, rss_mb
from core.models import IncidentState, Outcome
from workers.lab.dockerd import DockerEngine
from workflows import search_attributes

CRASH_ONCE = "if [ -f /tmp/crashed ]; then exec sleep 100000; fi; touch /tmp/crashed; exit 3"


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the highest resident set the process has had."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            self.samples.append(rss_mb(self.pid))


def webhook(names: list[str], fingerprints: list[str]) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "version": "4",
        "status": "firing",
        "receiver": "bench",
        "groupKey": '{}:{alertname="ContainerKilled"}',
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "ContainerKilled", "name": name, "severity": "warning"},
                "annotations": {"summary": f"{name} exited"},
                "startsAt": now,
                "fingerprint": fp,
            }
            for name, fp in zip(names, fingerprints, strict=True)
        ],
    }


async def close_all(client: Client, wids: list[str]) -> tuple[list[IncidentState], float]:
    """Every incident's final state and when the last one closed (perf_counter)."""
    last = 0.0

    async def one(wid: str) -> IncidentState:
        nonlocal last
        state: IncidentState = await incident_result(client, wid)
        last = max(last, time.perf_counter())
        return state

    states = await asyncio.gather(*(one(w) for w in wids))
    return list(states), last


async def activities_in(client: Client, wid: str) -> int:
    count = 0
    async for event in client.get_workflow_handle(wid).fetch_history_events():
        count += event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    return count


async def floor(address: str, n: int, activities: int, root: Path) -> float:
    queue = f"floor-{uuid.uuid4().hex[:8]}"
    log = open(root / "floor-worker.log", "wb")  # the child holds it open
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
        [sys.executable, str(Path(__file__).with_name("floor.py")), address, queue],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        client = await Client.connect(address)
        # One workflow first: the worker is polling and its imports are done.
        await client.execute_workflow(
            "FloorWorkflow", activities, id=f"floor-warm-{queue}", task_queue=queue
        )
        t0 = time.perf_counter()
        handles = await asyncio.gather(
            *(
                client.start_workflow(
                    "FloorWorkflow", activities, id=f"floor-{queue}-{i}", task_queue=queue
                )
                for i in range(n)
            )
        )
        results = await asyncio.gather(*(h.result() for h in handles))
        assert results == [activities] * n, results
        return time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


async def main(n: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="hl-concurrency-"))
    engine = DockerEngine(root / "docker").start()
    log = EventLog(engine)
    log.start()
    dc = engine.client()
    tag = uuid.uuid4().hex[:6]
    names = [f"c{tag}-{i:03d}" for i in range(n)]
    print(f"{n} containers exit …", flush=True)
    containers = [run(dc, name, CRASH_ONCE) for name in names + [f"c{tag}-warm"]]
    for container in containers:
        while container.status != "exited":
            await asyncio.sleep(0.05)
            container.reload()
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
        f"concurrency-{tag}",
        docker=[{"name": "lab", "url": engine.url, "timeout": 60, "watch_events": False}],
    )
    try:
        with launched(dep, "worker", "intake") as procs:
            client = await Client.connect(address, data_converter=pydantic_data_converter)
            url = f"{dep.intake_url}/alerts/alertmanager"
            async with httpx.AsyncClient(trust_env=False, timeout=60) as http:
                warm = uuid.uuid4().hex[:16]
                (await http.post(url, json=webhook([f"c{tag}-warm"], [warm]))).raise_for_status()
                [warm_state], _ = await close_all(client, [f"incident-{warm}"])
                assert warm_state.outcome is Outcome.RESOLVED, warm_state.notes
                activities = await activities_in(client, f"incident-{warm}")
                worker = procs["worker"].pid
                rss_before = rss_mb(worker)
                sampler = RssSampler(worker)
                sampler.start()
                fps = [uuid.uuid4().hex[:16] for _ in names]
                print(f"{n} incidents at once …", flush=True)
                posted_wall = time.time()
                t0 = time.perf_counter()
                answer = await http.post(url, json=webhook(names, fps))
                answer.raise_for_status()
                states, last_closed = await close_all(client, [f"incident-{fp}" for fp in fps])
            total = last_closed - t0
            sampler.stop.set()
            sampler.join()
            hwm = peak_rss_mb(worker)
            starts = [
                min(log.times(name, "start", after=posted_wall) or [float("inf")]) for name in names
            ]
            restored = max(starts) - posted_wall
            for name in names:
                dc.containers.get(name).reload()
            running = sum(1 for name in names if dc.containers.get(name).status == "running")
            outcomes = [s.outcome.value for s in states]
        print(f"Temporal floor: {n} workflows of {activities} no-op activities …", flush=True)
        floor_total = await floor(address, n, activities, root)
    finally:
        log.close()
        dc.close()
        engine.stop()
        await env.shutdown()
    resolved = outcomes.count(Outcome.RESOLVED.value)
    per_incident = [
        (s.closed_at - s.opened_at).total_seconds() for s in states if s.closed_at and s.opened_at
    ]
    return {
        "benchmark": "concurrency",
        "at": datetime.now(UTC).isoformat(),
        "incidents": n,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "outcomes": {o: outcomes.count(o) for o in sorted(set(outcomes))},
        "containers_running_after": running,
        "restored_all_s": round(restored, 2),
        "total_s": round(total, 2),
        "throughput_incidents_per_s": round(n / total, 2),
        "incident_open_to_close_s": summary(per_incident, (50, 95)),
        "activities_per_incident": activities,
        "floor_total_s": round(floor_total, 2),
        "floor_throughput_workflows_per_s": round(n / floor_total, 2),
        "worker_rss_mb": {
            "before": round(rss_before, 1),
            "sampled_peak": round(max(sampler.samples or [0]), 1),
            "vmhwm_peak": round(hwm, 1),
        },
        "summary": {
            "total_s": round(total, 2),
            "floor_total_s": round(floor_total, 2),
            "worker_rss_peak_mb": round(max(hwm, max(sampler.samples or [0])), 1),
            "all_restored": resolved == n and running == n,
        },
        "targets": {"worker_rss_peak_mb": 300},
        "note": "each incident verifies for a 3 s stability window before it closes; the floor "
        "has no such wait; the worker runs its defaults (max_concurrent_activities 50)",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100)
    args = parser.parse_args()
    report = asyncio.run(main(args.n))
    out = write("concurrency", report)
    print(json.dumps(report, indent=2))
    print(f"written to {out}")
    sys.stdout.flush()
    os._exit(0)  # the Temporal client can crash the interpreter at exit (sdk-python#300)
