"""Incident memory at scale, with the embedded default: what recall adds to an incident, and what
10,000 remembered incidents cost on disk.

Generates N closed incidents (a mix of alerts, services and targets from the built-in runbooks,
log lines and states in the evidence, 90 % verified fixes, some failed verifications and
rollbacks, spread over 90 days), records them in a real SQLite store (outcome rows) and remembers
each through ``MemoryActivities.store_incident`` (hashing embedder, qdrant-client's embedded
mode). Then it closes the store, reopens it as a restarted worker would (the load is timed), and
times ``memory.recall`` as the workflow calls it (the SQL record, the embedding and the search)
for random incidents.

Prints and writes bench/results/memory-<time>.json (its ``summary`` has ``recall_p95_s`` and
``store_mb_per_10k``).

    .venv/bin/python bench/memory.py [-n 10000] [--recalls 300] [--alerts 24]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activities.memory.activities import MemoryActivities
from activities.memory.qdrant import close_local
from activities.runbooks import load_runbooks
from activities.store import Store
from activities.toolsets import default_catalog
from bench.report import summary, write
from core.config import Settings
from core.memory import RecallRequest, recall_request
from core.models import (
    Action,
    ActionOutcome,
    Alert,
    AlertStatus,
    ApprovalVerdict,
    ChangeRecord,
    ChangeResult,
    Evidence,
    IncidentState,
    Outcome,
    Phase,
    Plan,
    RiskLevel,
    TargetRef,
    Triage,
    VerificationResult,
)

LOGS = [
    "fatal: out of file descriptors",
    "panic: runtime error: invalid memory address or nil pointer dereference",
    "FATAL: could not write to file: No space left on device",
    "Killed",
    "connection refused to db:5432",
    "ERROR: certificate has expired",
    "worker exited with code 137",
    "health check timed out after 30s",
    "OOMKilled: memory limit reached",
    "listen tcp :8080: bind: address already in use",
]
STATES = ["exited", "dead", "restarting", "running"]


def du_mb(path: Path) -> float:
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return round(total / 1024 / 1024, 2)


def catalog_mix(alerts: int) -> list[tuple[str, str, list[str], str, bool]]:
    """(alert, service, remediation tools, runbook name, needs a resource) from the built-ins."""
    catalog = default_catalog()
    out = []
    for book in load_runbooks(catalog, []):
        tools = [r.tool for r in book.remediations] or []
        if not tools:
            continue
        scoped = catalog.get(tools[0]).needs_resource
        for alert in book.alerts:
            out.append((alert, book.service, tools, book.name, scoped))
    random.shuffle(out)
    return out[:alerts]


def make_incident(
    rng: random.Random, mix: list[Any], now: datetime, index: int
) -> tuple[IncidentState, bool]:
    alert, service, tools, runbook, scoped = rng.choice(mix)
    engine = rng.choice(["lab", "nas", "edge"])
    resource = f"app{rng.randrange(40)}" if scoped else ""
    target = TargetRef(service=service, target=engine, resource=resource)
    closed = now - timedelta(seconds=rng.uniform(0, 90 * 86400))
    roll = rng.random()
    verified = roll < 0.9
    rolled_back = 0.9 <= roll < 0.95
    tool = rng.choice(tools)
    outcome = ActionOutcome(
        action=Action(id="a1", tool=tool, target=target),
        level=RiskLevel.SOFT,
        approval=ApprovalVerdict.NOT_REQUIRED,
        change_id=f"c{index:08d}-bench",
        result=ChangeResult.APPLIED,
    )
    labels = {"alertname": alert, "severity": "warning", "instance": f"{engine}:9100"}
    if resource:
        labels["name"] = resource
    state = IncidentState(
        incident_id=f"incident-{index:016x}",
        workflow_id=f"incident-{index:016x}",
        alert=Alert(
            name=alert,
            status=AlertStatus.FIRING,
            fingerprint=f"{index:016x}",
            labels=labels,
            annotations={"summary": f"{alert} on {resource or engine}"},
            starts_at=closed - timedelta(minutes=2),
        ),
        phase=Phase.RESOLVED if verified else Phase.ESCALATED,
        opened_at=closed - timedelta(seconds=rng.uniform(5, 120)),
        closed_at=closed,
        triage=Triage(
            incident_type=runbook,
            service=service,
            target=target,
            severity="warning",
            critical=False,
            runbook=None,
            approval_timeout=timedelta(minutes=5),
            approvers=[],
        ),
        evidence=[
            Evidence(
                key="inspect",
                tool=f"{service}.inspect",
                target=str(target),
                ok=True,
                data={
                    "state": {"status": rng.choice(STATES), "exit_code": rng.choice([0, 1, 137])},
                    "restart_count": rng.randrange(5),
                },
            ),
            Evidence(
                key="logs",
                tool=f"{service}.logs",
                target=str(target),
                ok=True,
                data={"lines": rng.sample(LOGS, 3)},
            ),
        ],
        plan=Plan(source=f"runbook:{runbook}", actions=[outcome.action]),
        actions=[outcome],
        verification=VerificationResult(passed=verified),
        outcome=Outcome.RESOLVED
        if verified
        else (Outcome.ROLLED_BACK if rolled_back else Outcome.ESCALATED),
    )
    return state, rolled_back


def undo(state: IncidentState) -> ChangeRecord:
    o = state.actions[0]
    at = state.closed_at or state.opened_at
    return ChangeRecord(
        change_id=o.change_id + "-undo",
        incident_id=state.incident_id,
        workflow_id=state.workflow_id,
        run_id="bench",
        at=at,
        step="rollback",
        action=o.action.tool,
        target=str(o.action.target),
        level=RiskLevel.NONE,
        approval=ApprovalVerdict.NOT_REQUIRED,
        result=ChangeResult.APPLIED,
        rollback_of=o.change_id,
    )


def bench_settings(root: Path) -> Settings:
    return Settings(
        docker=[],
        temporal={"state_dir": str(root / "state")},
        store={"url": f"sqlite:///{root / 'db.sqlite'}"},
    )


async def main(count: int, recalls: int, alerts: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    random.seed(seed)
    root = Path(tempfile.mkdtemp(prefix="hl-bench-memory-"))
    settings = Settings(
        docker=[],
        temporal={"state_dir": str(root / "state")},
        store={"url": f"sqlite:///{root / 'db.sqlite'}"},
    )
    store = Store(settings.store_url)
    store.migrate()
    sql_before = (root / "db.sqlite").stat().st_size
    mix = catalog_mix(alerts)
    now = datetime.now(UTC)
    memory = MemoryActivities(settings, store)
    remember_s: list[float] = []
    states: list[IncidentState] = []
    started = time.monotonic()
    for index in range(count):
        state, rolled_back = make_incident(rng, mix, now, index)
        store.record_incident(state, "bench")
        if rolled_back:
            store.record_change(undo(state))
        t0 = time.perf_counter()
        done = await memory.store_incident(state, "bench")
        remember_s.append(time.perf_counter() - t0)
        assert done.stored, done.reason
        states.append(state)
        if (index + 1) % 1000 == 0:
            print(f"  remembered {index + 1}/{count} ({time.monotonic() - started:.0f}s)")
    close_local(settings.memory_location)
    store_mb = du_mb(Path(settings.memory_location))
    sql_mb = round(((root / "db.sqlite").stat().st_size - sql_before) / 1024 / 1024, 2)
    probes = root / "probes.jsonl"
    probes.write_text(
        "\n".join(recall_request(rng.choice(states)).model_dump_json() for _ in range(recalls))
    )
    del states
    return {
        "root": str(root),
        "incidents": count,
        "alerts": len(mix),
        "remember_s": summary(remember_s),
        "store_mb": store_mb,
        "sql_records_mb": sql_mb,
    }


def finish(report: dict[str, Any]) -> dict[str, Any]:
    """A restarted worker: a fresh process, the store opened on its first recall."""
    root = report.pop("root")
    done = subprocess.run(
        [sys.executable, __file__, "--recall-phase", root],
        capture_output=True,
        text=True,
        check=True,
    )
    phase = json.loads(done.stdout.strip().splitlines()[-1])
    shutil.rmtree(root, ignore_errors=True)
    count = report["incidents"]
    return {
        **report,
        **phase,
        "summary": {
            "recall_p95_s": phase["recall_s"]["p95"],
            "store_mb_per_10k": round(report["store_mb"] * 10000 / count, 2),
            "sql_records_mb_per_10k": round(report["sql_records_mb"] * 10000 / count, 2),
            "first_recall_after_restart_s": phase["first_recall_after_restart_s"],
            "rss_added_mb": phase["rss_added_mb"],
        },
    }


async def recall_phase(root: Path) -> dict[str, Any]:
    """In a fresh process: open the memory with the first recall, then time the recalls."""
    settings = bench_settings(root)
    store = Store(settings.store_url)
    requests = [
        RecallRequest.model_validate_json(line)
        for line in (root / "probes.jsonl").read_text().splitlines()
    ]
    memory = MemoryActivities(settings, store)
    before = rss_mb()
    t0 = time.perf_counter()
    await memory.recall(requests[0])
    first = time.perf_counter() - t0
    recall_s: list[float] = []
    hits: list[int] = []
    for request in requests:
        t0 = time.perf_counter()
        answer = await memory.recall(request)
        recall_s.append(time.perf_counter() - t0)
        hits.append(len(answer.incidents))
    collections = memory.vectors.count()
    close_local(settings.memory_location)
    return {
        "collections": len(collections),
        "largest_collection": max(collections.values()),
        "first_recall_after_restart_s": round(first, 3),
        "recall_s": summary(recall_s, (50, 95, 99)),
        "recalled_per_incident": round(sum(hits) / len(hits), 2),
        "rss_added_mb": round(rss_mb() - before, 1),
    }


def rss_mb() -> float:
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--incidents", type=int, default=10000)
    parser.add_argument("--recalls", type=int, default=300)
    parser.add_argument("--alerts", type=int, default=24, help="distinct alerts in the mix")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--recall-phase", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.recall_phase:
        print(json.dumps(asyncio.run(recall_phase(args.recall_phase))))
        sys.exit(0)
    result = finish(asyncio.run(main(args.incidents, args.recalls, args.alerts, args.seed)))
    path = write("memory", result)
    for key in ("summary", "recall_s", "remember_s", "collections", "largest_collection"):
        print(f"{key}: {result[key]}")
    print(f"wrote {path}")
