"""What `homelab-agents up` costs a small box: startup time, memory idle and under incidents, stop.

Runs the product as users do (`homelab-agents -c <config> up`: embedded Temporal dev server,
worker, intake, Docker events watcher) against a private dockerd, and reads every process of its
tree from /proc:

* startup: launch → the intake's /healthz answers (dev server up, search attributes registered);
* RSS per process (the agents' Python process, the Temporal dev server) idle, at its peak while N
  container-exited incidents run through the real intake one after another (the events watcher
  opens a second incident for each death, as it would in production), and after them;
* stop: SIGINT → every process of the tree gone (no orphaned dev server).

Prints and writes bench/results/footprint-<time>.json.

    .venv/bin/python bench/footprint.py [-n 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.mttr import CRASH_ONCE, payload
from bench.report import write
from bench.services import incident_result
from core.models import IncidentState, Outcome
from workers.lab.dockerd import BUSYBOX_IMAGE, DockerEngine
from workers.lab.processes import free_port

MIB = 1024 * 1024


def tree(root: int) -> list[int]:
    """``root`` and every descendant, from /proc (no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def label(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    exe = Path(argv[0].decode()).name if argv and argv[0] else "?"
    if exe.startswith("temporal"):
        return "temporal dev server"
    if any(b"homelab-agents" in a for a in argv[:2]):
        return "homelab-agents (worker, intake, watcher)"
    return exe


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in bytes."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def snapshot(root: int) -> dict[str, int]:
    """RSS per process label (summed when a label has several processes)."""
    rss: dict[str, int] = {}
    for pid in tree(root):
        mem = memory(pid)
        if mem:
            rss[label(pid)] = rss.get(label(pid), 0) + mem["VmRSS"]
    return rss


def mib(values: dict[str, int]) -> dict[str, float]:
    out = {k: round(v / MIB, 1) for k, v in sorted(values.items())}
    out["total"] = round(sum(values.values()) / MIB, 1)
    return out


class Sampler(threading.Thread):
    """Highest RSS seen per process label while incidents run."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak: dict[str, int] = {}
        self.peak_total = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            now = snapshot(self.root)
            for key, value in now.items():
                self.peak[key] = max(self.peak.get(key, 0), value)
            self.peak_total = max(self.peak_total, sum(now.values()))


async def incidents(n: int, intake: str, temporal: str, docker: Any) -> list[float]:
    client = await Client.connect(temporal, data_converter=pydantic_data_converter)
    seconds = []
    async with httpx.AsyncClient(trust_env=False, timeout=60) as http:
        for i in range(n):
            name = f"foot-{uuid.uuid4().hex[:8]}"
            container = docker.containers.run(
                BUSYBOX_IMAGE, ["sh", "-c", CRASH_ONCE], name=name, detach=True
            )
            while container.status != "exited":
                await asyncio.sleep(0.05)
                container.reload()
            fingerprint = uuid.uuid4().hex[:16]
            started = time.perf_counter()
            (await http.post(intake, json=payload(name, fingerprint))).raise_for_status()
            state: IncidentState = await incident_result(client, f"incident-{fingerprint}")
            # The events watcher opens its own incident for the same death; whichever of the two
            # restarts the container, the other one verifies it and closes as recovered.
            assert state.outcome in (Outcome.RESOLVED, Outcome.RECOVERED), state.outcome
            seconds.append(time.perf_counter() - started)
            print(f"  {i + 1:>3}/{n} resolved in {seconds[-1]:.2f}s", flush=True)
    return seconds


def main(n: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="hl-footprint-"))
    engine = DockerEngine(root / "docker").start()
    ports = {k: free_port() for k in ("temporal", "ui", "intake", "metrics")}
    config = root / "homelab.yaml"
    config.write_text(
        f"temporal: {{port: {ports['temporal']}, ui_port: {ports['ui']}, "
        f"state_dir: '{root / 'state'}', task_queue: footprint}}\n"
        f"store: {{url: 'sqlite:///{root / 'store.db'}'}}\n"
        f"intake: {{port: {ports['intake']}}}\n"
        f"worker: {{metrics_port: {ports['metrics']}}}\n"
        f"docker: [{{name: lab, url: '{engine.url}'}}]\n"
    )
    cli = Path(sys.prefix) / "bin" / "homelab-agents"
    log = (root / "up.log").open("w")
    launched = time.perf_counter()
    up = subprocess.Popen(
        [str(cli), "-c", str(config), "up"], stdout=log, stderr=subprocess.STDOUT, cwd=root
    )
    base = f"http://127.0.0.1:{ports['intake']}"
    docker = engine.client()
    try:
        while True:
            if up.poll() is not None:
                raise SystemExit(f"`up` exited with {up.returncode}: see {root / 'up.log'}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        startup = time.perf_counter() - launched
        time.sleep(5)  # let the dev server and the worker settle
        idle = snapshot(up.pid)
        sampler = Sampler(up.pid)
        sampler.start()
        seconds = asyncio.run(
            incidents(n, f"{base}/alerts/alertmanager", f"127.0.0.1:{ports['temporal']}", docker)
        )
        sampler.stop.set()
        sampler.join()
        time.sleep(2)
        after = snapshot(up.pid)
        pids = tree(up.pid)
        stopping = time.perf_counter()
        up.send_signal(signal.SIGINT)
        up.wait(timeout=60)
        while (
            any(Path(f"/proc/{p}").exists() for p in pids) and time.perf_counter() - stopping < 30
        ):
            time.sleep(0.05)
        stop = time.perf_counter() - stopping
        left = [p for p in pids if Path(f"/proc/{p}").exists()]
    finally:
        if up.poll() is None:
            up.kill()
        docker.close()
        engine.stop()
        log.close()
    return {
        "incidents": n,
        "startup_s": round(startup, 2),
        "rss_idle_mib": mib(idle),
        "rss_peak_during_incidents_mib": {
            **mib(sampler.peak),
            "total": round(sampler.peak_total / MIB, 1),
        },
        "rss_after_incidents_mib": mib(after),
        "incident_seconds_mean": round(sum(seconds) / len(seconds), 2),
        "stop_s": round(stop, 2),
        "processes_left_after_stop": len(left),
        "note": "RSS sampled every 0.2 s from /proc; each incident: an exited container restarted "
        "and verified (3 s stability window); the private dockerd is not counted",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20)
    args = parser.parse_args()
    report = main(args.n)
    out = write("footprint", report)
    print(json.dumps(report, indent=2))
    print(f"written to {out}")
