"""Two sites: incidents on two private Docker engines, each served by its own site worker
(`homelab-agents worker --site NAME`), with the main worker and the intake as a deployment runs
them. Mid-run one site's worker is killed (kill -9) and started again a few seconds later.

Measured: how many incidents completed (resolved), how many of their target activities ran on a
queue other than their site's (read from each incident's history: `wrong_site` must be 0), and the
time from the post to each incident's close, for the site that kept its worker and the one that
lost it.

Prints and writes bench/results/sites-<time>.json.

    .venv/bin/python bench/sites.py [-n 20]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
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
from bench.restore import run
from bench.services import BIN, deployment, incident_result, launched
from core.models import IncidentState, Outcome
from workers.lab.dockerd import DockerEngine
from workflows import search_attributes

CRASH_ONCE = "if [ -f /tmp/crashed ]; then exec sleep 100000; fi; touch /tmp/crashed; exit 3"
TARGET_ACTIVITIES = ("docker.", "tool.prepare", "incident.verify")
SITES = ("east", "west")


def webhook(alerts: list[tuple[str, str, str]]) -> dict[str, Any]:
    """(fingerprint, container, site) → one Alertmanager webhook."""
    now = datetime.now(UTC).isoformat()
    return {
        "version": "4",
        "status": "firing",
        "receiver": "homelab-agents",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "ContainerKilled",
                    "name": name,
                    "homelab_target": site,
                    "severity": "warning",
                },
                "annotations": {"summary": f"{name} exited"},
                "startsAt": now,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": fingerprint,
            }
            for fingerprint, name, site in alerts
        ],
    }


async def wrong_site(client: Client, workflow_id: str, queue: str) -> int:
    """Target activities of this incident scheduled anywhere but its site's queue."""
    wrong = 0
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            if attrs.activity_type.name.startswith(TARGET_ACTIVITIES):
                wrong += attrs.task_queue.name != queue
    return wrong


async def main(n: int) -> dict[str, Any]:
    roots = {site: Path(tempfile.mkdtemp(prefix=f"{site}-", dir="/tmp")) for site in SITES}
    engines = {site: DockerEngine(roots[site]).start() for site in SITES}
    tag = uuid.uuid4().hex[:6]
    per_site = n // 2
    names = {site: [f"{site[0]}{tag}-{i:03d}" for i in range(per_site)] for site in SITES}
    for site in SITES:
        client = engines[site].client()
        containers = [run(client, name, CRASH_ONCE) for name in names[site]]
        for container in containers:
            while container.status != "exited":
                await asyncio.sleep(0.05)
                container.reload()
        client.close()
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=search_attributes.ALL,
        dev_server_startup_timeout=timedelta(seconds=60),
    )
    address = env.client.service_client.config.target_host
    queue = f"sites-{tag}"
    dep = deployment(
        roots["east"] / "agents",
        address,
        queue,
        docker=[
            {"name": site, "url": engines[site].url, "site": site, "watch_events": False}
            for site in SITES
        ],
        worker={"metrics_port": 0},  # three workers on one host here; one per host in real life
    )
    try:
        with launched(dep, "worker", "intake"):
            workers = {site: dep.launch("worker", "--site", site) for site in SITES}
            client = await Client.connect(address, data_converter=pydantic_data_converter)
            alerts = [(uuid.uuid4().hex[:16], name, site) for site in SITES for name in names[site]]
            url = f"{dep.intake_url}/alerts/alertmanager"
            print(f"{len(alerts)} incidents on two sites; west's worker killed mid-run …")
            posted = time.monotonic()
            async with httpx.AsyncClient(trust_env=False, timeout=60) as http:
                (await http.post(url, json=webhook(alerts))).raise_for_status()
            await asyncio.sleep(1.0)
            workers["west"].kill9()
            killed_for = 5.0
            await asyncio.sleep(killed_for)
            workers["west"] = dep.launch("worker", "--site", "west")

            async def close(fp: str) -> tuple[Any, float]:
                try:
                    state = await incident_result(client, f"incident-{fp}", timeout=180)
                except TimeoutError:
                    state = await client.get_workflow_handle(f"incident-{fp}").query(
                        "state", result_type=IncidentState
                    )
                    print(f"incident-{fp} still open: {state.phase.value} {state.notes[-3:]}")
                return state, time.monotonic() - posted

            results = await asyncio.gather(*(close(fp) for fp, _, _ in alerts))
            wrong = sum(
                await asyncio.gather(
                    *(
                        wrong_site(client, f"incident-{fp}", f"{queue}@{site}")
                        for fp, _, site in alerts
                    )
                )
            )
            completed = sum(state.outcome is Outcome.RESOLVED for state, _ in results)
            times = {
                site: [
                    t for (state, t), (_, _, s) in zip(results, alerts, strict=True) if s == site
                ]
                for site in SITES
            }
    finally:
        dep.stop()
        for proc in dep.processes:
            if proc.popen.returncode not in (0, -9, -15, None):  # -9: the one killed on purpose
                print(f"{proc.name} exited {proc.popen.returncode}:\n{proc.tail(15)}")
        await env.shutdown()
        for site in SITES:
            engines[site].stop()
            shutil.rmtree(roots[site], ignore_errors=True)
    report = {
        "incidents": len(alerts),
        "west_worker_killed_for_s": killed_for,
        "close_s": {site: summary(times[site]) for site in SITES},
        "summary": {"completed": completed, "wrong_site": wrong, "incidents": len(alerts)},
    }
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="incidents (half per site)")
    args = parser.parse_args()
    report = asyncio.run(main(args.n))
    path = write("sites", report)
    s = report["summary"]
    print(
        f"completed {s['completed']}/{s['incidents']}, wrong site {s['wrong_site']}; "
        f"close p50 east {report['close_s']['east']['p50']} s, "
        f"west (worker killed {report['west_worker_killed_for_s']:.0f} s) "
        f"{report['close_s']['west']['p50']} s → {path}"
    )
