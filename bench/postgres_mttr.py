"""MTTR of PostgreSQL incidents on a real PostgreSQL, through the real intake and dev server.

Starts a private PostgreSQL (roles from deploy/postgres/roles.sql) and a Temporal dev server, runs
the worker and the intake in-process, then N times each:

* lock-blocking: an idle-in-transaction session holds a row lock another session waits for;
  POST PostgresqlLockBlocking → the blocker is terminated → the lock graph is empty;
* bloat: 20 000 rows updated twice with autovacuum off; POST PostgresqlTooManyDeadTuples →
  VACUUM (ANALYZE) → under 10 % dead tuples.

Also times the diagnostic tools themselves (monitor role, pooled, read-only transactions).
Prints and writes bench/results/postgres-mttr-<time>.json.

    .venv/bin/python bench/postgres_mttr.py [-n 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activities.tools import ToolRunner
from bench.agents import running_agents
from bench.report import summary, write
from bench.services import incident_result
from core.models import ChangeResult, IncidentState, Outcome, TargetRef, ToolCall
from workers.lab.postgres import Postgres
from workers.lab.processes import free_port

ROOT = Path(__file__).resolve().parents[1]


def prepare_server(server: Postgres) -> None:
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute((ROOT / "deploy" / "postgres" / "roles.sql").read_text())
        conn.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app') THEN"
            " CREATE ROLE app LOGIN; END IF; END $$"
        )
        conn.execute("GRANT app TO homelab_maint")


def new_db(server: Postgres, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER app").format(sql.Identifier(name)))
    return name


def payload(name: str, fingerprint: str, **labels: str) -> dict[str, Any]:
    return {
        "version": "4",
        "status": "firing",
        "receiver": "bench",
        "groupKey": "{}",
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": name,
                    "instance": "pg:9187",
                    "severity": "warning",
                    **labels,
                },
                "annotations": {},
                "startsAt": datetime.now(UTC).isoformat(),
                "fingerprint": fingerprint,
            }
        ],
    }


def lock_scene(server: Postgres, db: str) -> tuple[list[psycopg.Connection[Any]], threading.Thread]:
    with psycopg.connect(server.dsn(db, user="app"), autocommit=True) as conn:
        conn.execute("CREATE TABLE stock (sku int PRIMARY KEY, qty int)")
        conn.execute("INSERT INTO stock VALUES (1, 10)")
    blocker = psycopg.connect(server.dsn(db, user="app"))
    blocker.execute("UPDATE stock SET qty = qty - 1 WHERE sku = 1")
    victim = psycopg.connect(server.dsn(db, user="app"), autocommit=True)

    def wait() -> None:
        with contextlib.suppress(psycopg.Error):
            victim.execute("UPDATE stock SET qty = 0 WHERE sku = 1")

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    pid = victim.info.backend_pid
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        for _ in range(200):
            row = conn.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()
            if row and row[0] == "Lock":
                break
            time.sleep(0.01)
    return [blocker, victim], thread


def bloat_scene(server: Postgres, db: str) -> None:
    with psycopg.connect(server.dsn(db, user="app"), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE items (id int PRIMARY KEY, v int) WITH (autovacuum_enabled = false)"
        )
        conn.execute("INSERT INTO items SELECT g, 0 FROM generate_series(1, 20000) g")
        conn.execute("UPDATE items SET v = v + 1")
        conn.execute("UPDATE items SET v = v + 1")


async def one(
    kind: str, http: httpx.AsyncClient, url: str, client: Any, server: Postgres, store: Any
) -> dict[str, Any]:
    db = new_db(server, kind)
    held: list[psycopg.Connection[Any]] = []
    if kind == "lock":
        held, _ = lock_scene(server, db)
        body = ("PostgresqlLockBlocking", {"datname": db})
    else:
        bloat_scene(server, db)
        body = (
            "PostgresqlTooManyDeadTuples",
            {"datname": db, "schemaname": "public", "relname": "items"},
        )
    fingerprint = uuid.uuid4().hex[:16]
    posted = datetime.now(UTC)
    t0 = time.perf_counter()
    response = await http.post(url, json=payload(body[0], fingerprint, **body[1]))
    intake = time.perf_counter() - t0
    response.raise_for_status()
    wid = f"incident-{fingerprint}"
    state: IncidentState = await incident_result(client, wid)
    for conn in held:
        conn.close()
    assert state.outcome is Outcome.RESOLVED, state.notes
    v = state.verification
    assert v and v.first_pass_at and v.verified_at
    changes = [c for c in store.list_changes(wid) if c.result is ChangeResult.APPLIED]
    action = sum(
        ((c.finished_at or c.at) - (c.started_at or c.at)).total_seconds() for c in changes
    )
    return {
        "intake_latency": intake,
        "restore": (v.first_pass_at - posted).total_seconds(),
        "verified": (v.verified_at - posted).total_seconds(),
        "action": action,
    }


async def tool_latency(runner: ToolRunner, db: str, n: int) -> dict[str, dict[str, float]]:
    out = {}
    calls = {
        "postgres.health": ("", {}),
        "postgres.locks": (db, {}),
        "postgres.activity": (db, {}),
        "postgres.bloat": (db, {"table": "items"}),
        "postgres.index_health": (db, {}),
        "postgres.vacuum_status": (db, {}),
    }
    for tool, (resource, params) in calls.items():
        ref = TargetRef(service="postgres", target="lab", resource=resource)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            result = await runner.run(ToolCall(tool=tool, target=ref, params=params))
            times.append((time.perf_counter() - t0) * 1000)
            assert result.ok, result.error
        out[tool] = summary(times)
    return out


async def main(n: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="hl-bench-pg-"))
    server = Postgres(root / "pg", free_port()).start()
    prepare_server(server)
    postgres = [
        {
            "name": "lab",
            "dsn": server.dsn("postgres", user="homelab_monitor"),
            "maintenance_dsn": server.dsn("postgres", user="homelab_maint"),
            "instances": ["pg:9187"],
        }
    ]
    runs: dict[str, list[dict[str, Any]]] = {"lock": [], "bloat": []}
    try:
        async with (
            running_agents(
                root,
                "bench-pg",
                docker=[],
                postgres=postgres,
                approval={"max_writes_per_target_per_hour": 1000},
            ) as agents,
            httpx.AsyncClient(trust_env=False, timeout=120) as http,
        ):
            store = agents.parts.store
            for kind in runs:
                await one(kind, http, agents.url, agents.client, server, store)  # warm-up
                for i in range(n):
                    runs[kind].append(
                        await one(kind, http, agents.url, agents.client, server, store)
                    )
                    r = runs[kind][-1]
                    print(
                        f"  {kind:>5} {i + 1:>3}/{n} restore {r['restore']:.2f}s "
                        f"verified {r['verified']:.2f}s",
                        flush=True,
                    )
            db = new_db(server, "tools")
            bloat_scene(server, db)
            parts = agents.parts
            tools = await tool_latency(ToolRunner(parts.catalog, parts.clients), db, 30)
    finally:
        server.stop()

    def block(kind: str) -> dict[str, Any]:
        rs = runs[kind]
        return {
            key: summary([r[k] for r in rs])
            for key, k in (
                ("time_to_restore_s", "restore"),
                ("time_to_verified_s", "verified"),
                ("action_time_s", "action"),
                ("intake_latency_s", "intake_latency"),
            )
        }

    return {
        "benchmark": "mttr-postgres",
        "at": datetime.now(UTC).isoformat(),
        "incidents_per_kind": n,
        "lock_blocking": block("lock"),
        "bloat_vacuum": block("bloat"),
        "diagnostic_tool_latency_ms": tools,
        "note": "lock: verification holds 1 s (blocked_count stays 0); bloat: no hold",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=10)
    args = parser.parse_args()
    report = asyncio.run(main(args.n))
    out = write("postgres-mttr", report)
    print(json.dumps(report, indent=2))
    print(f"written to {out}")
