"""The PostgreSQL tools on a real primary (pg_stat_statements preloaded, 30 connections) with a
real streaming replica made by pg_basebackup: replay paused and resumed, replication slots,
connection saturation, slow statements."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import pytest_asyncio

from activities.catalog import TargetClients
from activities.tools import ToolRunner
from activities.toolsets import default_catalog
from core.config import Settings
from core.models import Reversibility, TargetRef, ToolCall, ToolErrorKind, ToolResult
from tests.conftest import PgCluster
from tests.integration.pg_helpers import (
    app_session,
    apply_roles,
    backend_exists,
    new_database,
    superuser,
    target,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(pg_cluster: PgCluster) -> PgCluster:
    apply_roles(pg_cluster.primary)  # roles and grants reach the replica by replication
    wait_until(
        lambda: _replica_has_role(pg_cluster),
        what="roles replicated to the standby",
    )
    return pg_cluster


def _replica_has_role(cluster: PgCluster) -> bool:
    with superuser(cluster.replica) as conn:
        return (
            conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'homelab_maint'").fetchone()
            is not None
        )


@pytest_asyncio.fixture
async def runner(cluster: PgCluster) -> AsyncIterator[ToolRunner]:
    settings = Settings(
        docker=[],
        postgres=[target(cluster.primary, "primary"), target(cluster.replica, "replica")],
    )
    clients = TargetClients(settings)
    yield ToolRunner(default_catalog(), clients)
    await clients.aclose()


async def run(
    runner: ToolRunner, tool: str, on: str, db: str = "", *, dry_run: bool = False, **params: Any
) -> ToolResult:
    return await runner.run(
        ToolCall(
            tool=tool,
            target=TargetRef(service="postgres", target=on, resource=db),
            params=params,
            dry_run=dry_run,
        )
    )


async def ok(runner: ToolRunner, tool: str, on: str, db: str = "", **params: Any) -> dict[str, Any]:
    result = await run(runner, tool, on, db, **params)
    assert result.ok, result.error
    return result.data


async def test_paused_replay_is_seen_and_resumed(runner: ToolRunner, cluster: PgCluster) -> None:
    db = new_database(cluster.primary, "rep")
    with superuser(cluster.replica) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    try:
        with app_session(cluster.primary, db, autocommit=True) as conn:
            conn.execute("CREATE TABLE events AS SELECT g AS id FROM generate_series(1, 20000) g")

        async def paused_and_behind() -> dict[str, Any] | None:
            data = await ok(runner, "postgres.replication", "replica")
            rep = data["replica"]
            return data if rep["replay_paused"] and rep["replay_lag_bytes"] > 0 else None

        seen = None
        for _ in range(100):
            seen = await paused_and_behind()
            if seen:
                break
            await asyncio.sleep(0.1)
        assert seen is not None, "the replica never showed paused replay with lag"
        assert seen["role"] == "replica" and seen["replica"]["pause_state"] == "paused"
        assert seen["replica"]["streaming"] is True
        primary = await ok(runner, "postgres.replication", "primary")
        assert primary["role"] == "primary" and primary["standby_count"] == 1
        assert primary["max_replay_lag_bytes"] > 0

        call = ToolCall(tool="postgres.resume_replay", target=TargetRef.parse("postgres:replica"))
        prepared = await runner.prepare(call)
        assert prepared.error is None and not prepared.noop
        assert prepared.reversibility is Reversibility.COMPENSATED
        assert prepared.compensation is not None
        assert prepared.compensation.tool == "postgres.pause_replay"
        assert prepared.preview.startswith("SELECT pg_wal_replay_resume() on postgres:replica")
        result = await runner.run(call.model_copy(update={"before": prepared.before}))
        assert result.ok, result.error
        assert result.data["paused"] is False and result.data["replay_lag_bytes_before"] > 0

        async def caught_up() -> bool:
            rep = (await ok(runner, "postgres.replication", "replica"))["replica"]
            return rep["replay_lag_bytes"] == 0 and rep["replay_paused"] is False

        for _ in range(100):
            if await caught_up():
                break
            await asyncio.sleep(0.1)
        assert await caught_up()
        with superuser(cluster.replica, db) as conn:
            assert conn.execute("SELECT count(*) FROM events").fetchone() == (20000,)
        # the registered compensation really undoes it (the saga's rollback path)
        undo = await runner.run(prepared.compensation)
        assert undo.ok and undo.data["paused"] is True
        with superuser(cluster.replica) as conn:
            assert conn.execute("SELECT pg_is_wal_replay_paused()").fetchone() == (True,)
        redo = await run(runner, "postgres.resume_replay", "replica")
        assert redo.ok and redo.data["paused"] is False
        on_primary = await run(runner, "postgres.resume_replay", "primary")
        assert not on_primary.ok and on_primary.error is not None
        assert on_primary.error.kind is ToolErrorKind.UNSUPPORTED
    finally:
        with superuser(cluster.replica) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")


async def test_inactive_slot_is_dropped_and_active_one_refused(
    runner: ToolRunner, cluster: PgCluster
) -> None:
    with superuser(cluster.primary) as conn:
        conn.execute("SELECT pg_create_physical_replication_slot('stale_slot', true)")
        conn.execute("SELECT pg_switch_wal()")
    try:
        data = await ok(runner, "postgres.replication", "primary", slot="stale_slot")
        assert data["slot_exists"] is True and data["slot"]["active"] is False
        assert "stale_slot" in [s["slot_name"] for s in data["inactive_slots"]]
        assert data["slot"]["retained_bytes"] is not None and data["slot"]["retained_bytes"] >= 0
        active = next(s for s in data["slots"] if s["slot_name"] == "replica_slot")
        assert active["active"] is True

        refused = await run(
            runner, "postgres.drop_replication_slot", "primary", slot="replica_slot"
        )
        assert not refused.ok and refused.error is not None
        assert refused.error.kind is ToolErrorKind.CONFLICT and "active" in refused.error.message

        dry = await run(
            runner, "postgres.drop_replication_slot", "primary", dry_run=True, slot="stale_slot"
        )
        assert dry.ok and "pg_drop_replication_slot('stale_slot')" in dry.data["preview"]
        assert (await ok(runner, "postgres.replication", "primary", slot="stale_slot"))[
            "slot_exists"
        ]

        dropped = await run(runner, "postgres.drop_replication_slot", "primary", slot="stale_slot")
        assert dropped.ok, dropped.error
        assert dropped.data["dropped"]["slot_name"] == "stale_slot"
        after = await ok(runner, "postgres.replication", "primary", slot="stale_slot")
        assert after["slot_exists"] is False and after["slot"] is None
        noop = await runner.prepare(
            ToolCall(
                tool="postgres.drop_replication_slot",
                target=TargetRef.parse("postgres:primary"),
                params={"slot": "stale_slot"},
            )
        )
        assert noop.noop and "does not exist" in noop.preview
    finally:
        with superuser(cluster.primary) as conn:
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                " WHERE slot_name = 'stale_slot'"
            )


async def test_replication_connections_are_never_terminated(
    runner: ToolRunner, cluster: PgCluster
) -> None:
    with superuser(cluster.primary) as conn:
        row = conn.execute("SELECT pid FROM pg_stat_replication").fetchone()
    assert row is not None
    walsender = int(row[0])
    refused = await run(runner, "postgres.terminate_backend", "primary", pid=walsender)
    assert not refused.ok and refused.error is not None
    assert refused.error.kind is ToolErrorKind.INVALID
    assert "not a client backend (walsender)" in refused.error.message
    assert backend_exists(cluster.primary, walsender)


async def test_connection_saturation_is_measured_and_relieved(
    runner: ToolRunner, cluster: PgCluster
) -> None:
    db = new_database(cluster.primary, "sat")
    held: list[psycopg.Connection[Any]] = []
    try:
        base = await ok(runner, "postgres.connections", "primary", db)
        usable = base["max_connections"] - base["superuser_reserved"]
        while len(held) + base["total"] < int(usable * 0.85):
            conn = app_session(cluster.primary, db, application="leaky-pool")
            conn.execute("SELECT 1")  # and never commits
            held.append(conn)
        time.sleep(1.1)
        full = await ok(runner, "postgres.connections", "primary", db)
        assert full["usage_percent"] >= 80, full
        assert full["by_application"]["leaky-pool"] == len(held)
        assert full["idle_in_transaction"] == len(held)

        result = await run(
            runner, "postgres.terminate_idle_in_transaction", "primary", db, older_than_seconds=1
        )
        assert result.ok and result.data["terminated_count"] == len(held)
        after = await ok(runner, "postgres.connections", "primary", db)
        assert after["usage_percent"] < 50 and after["idle_in_transaction"] == 0
    finally:
        for conn in held:
            conn.close()


async def test_slow_statements_from_pg_stat_statements(
    runner: ToolRunner, cluster: PgCluster
) -> None:
    db = new_database(cluster.primary, "pss")
    missing = await run(runner, "postgres.slow_queries", "primary", db)
    assert not missing.ok and missing.error is not None
    assert missing.error.kind is ToolErrorKind.UNSUPPORTED
    assert "CREATE EXTENSION pg_stat_statements" in missing.error.message
    with superuser(cluster.primary, db) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
    with app_session(cluster.primary, db, autocommit=True) as conn:
        for _ in range(3):
            conn.execute("SELECT pg_sleep(0.2)")
        conn.execute("SELECT 1")
    data = await ok(
        runner, "postgres.slow_queries", "primary", db, order_by="mean", min_mean_ms=150
    )
    assert data["count"] >= 1
    top = data["statements"][0]
    assert "pg_sleep" in top["query"] and top["calls"] == 3 and top["mean_ms"] >= 190
    assert top["database"] == db and top["user"] == "app"
