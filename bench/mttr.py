"""MTTR of container-exited incidents on a real Docker engine, through the real intake.

Starts a private dockerd and a Temporal dev server, runs the worker and the intake in-process,
then for each of N containers that crash once: POST the Alertmanager webhook and wait for the
incident to close. Prints and writes (bench/results/mttr-<time>.json):

* time-to-restore: POST → the remediation done and the first verification check passing;
* time-to-verified: POST → verification complete (including the stability window);
* each split into action time (the write activity itself) and orchestration (everything else);
* intake latency p50/p99 (the POST round trip).

    .venv/bin/python bench/mttr.py [-n 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.agents import running_agents
from bench.report import summary, write
from bench.services import incident_result
from core.models import ChangeResult, IncidentState, Outcome
from workers.lab.dockerd import BUSYBOX_IMAGE, DockerEngine

CRASH_ONCE = "if [ -f /tmp/crashed ]; then exec sleep 100000; fi; touch /tmp/crashed; exit 3"


def payload(name: str, fingerprint: str) -> dict[str, Any]:
    return {
        "version": "4",
        "status": "firing",
        "receiver": "bench",
        "groupKey": "{}",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "ContainerKilled", "name": name, "severity": "warning"},
                "annotations": {},
                "startsAt": datetime.now(UTC).isoformat(),
                "fingerprint": fingerprint,
            }
        ],
    }


async def one_incident(
    http: httpx.AsyncClient, url: str, client: Any, docker: Any
) -> dict[str, Any]:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    container = docker.containers.run(
        BUSYBOX_IMAGE, ["sh", "-c", CRASH_ONCE], name=name, detach=True
    )
    while True:
        container.reload()
        if container.status == "exited":
            break
        await asyncio.sleep(0.05)
    fingerprint = uuid.uuid4().hex[:16]
    posted = datetime.now(UTC)
    t0 = time.perf_counter()
    response = await http.post(url, json=payload(name, fingerprint))
    intake_latency = time.perf_counter() - t0
    response.raise_for_status()
    wid = f"incident-{fingerprint}"
    state: IncidentState = await incident_result(client, wid)
    container.reload()
    assert container.status == "running", f"{name} not restored: {state.outcome}"
    assert state.outcome is Outcome.RESOLVED, state.notes
    verification = state.verification
    assert verification and verification.first_pass_at and verification.verified_at
    return {
        "container": name,
        "intake_latency": intake_latency,
        "restore": (verification.first_pass_at - posted).total_seconds(),
        "verified": (verification.verified_at - posted).total_seconds(),
        "workflow_id": wid,
    }


async def main(n: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="hl-bench-"))
    engine = DockerEngine(root / "docker").start()
    docker = engine.client()
    runs: list[dict[str, Any]] = []
    try:
        async with (
            running_agents(root, "bench", docker=[{"name": "lab", "url": engine.url}]) as agents,
            httpx.AsyncClient(trust_env=False, timeout=60) as http,
        ):
            await one_incident(http, agents.url, agents.client, docker)  # warm-up, not counted
            for i in range(n):
                runs.append(await one_incident(http, agents.url, agents.client, docker))
                print(
                    f"  {i + 1:>3}/{n} restore {runs[-1]['restore']:.2f}s verified {runs[-1]['verified']:.2f}s",
                    flush=True,
                )
            for run in runs:
                changes = [
                    c
                    for c in agents.parts.store.list_changes(run["workflow_id"])
                    if c.result is ChangeResult.APPLIED
                ]
                action = sum(
                    ((c.finished_at or c.at) - (c.started_at or c.at)).total_seconds()
                    for c in changes
                )
                run["action"] = action
                run["orchestration_restore"] = run["restore"] - action
    finally:
        docker.close()
        engine.stop()

    def stats(key: str) -> dict[str, float | None]:
        return summary([r[key] for r in runs], (50, 95, 99))

    return {
        "benchmark": "mttr-container-exited",
        "at": datetime.now(UTC).isoformat(),
        "incidents": n,
        "time_to_restore_s": stats("restore"),
        "time_to_verified_s": stats("verified"),
        "action_time_s": stats("action"),
        "orchestration_time_to_restore_s": stats("orchestration_restore"),
        "intake_latency_s": stats("intake_latency"),
        "targets": {"time_to_restore_p50_s": 3.0, "time_to_restore_p95_s": 6.0},
        "note": "verification holds a 3 s stability window (runbook docker-container-exited)",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20)
    args = parser.parse_args()
    report = asyncio.run(main(args.n))
    out = write("mttr", report)
    print(json.dumps(report, indent=2))
    print(f"written to {out}")
