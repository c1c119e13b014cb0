"""Alert storm: 1,000 Alertmanager webhook posts over 100 fingerprints in 10 s, on loopback.

The intake and the worker run as their own processes (`homelab-agents intake`, `worker`) on a
Temporal dev server; the load generator paces one post every 10 ms with at most 100 in flight
(bounded in count and time) and measures each round trip at the client. Then it checks:

* lost: posts not answered 202, and fingerprints without their incident;
* workflows: incidents on the run's task queue (exactly one per fingerprint);
* exactly once: each incident's history holds one ``alert`` signal (the start signal), though its
  alert was posted ten times;
* the backlog the intake reports on /metrics while the storm runs and how long it takes to drain.

Prints and writes bench/results/storm-<time>.json.

    .venv/bin/python bench/storm.py [--posts 1000] [--fingerprints 100] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
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
from bench.services import BIN, cpu_seconds, deployment, launched
from workflows import search_attributes

ALERTNAME = "StormNoRunbook"  # no runbook answers it: each incident triages and escalates


def webhook(fingerprint: str, starts_at: str) -> dict[str, Any]:
    return {
        "version": "4",
        "status": "firing",
        "receiver": "storm",
        "groupKey": '{}:{alertname="StormNoRunbook"}',
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": ALERTNAME, "instance": fingerprint, "severity": "info"},
                "annotations": {"summary": "storm"},
                "startsAt": starts_at,
                "fingerprint": fingerprint,
            }
        ],
    }


def dev_server_pid(env: WorkflowEnvironment) -> int:
    """The dev server's process (a child of this one, found by its executable)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            exe = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and exe.endswith(b"temporal"):
            return int(entry.name)
    return 0


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


class Connection:
    """One keep-alive HTTP/1.1 connection with the least client work possible (pre-encoded
    requests, a status line and a content-length body read back): the load generator must not
    be what is measured."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        return cls(*await asyncio.open_connection(host, port))

    async def post(self, request: bytes) -> int:
        self.writer.write(request)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


def request_bytes(host: str, port: int, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    return (
        f"POST /alerts/alertmanager HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data


async def storm(
    url: str, fingerprints: list[str], posts: int, seconds: float, connections: int = 100
) -> tuple[list[float], list[int]]:
    """Paced posts (one every seconds/posts) over at most ``connections`` keep-alive
    connections; each post's round trip and status."""
    parsed = httpx.URL(url)
    host, port = parsed.host, parsed.port or 80
    starts = {fp: datetime.now(UTC).isoformat() for fp in fingerprints}
    requests = [
        request_bytes(
            host,
            port,
            webhook(
                fingerprints[i % len(fingerprints)], starts[fingerprints[i % len(fingerprints)]]
            ),
        )
        for i in range(posts)
    ]
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(await Connection.open(host, port))
    latencies: list[float] = [0.0] * posts
    statuses: list[int] = [0] * posts

    async def one(i: int, scheduled: float) -> None:
        conn = await idle.get()
        try:
            statuses[i] = await asyncio.wait_for(conn.post(requests[i]), 30)
            idle.put_nowait(conn)
        except (OSError, ValueError, IndexError, TimeoutError, asyncio.IncompleteReadError):
            statuses[i] = -1
            conn.close()
            idle.put_nowait(await Connection.open(host, port))
        # From when the post was due: waiting for a free connection counts against the intake.
        latencies[i] = time.perf_counter() - scheduled

    begin = time.perf_counter()
    tasks = []
    for i in range(posts):
        due = begin + i * seconds / posts
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    while not idle.empty():
        idle.get_nowait().close()
    return latencies, statuses


def histogram_quantile(text: str, name: str, q: float) -> float | None:
    """The upper bound of the bucket holding quantile q (Prometheus' histogram, from /metrics)."""
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append(
                (float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1]))
            )
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    for bound, count in buckets:
        if count >= q * total:
            return bound
    return None


async def backlog_sampler(metrics_url: str, stop: asyncio.Event, peak: list[float]) -> None:
    async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
        while not stop.is_set():
            try:
                value = metric((await http.get(metrics_url)).text, "homelab_intake_backlog")
                if value is not None:
                    peak.append(value)
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)


