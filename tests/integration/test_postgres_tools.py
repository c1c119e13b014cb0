"""Every PostgreSQL tool against a real PostgreSQL 15 with the faults reproduced for real: a lock
held by an idle transaction, a long query, bloat from mass UPDATEs, an invalid index from a failed
CREATE INDEX CONCURRENTLY, idle-in-transaction pile-ups, unknown and hostile names. The tools run
as the least-privilege roles of deploy/postgres/roles.sql, never as a superuser."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from psycopg import sql

from activities.catalog import TargetClients
from activities.tools import ToolRunner
from activities.toolsets import default_catalog
from activities.toolsets import postgres as pg_tools
from core.config import Settings
from core.models import (
    PreparedWrite,
    Reversibility,
    RiskLevel,
    TargetRef,
    ToolCall,
    ToolErrorKind,
    ToolResult,
)
from core.targets import PostgresTarget
from tests.integration.pg_helpers import (
    Background,
    app_session,
    apply_roles,
    backend_exists,
    is_waiting_on_lock,
    make_bloat,
    new_database,
    pid_of,
    superuser,
    table_exists,
    target,
    wait_until,
)
from workers.lab.postgres import Postgres
from workers.lab.processes import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab(postgres: Postgres) -> Postgres:
    apply_roles(postgres)
    return postgres


@pytest_asyncio.fixture
async def runner(lab: Postgres) -> AsyncIterator[ToolRunner]:
    settings = Settings(
        docker=[],
        postgres=[
            target(lab),
            {
                "name": "gone",
                "dsn": f"host=127.0.0.1 port={free_port()} user=x",
                "connect_timeout": 2,
            },
            {
                "name": "badrole",
                "dsn": lab.dsn("postgres", user="nobody_here"),
                "connect_timeout": 2,
            },
        ],
    )
    clients = TargetClients(settings)
    yield ToolRunner(default_catalog(), clients)
    await clients.aclose()


@pytest.fixture
def db(lab: Postgres) -> str:
    return new_database(lab)


def ref(db: str | None = None, target_name: str = "lab") -> TargetRef:
    return TargetRef(service="postgres", target=target_name, resource=db or "")


async def run(
    runner: ToolRunner, tool: str, db: str | None = None, *, dry_run: bool = False, **params: Any
) -> ToolResult:
    return await runner.run(ToolCall(tool=tool, target=ref(db), params=params, dry_run=dry_run))


async def ok(runner: ToolRunner, tool: str, db: str | None = None, **params: Any) -> dict[str, Any]:
    result = await run(runner, tool, db, **params)
    assert result.ok, result.error
    return result.data


async def prepare_and_run(
    runner: ToolRunner, tool: str, db: str | None = None, **params: Any
) -> tuple[PreparedWrite, ToolResult]:
    """What the workflow does: prepare (before-state, preview), then run with that before-state."""
    call = ToolCall(tool=tool, target=ref(db), params=params)
    prepared = await runner.prepare(call)
    assert prepared.error is None, prepared.error
    result = await runner.run(
        call.model_copy(update={"before": prepared.before, "change_id": "c1"})
    )
    return prepared, result


def test_catalog_levels_and_reversibility() -> None:
    catalog = default_catalog()
    expected = {
        "postgres.vacuum": (RiskLevel.SOFT, Reversibility.STATELESS),
        "postgres.analyze": (RiskLevel.SOFT, Reversibility.STATELESS),
        "postgres.reindex": (RiskLevel.SOFT, Reversibility.STATELESS),
        "postgres.cancel_query": (RiskLevel.SOFT, Reversibility.STATELESS),
        "postgres.terminate_backend": (RiskLevel.SOFT, Reversibility.IRREVERSIBLE),
        "postgres.terminate_idle_in_transaction": (RiskLevel.SOFT, Reversibility.IRREVERSIBLE),
        "postgres.terminate_database_sessions": (RiskLevel.HARD, Reversibility.IRREVERSIBLE),
        "postgres.vacuum_full": (RiskLevel.HARD, Reversibility.IRREVERSIBLE),
        "postgres.reindex_locking": (RiskLevel.HARD, Reversibility.STATELESS),
        "postgres.drop_replication_slot": (RiskLevel.HARD, Reversibility.IRREVERSIBLE),
        "postgres.resume_replay": (RiskLevel.HARD, Reversibility.COMPENSATED),
    }
    for name, (level, rev) in expected.items():
        spec = catalog.get(name)
        assert spec.is_write and (spec.level, spec.reversibility) == (level, rev), name
    reads = [s.name for s in catalog.for_service("postgres") if not s.is_write]
    assert {
        "postgres.health",
        "postgres.activity",
        "postgres.locks",
        "postgres.idle_in_transaction",
        "postgres.sizes",
        "postgres.connections",
        "postgres.database",
        "postgres.replication",
        "postgres.bloat",
        "postgres.slow_queries",
        "postgres.index_health",
        "postgres.vacuum_status",
        "postgres.wraparound",
        "postgres.counters",
    } <= set(reads)


async def test_read_tools_on_a_real_server(runner: ToolRunner, lab: Postgres, db: str) -> None:
    make_bloat(lab, db, rows=2000)
    health = await ok(runner, "postgres.health")
    assert health["server_version_num"] >= 130000 and health["in_recovery"] is False
    assert 0 < health["connections"] <= health["max_connections"]
    assert 0 <= health["cache_hit_ratio"] <= 1 and health["uptime_seconds"] >= 0

    conns = await ok(runner, "postgres.connections", db)
    assert conns["total"] >= 1 and conns["usage_percent"] > 0
    sizes = await ok(runner, "postgres.sizes", db)
    assert any(d["database"] == db for d in sizes["databases"])
    assert sizes["tables"][0]["table"] == "items" and sizes["tables"][0]["total_bytes"] > 0
    overview = await ok(runner, "postgres.database", db)
    assert overview["database"] == db and overview["owner"] == "app" and overview["tables"] == 1
    counters = await ok(runner, "postgres.counters", db)
    assert counters["databases"][0]["database"] == db and counters["deadlocks"] == 0
    wrap = await ok(runner, "postgres.wraparound", db)
    assert wrap["risk"] == "ok" and wrap["max_xid_age"] > 0
    assert wrap["oldest_tables"] and wrap["oldest_tables"][0]["xid_age"] > 0
    vac = await ok(runner, "postgres.vacuum_status", db)
    assert vac["autovacuum_on"] is False  # the lab server runs with autovacuum off
    assert "public.items" in vac["autovacuum_disabled_tables"]
    assert any(t["table"] == "items" for t in vac["not_vacuumed"])
    assert any(t["table"] == "items" for t in vac["needs_vacuum"])
    idx = await ok(runner, "postgres.index_health", db)
    assert idx["invalid_count"] == 0 and any(i["index"] == "items_pkey" for i in idx["indexes"])
    assert "pgstattuple" in idx["bloat_note"]
    rep = await ok(runner, "postgres.replication")
    assert rep["role"] == "primary" and rep["standby_count"] == 0
    act = await ok(runner, "postgres.activity", db)
    assert act["database"] == db


async def test_lock_graph_names_the_blocker_and_terminate_unblocks_the_victim(
    runner: ToolRunner, lab: Postgres, db: str
) -> None:
    with app_session(lab, db, autocommit=True) as setup:
        setup.execute("CREATE TABLE accounts (id int PRIMARY KEY, balance int)")
        setup.execute("INSERT INTO accounts VALUES (1, 100), (2, 100)")
    blocker = app_session(lab, db, application="batch-job")
    blocker.execute("UPDATE accounts SET balance = balance - 10 WHERE id = 1")  # idle in tx now
    victim = Background(
        app_session(lab, db, application="web"), "UPDATE accounts SET balance = 0 WHERE id = 1"
    )
    try:
        wait_until(lambda: is_waiting_on_lock(lab, victim.pid), what="victim blocked")
        graph = await ok(runner, "postgres.locks", db)
        assert graph["blocked_count"] == 1
        assert graph["blocked"][0]["pid"] == victim.pid
        assert graph["blocked"][0]["blocked_by"] == [pid_of(blocker)]
        assert graph["blocked"][0]["lock"]["locktype"] == "transactionid"
        root = graph["root_blocker"]
        assert root["pid"] == pid_of(blocker) and root["state"] == "idle in transaction"
        assert root["application"] == "batch-job" and root["user"] == "app"
        assert root["blocks"] == [victim.pid] and root["protected"] is None
        assert "UPDATE accounts SET balance = balance - 10" in root["query"]

        dry = await run(runner, "postgres.terminate_backend", db, dry_run=True, pid=root["pid"])
        assert dry.ok and dry.data["dry_run"] is True
        assert f"pg_terminate_backend({root['pid']})" in dry.data["preview"]
        assert "batch-job" in dry.data["preview"] and "rolls back" in dry.data["preview"]
        assert backend_exists(lab, root["pid"])  # the dry run changed nothing

        prepared, result = await prepare_and_run(
            runner, "postgres.terminate_backend", db, pid=root["pid"], xact_start=root["xact_start"]
        )
        assert prepared.reversibility is Reversibility.IRREVERSIBLE and prepared.noop is False
        assert result.ok, result.error
        (ended,) = result.data["terminated"]
        assert ended["pid"] == root["pid"] and ended["user"] == "app"
        assert ended["application"] == "batch-job" and ended["state"] == "idle in transaction"
        assert "UPDATE accounts" in ended["query"] and result.data["exited"] is True
        assert victim.wait(10) and victim.error is None  # the victim's UPDATE went through
        assert not backend_exists(lab, root["pid"])
        with pytest.raises(psycopg.OperationalError):
            blocker.execute("SELECT 1")
        with app_session(lab, db) as check:
            assert check.execute("SELECT balance FROM accounts WHERE id = 1").fetchone() == (0,)

        # a retried activity (same before-state) never signals a recycled or other backend
        again = await runner.run(
            ToolCall(
                tool="postgres.terminate_backend",
                target=ref(db),
                params={"pid": root["pid"]},
                before=prepared.before,
            )
        )
        assert again.ok and again.data["terminated"] == [] and "already gone" in again.summary
        assert (await ok(runner, "postgres.locks", db))["blocked_count"] == 0
    finally:
        blocker.close()
        victim.conn.close()


async def test_termination_never_touches_superusers_or_our_own_sessions(
    runner: ToolRunner, lab: Postgres, db: str
) -> None:
    admin = psycopg.connect(lab.dsn(db), application_name="dba-console")
    admin.execute("SELECT 1")  # superuser, idle in transaction
    ours = psycopg.connect(lab.dsn(db, user="homelab_maint"), application_name="psql")
    ours.execute("SELECT 1")  # a session of a role the target logs in as, whatever its name
    hostile = psycopg.connect(lab.dsn(db, user="app"), application_name="homelab-agents-x")
    hostile.execute("SELECT 1")  # an application that calls itself homelab-agents: not spared
    app = app_session(lab, db)
    app.execute("SELECT 1")
    try:
        refused = await run(runner, "postgres.terminate_backend", db, pid=pid_of(admin))
        assert not refused.ok and refused.error is not None
        assert refused.error.kind is ToolErrorKind.INVALID
        assert "superuser session" in refused.error.message
        prepared = await runner.prepare(
            ToolCall(
                tool="postgres.terminate_backend", target=ref(db), params={"pid": pid_of(ours)}
            )
        )
        assert "REFUSED: a homelab-agents session (role homelab_maint)" in prepared.preview
        refused = await run(runner, "postgres.terminate_backend", db, pid=pid_of(ours))
        assert refused.error is not None and "homelab-agents session" in refused.error.message

        time.sleep(1.1)
        prepared, result = await prepare_and_run(
            runner, "postgres.terminate_idle_in_transaction", db, older_than_seconds=1
        )
        assert sorted(s["pid"] for s in prepared.before["sessions"]) == sorted(
            [pid_of(app), pid_of(hostile)]
        )
        protected = {s["pid"]: s["protected"] for s in prepared.before["protected"]}
        assert protected == {
            pid_of(admin): "superuser session",
            pid_of(ours): "a homelab-agents session (role homelab_maint)",
        }
        assert "leaving 2 protected" in prepared.preview
        assert result.ok and sorted(s["pid"] for s in result.data["terminated"]) == sorted(
            [pid_of(app), pid_of(hostile)]
        )
        assert backend_exists(lab, pid_of(admin)) and backend_exists(lab, pid_of(ours))
        assert not backend_exists(lab, pid_of(app)) and not backend_exists(lab, pid_of(hostile))
        # nothing left to do: the same cleanup is now a no-op
        noop = await runner.prepare(
            ToolCall(
                tool="postgres.terminate_idle_in_transaction",
                target=ref(db),
                params={"older_than_seconds": 1},
            )
        )
        assert noop.noop and noop.preview.startswith("no-op")
    finally:
        for conn in (admin, ours, hostile, app):
            conn.close()


async def test_long_running_query_is_cancelled_and_the_session_survives(
    runner: ToolRunner, lab: Postgres, db: str
) -> None:
    conn = app_session(lab, db, autocommit=True, application="report")
    slow = Background(conn, "SELECT pg_sleep(60)")
    try:

        async def long_queries() -> list[dict[str, Any]]:
            data = await ok(runner, "postgres.activity", db, min_query_seconds=0.3)
            return list(data["long_running_queries"])

        found: list[dict[str, Any]] = []
        for _ in range(100):
            found = await long_queries()
            if found:
                break
            await asyncio.sleep(0.1)
        assert [q["pid"] for q in found] == [slow.pid]
        assert found[0]["query"] == "SELECT pg_sleep(60)" and found[0]["application"] == "report"

        prepared, result = await prepare_and_run(runner, "postgres.cancel_query", db, pid=slow.pid)
        assert "pg_cancel_backend" in prepared.preview and "report" in prepared.preview
        assert result.ok and result.data["signalled"] and result.data["query_ended"]
        assert slow.wait(5) and isinstance(slow.error, psycopg.errors.QueryCanceled)
        assert backend_exists(lab, slow.pid)  # cancelled, not disconnected
        idle = await runner.prepare(
            ToolCall(tool="postgres.cancel_query", target=ref(db), params={"pid": slow.pid})
        )
        assert idle.noop and "no query running" in idle.preview
    finally:
        conn.close()


async def test_bloat_is_found_and_vacuum_removes_it(
    runner: ToolRunner, lab: Postgres, db: str
) -> None:
    make_bloat(lab, db)
    data = await ok(runner, "postgres.bloat", db, table="items")
    before = data["table"]
    assert before["n_dead_tup"] >= 20000 and before["dead_ratio"] >= 0.45
    assert before["estimated_bloat_bytes"] > 0 and before["autovacuum_enabled"] is False
    assert data["tables"][0]["table"] == "items"

    dry = await run(runner, "postgres.vacuum", db, dry_run=True, table="items")
    assert dry.ok
    assert dry.data["preview"].startswith('VACUUM (ANALYZE) "public"."items" in database')
    assert (await ok(runner, "postgres.bloat", db, table="items"))["table"]["n_dead_tup"] == before[
        "n_dead_tup"
    ]

    prepared, result = await prepare_and_run(runner, "postgres.vacuum", db, table="items")
    assert prepared.before["n_dead_tup"] == before["n_dead_tup"] and not prepared.noop
    assert result.ok, result.error
    assert result.data["n_dead_tup_before"] >= 20000 and result.data["n_dead_tup"] == 0
    after = (await ok(runner, "postgres.bloat", db, table="items"))["table"]
    assert after["n_dead_tup"] == 0 and after["vacuum_count"] == before["vacuum_count"] + 1
    assert after["last_analyze"] is not None

    retry = await runner.run(
        ToolCall(
            tool="postgres.vacuum",
            target=ref(db),
            params={"table": "items"},
            before=prepared.before,
        )
    )
    assert retry.ok and "already vacuumed" in retry.summary
    assert (await ok(runner, "postgres.bloat", db, table="items"))["table"][
        "vacuum_count"
    ] == after["vacuum_count"]
    noop = await runner.prepare(
        ToolCall(tool="postgres.vacuum", target=ref(db), params={"table": "items"})
    )
    assert noop.noop and noop.preview.startswith("no-op")


async def test_vacuum_full_rewrites_and_analyze_refreshes(
    runner: ToolRunner, lab: Postgres, db: str
) -> None:
    make_bloat(lab, db)
    prepared, result = await prepare_and_run(runner, "postgres.vacuum_full", db, table="items")
    assert "ACCESS EXCLUSIVE" in prepared.preview and 'VACUUM (FULL, ANALYZE) "public"."items"' in (
        prepared.preview
    )
    assert prepared.reversibility is Reversibility.IRREVERSIBLE
    assert result.ok, result.error
    assert result.data["relfilenode"] != prepared.before["relfilenode"]
    assert result.data["table_bytes"] < prepared.before["table_bytes"]
    with app_session(lab, db, autocommit=True) as conn:
        conn.execute("INSERT INTO items SELECT g, 0 FROM generate_series(30001, 30500) g")
    _, analyzed = await prepare_and_run(runner, "postgres.analyze", db, table="public.items")
    assert analyzed.ok and analyzed.data["analyze_count"] >= 1


async def test_invalid_index_from_failed_concurrent_build_is_rebuilt(
    runner: ToolRunner, lab: Postgres, db: str
) -> None:
    with app_session(lab, db, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, customer int)")
        conn.execute("INSERT INTO orders SELECT g, g % 100 FROM generate_series(1, 5000) g")
    writer = app_session(lab, db)
    writer.execute("UPDATE orders SET customer = 1 WHERE id = 1")  # an open writing transaction
    with app_session(lab, db, autocommit=True) as conn:
        conn.execute("SET statement_timeout = '500ms'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("CREATE INDEX CONCURRENTLY orders_customer_idx ON orders (customer)")
    writer.commit()
    writer.close()

    health = await ok(runner, "postgres.index_health", db)
    assert health["invalid_count"] == 1 and health["invalid"][0]["index"] == "orders_customer_idx"
    state = await ok(runner, "postgres.index", db, index="orders_customer_idx")
    assert state["valid"] is False and state["table"] == "orders"

    prepared, result = await prepare_and_run(
        runner, "postgres.reindex", db, index="orders_customer_idx"
    )
    assert (
        prepared.preview.startswith('REINDEX INDEX CONCURRENTLY "public"."orders_customer_idx"')
        and "1 invalid" in prepared.preview
    )
    assert result.ok, result.error
    assert result.data["invalid"] == []
    assert (await ok(runner, "postgres.index", db, index="orders_customer_idx"))["valid"] is True
    assert (await ok(runner, "postgres.index_health", db))["invalid_count"] == 0
    table_wide = await run(runner, "postgres.reindex", db, table="orders")
    assert table_wide.ok and len(table_wide.data["indexes"]) == 2


async def test_maintenance_role_without_ownership_is_refused_before_anything_runs(
    runner: ToolRunner, lab: Postgres, db: str
) -> None:
    with superuser(lab, db) as conn:
        conn.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'other_owner')"
            " THEN CREATE ROLE other_owner; END IF; END $$"
        )
        conn.execute("CREATE TABLE ledger (id int)")
        conn.execute("ALTER TABLE ledger OWNER TO other_owner")
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO other_owner").format(sql.Identifier(db)))
        conn.execute("INSERT INTO ledger SELECT generate_series(1, 100)")
        conn.execute("DELETE FROM ledger")
    prepared = await runner.prepare(
        ToolCall(tool="postgres.vacuum", target=ref(db), params={"table": "ledger"})
    )
    assert prepared.error is not None and prepared.error.kind is ToolErrorKind.FAILED
    assert "GRANT other_owner TO homelab_maint" in prepared.error.message
    refused = await run(runner, "postgres.vacuum", db, table="ledger")
    assert not refused.ok
    assert (await ok(runner, "postgres.bloat", db, table="ledger"))["table"]["vacuum_count"] == 0


async def test_unknown_and_hostile_names_are_rejected_or_quoted_harmlessly(
    runner: ToolRunner, lab: Postgres, db: str
) -> None:
    weird = 'we"ird; DROP TABLE victims; --'
    with app_session(lab, db, autocommit=True) as conn:
        conn.execute("CREATE TABLE victims (id int)")
        conn.execute(sql.SQL("CREATE TABLE {} (id int)").format(sql.Identifier(weird)))
        conn.execute(
            sql.SQL("INSERT INTO {} SELECT generate_series(1, 50)").format(sql.Identifier(weird))
        )
        conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(weird)))

    for table in ("victims; DROP TABLE victims; --", "nope", 'victims" CASCADE; --'):
        result = await run(runner, "postgres.vacuum", db, table=table)
        assert not result.ok and result.error is not None
        assert result.error.kind is ToolErrorKind.NOT_FOUND, result.error
        assert "no table" in result.error.message
    for hostile_db in (f"{db}'; DROP DATABASE {db}; --", "no_such_db"):
        result = await run(runner, "postgres.bloat", hostile_db)
        assert not result.ok and result.error is not None
        assert (
            result.error.kind is ToolErrorKind.NOT_FOUND and "no database" in result.error.message
        )
    bad = await run(runner, "postgres.reindex", db, index="x; DROP TABLE victims")
    assert not bad.ok and bad.error is not None and bad.error.kind is ToolErrorKind.NOT_FOUND
    slot = await run(runner, "postgres.drop_replication_slot", slot="s'); DROP TABLE victims; --")
    assert not slot.ok and slot.error is not None and slot.error.kind is ToolErrorKind.INVALID
    nul = await run(runner, "postgres.vacuum", db, table="vic\x00tims")
    assert not nul.ok and nul.error is not None and nul.error.kind is ToolErrorKind.INVALID
    pid = await run(runner, "postgres.terminate_backend", db, pid=-1)
    assert not pid.ok and pid.error is not None and pid.error.kind is ToolErrorKind.INVALID

    # the strange but real table is quoted, not executed
    vacuumed = await run(runner, "postgres.vacuum", db, table=weird)
    assert vacuumed.ok, vacuumed.error
    assert vacuumed.data["n_dead_tup_before"] == 50 and vacuumed.data["n_dead_tup"] == 0
    assert table_exists(lab, db, "public", "victims")
    assert table_exists(lab, db, "public", weird)
    with superuser(lab) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone()


async def test_idle_in_transaction_pile_up_is_cleaned_and_recorded(
    runner: ToolRunner, lab: Postgres, db: str
) -> None:
    sessions = [app_session(lab, db, application=f"worker-{i}") for i in range(3)]
    for conn in sessions:
        conn.execute("SELECT now()")
    busy = app_session(lab, db, application="fresh")
    try:
        time.sleep(1.2)
        busy.execute("SELECT 1")  # idle in transaction too, but only just
        seen = await ok(runner, "postgres.idle_in_transaction", db, min_seconds=1)
        assert {s["pid"] for s in seen["sessions"]} == {pid_of(c) for c in sessions}
        assert seen["eligible_count"] == 3 and seen["oldest_seconds"] >= 1
        prepared, result = await prepare_and_run(
            runner, "postgres.terminate_idle_in_transaction", db, older_than_seconds=1
        )
        assert "3 session(s) idle in transaction" in prepared.preview
        assert result.ok and result.data["terminated_count"] == 3
        recorded = {s["application"]: s for s in result.data["terminated"]}
        assert set(recorded) == {"worker-0", "worker-1", "worker-2"}
        assert all(
            s["user"] == "app"
            and s["state"] == "idle in transaction"
            and s["query"] == "SELECT now()"
            for s in recorded.values()
        )
        assert backend_exists(lab, pid_of(busy))
    finally:
        for conn in [*sessions, busy]:
            conn.close()


async def test_slow_queries_says_clearly_when_pg_stat_statements_is_missing(
    runner: ToolRunner,
) -> None:
    result = await run(runner, "postgres.slow_queries")
    assert not result.ok and result.error is not None
    assert result.error.kind is ToolErrorKind.UNSUPPORTED
    assert "shared_preload_libraries" in result.error.message


async def test_unreachable_and_misconfigured_targets_are_typed(runner: ToolRunner) -> None:
    down = await runner.run(ToolCall(tool="postgres.health", target=ref(target_name="gone")))
    assert not down.ok and down.error is not None and down.error.kind is ToolErrorKind.UNREACHABLE
    role = await runner.run(ToolCall(tool="postgres.health", target=ref(target_name="badrole")))
    assert not role.ok and role.error is not None and role.error.kind is ToolErrorKind.FAILED
    assert "nobody_here" in role.error.message


async def test_pools_close_cleanly_and_probe_reports_roles(lab: Postgres) -> None:
    settings = Settings(docker=[], postgres=[target(lab)])
    clients = TargetClients(settings)
    runner = ToolRunner(default_catalog(), clients)
    assert (await runner.run(ToolCall(tool="postgres.health", target=ref()))).ok

    def ours() -> int:
        with superuser(lab) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'homelab-agents'"
            ).fetchone()
        return int(row[0]) if row else 0

    assert ours() >= 1
    await clients.aclose()
    wait_until(lambda: ours() == 0, what="pool connections closed")
    text = pg_tools.probe(PostgresTarget.model_validate(target(lab)))
    assert "diagnostics as homelab_monitor (pg_monitor)" in text
    assert "maintenance as homelab_maint (pg_signal_backend, REPLICATION)" in text


async def test_sessions_of_a_database_are_terminated_only_with_the_filter(
    runner: ToolRunner, lab: Postgres, db: str
) -> None:
    apps = [app_session(lab, db, autocommit=True, application=f"api-{i}") for i in range(2)]
    admin = psycopg.connect(lab.dsn(db), autocommit=True, application_name="psql")
    try:
        for conn in [*apps, admin]:
            conn.execute("SELECT 1")
        dry = await run(
            runner, "postgres.terminate_database_sessions", db, dry_run=True, user="app"
        )
        assert dry.ok and "2 session(s) of app" in dry.data["preview"]
        prepared, result = await prepare_and_run(
            runner, "postgres.terminate_database_sessions", db, user="app"
        )
        assert [s["application"] for s in prepared.before["sessions"]] == ["api-0", "api-1"]
        assert result.ok and result.data["terminated_count"] == 2
        assert {s["application"] for s in result.data["terminated"]} == {"api-0", "api-1"}
        assert all(not backend_exists(lab, pid_of(c)) for c in apps)
        assert backend_exists(lab, pid_of(admin))  # superuser: never touched
        spec = default_catalog().get("postgres.terminate_database_sessions")
        assert spec.level is RiskLevel.HARD
    finally:
        for conn in [*apps, admin]:
            conn.close()


async def test_deadlocks_and_rollbacks_are_counted(
    runner: ToolRunner, lab: Postgres, db: str
) -> None:
    with app_session(lab, db, autocommit=True) as setup:
        setup.execute("CREATE TABLE pair (id int PRIMARY KEY, v int)")
        setup.execute("INSERT INTO pair VALUES (1, 0), (2, 0)")
    first, second = app_session(lab, db), app_session(lab, db)
    try:
        first.execute("UPDATE pair SET v = 1 WHERE id = 1")
        second.execute("UPDATE pair SET v = 2 WHERE id = 2")
        crossing = Background(first, "UPDATE pair SET v = 1 WHERE id = 2")
        wait_until(lambda: is_waiting_on_lock(lab, crossing.pid), what="first waits")
        second_error: BaseException | None = None
        try:
            second.execute("UPDATE pair SET v = 2 WHERE id = 1")
            second.commit()
        except psycopg.errors.DeadlockDetected as exc:  # whichever waited longer is the victim
            second_error = exc
            second.rollback()
        assert crossing.wait(10)
        errors = [e for e in (second_error, crossing.error) if e is not None]
        assert len(errors) == 1 and isinstance(errors[0], psycopg.errors.DeadlockDetected)
        first.close()  # a backend flushes its statistics when it exits
        second.close()

        async def counted() -> dict[str, Any]:
            return await ok(runner, "postgres.counters", db)

        data = await counted()
        for _ in range(40):
            if data["deadlocks"] >= 1 and data["rollbacks"] >= 1:
                break
            await asyncio.sleep(0.1)
            data = await counted()
        assert data["deadlocks"] == 1 and data["rollbacks"] >= 1
        assert data["databases"][0]["rollback_ratio"] > 0
    finally:
        first.close()
        second.close()


async def test_running_vacuum_progress_is_reported(
    runner: ToolRunner, lab: Postgres, db: str
) -> None:
    make_bloat(lab, db, rows=20000)
    slow = superuser(lab, db)
    slow.execute("SET vacuum_cost_delay = 100")
    slow.execute("SET vacuum_cost_limit = 1")
    vacuum = Background(slow, "VACUUM items")
    try:
        data: dict[str, Any] = {}
        for _ in range(100):
            data = await ok(runner, "postgres.vacuum_status", db)
            if data["running_count"]:
                break
            await asyncio.sleep(0.05)
        (running,) = data["running"]
        assert running["pid"] == vacuum.pid and running["relation"] == "items"
        assert running["database"] == db and running["autovacuum"] is False
        assert running["heap_blks_total"] > 0 and running["phase"]
    finally:
        with superuser(lab) as conn:
            conn.execute("SELECT pg_cancel_backend(%s)", (vacuum.pid,))
        vacuum.wait(10)
        slow.close()


async def test_index_health_finds_unused_duplicate_and_bloated_indexes(
    runner: ToolRunner, lab: Postgres, db: str
) -> None:
    with superuser(lab, db) as conn:
        conn.execute("CREATE EXTENSION pgstattuple")
    with app_session(lab, db, autocommit=True) as conn:
        conn.execute("CREATE TABLE logs (id int PRIMARY KEY, host int)")
        conn.execute("INSERT INTO logs SELECT g, g % 50 FROM generate_series(1, 100000) g")
        conn.execute("CREATE INDEX logs_host_a ON logs (host)")
        conn.execute("CREATE INDEX logs_host_b ON logs (host)")
        conn.execute("DELETE FROM logs WHERE id % 20 <> 0")
        conn.execute("VACUUM logs")
    data = await ok(runner, "postgres.index_health", db, table="logs", min_bytes=0)
    assert data["duplicates"] == [
        {"table": "logs", "schema": "public", "indexes": ["logs_host_a", "logs_host_b"]}
    ] or data["duplicates"] == [
        {"table": "logs", "schema": "public", "indexes": ["logs_host_b", "logs_host_a"]}
    ]
    assert {"logs_host_a", "logs_host_b"} <= {i["index"] for i in data["unused"]}
    assert "logs_pkey" not in {i["index"] for i in data["unused"]}  # backs a constraint
    bloated = {i["index"]: i for i in data["bloated"]}
    assert "logs_pkey" in bloated and bloated["logs_pkey"]["avg_leaf_density"] < 50
    assert bloated["logs_pkey"]["estimated_bloat_bytes"] > 0 and data["bloat_note"] == ""

    _, rebuilt = await prepare_and_run(runner, "postgres.reindex_locking", db, index="logs_pkey")
    assert rebuilt.ok and rebuilt.data["bytes"] < rebuilt.data["bytes_before"]
    after = await ok(runner, "postgres.index_health", db, table="logs", min_bytes=0)
    assert "logs_pkey" not in {i["index"] for i in after["bloated"]}