async def main(posts: int, n_fp: int, seconds: float) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="hl-storm-"))
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=search_attributes.ALL,
        dev_server_startup_timeout=timedelta(seconds=60),
    )
    address = env.client.service_client.config.target_host
    queue = f"storm-{uuid.uuid4().hex[:8]}"
    dep = deployment(root, address, queue)
    run = uuid.uuid4().hex[:6]
    fingerprints = [f"storm{run}{i:03d}" for i in range(n_fp)]
    try:
        with launched(dep, "worker", "intake") as procs:
            url = f"{dep.intake_url}/alerts/alertmanager"
            stop = asyncio.Event()
            samples: list[float] = []
            sampler = asyncio.create_task(
                backlog_sampler(f"{dep.intake_url}/metrics", stop, samples)
            )
            pids = {name: p.pid for name, p in procs.items()}
            pids["temporal dev server"] = dev_server_pid(env)
            pids["load generator"] = os.getpid()
            cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
            t0 = time.perf_counter()
            latencies, statuses = await storm(url, fingerprints, posts, seconds)
            sent = time.perf_counter() - t0
            cpu = {name: round(cpu_seconds(pid) - cpu0[name], 2) for name, pid in pids.items()}
            client: Client = await Client.connect(address, data_converter=pydantic_data_converter)
            # Every incident started and the backlog empty (bounded wait).
            deadline = time.monotonic() + 300
            workflows: set[str] = set()
            while time.monotonic() < deadline:
                workflows = {wf.id async for wf in client.list_workflows(f"TaskQueue = '{queue}'")}
                async with httpx.AsyncClient(trust_env=False) as http:
                    text = (await http.get(f"{dep.intake_url}/metrics")).text
                backlog = metric(text, "homelab_intake_backlog")
                if len(workflows) >= n_fp and (backlog is None or backlog == 0):
                    break
                await asyncio.sleep(0.5)
            drained = time.perf_counter() - t0
            stop.set()
            await sampler
            async with httpx.AsyncClient(trust_env=False) as http:
                final = (await http.get(f"{dep.intake_url}/metrics")).text
            server_p99 = histogram_quantile(final, "homelab_intake_request_seconds", 0.99)
            server_p50 = histogram_quantile(final, "homelab_intake_request_seconds", 0.50)
            signals: dict[str, int] = {}
            for fp in fingerprints:
                wid = f"incident-{fp}"
                count = 0
                if wid in workflows:
                    async for event in client.get_workflow_handle(wid).fetch_history_events():
                        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                            count += (
                                event.workflow_execution_signaled_event_attributes.signal_name
                                == "alert"
                            )
                signals[fp] = count
    finally:
        await env.shutdown()
    accepted = sum(1 for s in statuses if s == 202)
    missing = [fp for fp in fingerprints if f"incident-{fp}" not in workflows]
    lost = (posts - accepted) + len(missing)
    once = sum(1 for c in signals.values() if c == 1)
    lat = summary(latencies, (50, 95, 99))
    return {
        "benchmark": "alert-storm",
        "at": datetime.now(UTC).isoformat(),
        "posts": posts,
        "fingerprints": n_fp,
        "paced_over_s": seconds,
        "sent_in_s": round(sent, 2),
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "intake_latency_s": {**lat, "max": round(max(latencies), 3)},
        "intake_server_side_s": {"p50_bucket_le": server_p50, "p99_bucket_le": server_p99},
        "workflows": len(workflows),
        "fingerprints_missing": len(missing),
        "incidents_with_exactly_one_alert_signal": once,
        "alert_signals_total": sum(signals.values()),
        "backlog_peak": max(samples) if samples else None,
        "cpu_s_while_posting": cpu,
        "all_started_and_drained_after_s": round(drained, 2),
        "summary": {
            "lost": lost,
            "workflows": len(workflows),
            "intake_p99_s": lat["p99"],
            "exactly_once": once == n_fp,
        },
        "targets": {"lost": 0, "workflows": n_fp, "intake_p99_s": 0.05},
        "note": "intake and worker as separate processes (CLI) on a Temporal dev server; "
        "latency is the client's round trip; one alert per post, each fingerprint posted "
        f"{posts // n_fp} times with the same startsAt (Alertmanager re-notifications)",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--fingerprints", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    report = asyncio.run(main(args.posts, args.fingerprints, args.seconds))
    out = write("storm", report)
    print(json.dumps(report, indent=2))
    print(f"written to {out}")
    sys.stdout.flush()
    os._exit(0)  # the Temporal client can crash the interpreter at exit (sdk-python#300)
