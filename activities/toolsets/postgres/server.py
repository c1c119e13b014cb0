"""Read tools for what the server is doing: health, sessions, locks, connections, slow queries."""

from __future__ import annotations

from typing import Any, Literal

from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.postgres.client import (
    CLIENT_BACKEND,
    IDLE_IN_TRANSACTION,
    TOOLSET,
    client_for,
    database_for,
    place,
    plain,
    plain_rows,
    query_text,
    share,
)
from activities.toolsets.postgres.lookup import session_brief, sessions
from activities.toolsets.postgres.tables import TABLE_SIZES_SQL, SizeParams
from core.models import ToolErrorKind
from core.units import human_bytes


@TOOLSET.read(
    "health",
    "Version, uptime, standby or primary, connections vs max_connections, cache hit ratio.",
    NoParams,
    needs_resource=False,
)
async def health(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    row = await client_for(ctx).fetch_one(
        None,
        """
        SELECT version() AS version,
               current_setting('server_version') AS server_version,
               current_setting('server_version_num')::int AS server_version_num,
               pg_postmaster_start_time() AS started_at,
               extract(epoch FROM now() - pg_postmaster_start_time())::bigint AS uptime_seconds,
               pg_is_in_recovery() AS in_recovery,
               current_setting('max_connections')::int AS max_connections,
               current_setting('superuser_reserved_connections')::int AS superuser_reserved,
               (SELECT count(*) FROM pg_stat_activity
                 WHERE backend_type = 'client backend')::int AS connections,
               (SELECT sum(blks_hit)::float8 / nullif(sum(blks_hit) + sum(blks_read), 0)
                  FROM pg_stat_database) AS cache_hit_ratio,
               (SELECT count(*) FROM pg_database WHERE NOT datistemplate)::int AS databases
        """,
    )
    assert row is not None
    data = {k: plain(v) for k, v in row.items()}
    usable = max(data["max_connections"] - data["superuser_reserved"], 1)
    data["usage_percent"] = round(100 * data["connections"] / usable, 1)
    data["cache_hit_ratio"] = (
        None if data["cache_hit_ratio"] is None else round(data["cache_hit_ratio"], 4)
    )
    data["up"] = True
    data["_summary"] = (
        f"PostgreSQL {data['server_version']} {'standby' if data['in_recovery'] else 'primary'}, "
        f"up {data['uptime_seconds']}s, {data['connections']}/{data['max_connections']} "
        f"connections, cache hit {data['cache_hit_ratio']}"
    )
    return data


class ActivityParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_query_seconds: float = Field(default=60, ge=0, description="long-running query threshold")
    min_xact_seconds: float = Field(default=60, ge=0, description="long transaction threshold")
    limit: int = Field(default=50, ge=1, le=500)


@TOOLSET.read(
    "activity",
    "Sessions (all, or the resource database's) with long-running queries and transactions.",
    ActivityParams,
    needs_resource=False,
)
async def activity(ctx: ToolContext[ActivityParams]) -> dict[str, Any]:
    db = await database_for(ctx)
    p = ctx.params
    rows = await sessions(ctx, db)
    clients = [s for s in rows if s["backend_type"] == CLIENT_BACKEND]
    by_state: dict[str, int] = {}
    for s in clients:
        by_state[s["state"] or "unknown"] = by_state.get(s["state"] or "unknown", 0) + 1
    long_queries = sorted(
        (
            s
            for s in clients
            if s["state"] == "active" and (s["query_seconds"] or 0) >= p.min_query_seconds
        ),
        key=lambda s: -(s["query_seconds"] or 0),
    )
    long_xacts = sorted(
        (s for s in clients if s["xact_start"] and (s["xact_seconds"] or 0) >= p.min_xact_seconds),
        key=lambda s: -(s["xact_seconds"] or 0),
    )
    in_xact = sorted(
        (s for s in clients if s["xact_start"]), key=lambda s: -(s["xact_seconds"] or 0)
    )
    oldest = in_xact[0] if in_xact else None
    return {
        "database": db,
        "sessions": rows[: p.limit],
        "client_sessions": len(clients),
        "by_state": by_state,
        "long_running_queries": long_queries[: p.limit],
        "long_running_query_count": len(long_queries),
        "long_transactions": long_xacts[: p.limit],
        "long_transaction_count": len(long_xacts),
        "oldest_transaction": oldest,
        "oldest_xact_seconds": oldest["xact_seconds"] if oldest else 0,
        "_summary": f"{len(clients)} client sessions on {place(ctx, db)}, "
        f"{len(long_queries)} queries ≥ {p.min_query_seconds:g}s, "
        f"{len(long_xacts)} transactions ≥ {p.min_xact_seconds:g}s",
    }


_WAITING_LOCK_SQL = """
SELECT l.pid, l.locktype, l.mode,
       CASE WHEN l.relation IS NOT NULL AND l.database = (SELECT oid FROM pg_database
                                                          WHERE datname = current_database())
            THEN l.relation::regclass::text ELSE l.relation::text END AS relation,
       l.transactionid::text AS transactionid
FROM pg_locks l WHERE NOT l.granted AND l.pid = ANY(%(pids)s)
"""


@TOOLSET.read(
    "locks",
    "Lock graph: blocked sessions → the sessions blocking them (pg_blocking_pids), root blockers first.",
    NoParams,
    needs_resource=False,
)
async def locks(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    db = await database_for(ctx)
    everyone = {s["pid"]: s for s in await sessions(ctx)}
    blocked = [
        s for s in everyone.values() if s["blocked_by"] and (db is None or s["database"] == db)
    ]
    waiting: dict[int, dict[str, Any]] = {}
    if blocked:
        for row in await client_for(ctx).fetch(
            db, _WAITING_LOCK_SQL, {"pids": [s["pid"] for s in blocked]}
        ):
            waiting.setdefault(row["pid"], plain(row))
    edges = {s["pid"]: list(s["blocked_by"]) for s in blocked}
    # everything (transitively) waiting behind each blocker
    behind: dict[int, set[int]] = {}
    for victim, blockers in edges.items():
        stack = list(blockers)
        seen: set[int] = set()
        while stack:
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            behind.setdefault(pid, set()).add(victim)
            stack.extend(edges.get(pid, []))
    blockers = []
    for pid, victims in behind.items():
        session = dict(everyone.get(pid) or {"pid": pid, "state": "gone", "query": ""})
        session["blocks"] = sorted(victims)
        session["blocks_count"] = len(victims)
        session["is_root"] = pid not in edges
        blockers.append(session)
    blockers.sort(key=lambda s: (-s["blocks_count"], -(s.get("xact_seconds") or 0)))
    roots = [b for b in blockers if b["is_root"]]
    victims_out = [
        {
            **s,
            "wait_seconds": s["state_seconds"],
            "lock": waiting.get(s["pid"]),
        }
        for s in sorted(blocked, key=lambda s: -(s["state_seconds"] or 0))
    ]
    root = roots[0] if roots else None
    return {
        "database": db,
        "blocked_count": len(blocked),
        "blocked": victims_out,
        "blockers": blockers,
        "root_blockers": roots,
        "root_blocker": root,
        "_summary": (
            f"{len(blocked)} blocked session(s) on {place(ctx, db)}"
            + (
                f"; root blocker {session_brief(root)} blocks {root['blocks_count']}"
                if root
                else ""
            )
        ),
    }


class IdleParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_seconds: float = Field(default=0, ge=0, description="only sessions idle at least this long")


@TOOLSET.read(
    "idle_in_transaction",
    "Sessions idle inside an open transaction (holding locks and the xmin horizon).",
    IdleParams,
    needs_resource=False,
)
async def idle_in_transaction(ctx: ToolContext[IdleParams]) -> dict[str, Any]:
    db = await database_for(ctx)
    found = sorted(
        (
            s
            for s in await sessions(ctx, db)
            if s["state"] in IDLE_IN_TRANSACTION
            and (s["state_seconds"] or 0) >= ctx.params.min_seconds
        ),
        key=lambda s: -(s["state_seconds"] or 0),
    )
    eligible = [s for s in found if not s["protected"]]
    return {
        "database": db,
        "sessions": found,
        "count": len(found),
        "eligible_count": len(eligible),
        "oldest_seconds": found[0]["state_seconds"] if found else 0,
        "_summary": f"{len(found)} idle-in-transaction session(s) ≥ {ctx.params.min_seconds:g}s "
        f"on {place(ctx, db)} ({len(eligible)} may be terminated)",
    }


@TOOLSET.read(
    "connections",
    "Connections by database, state, user, client and application, against max_connections.",
    NoParams,
    needs_resource=False,
)
async def connections(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    db = await database_for(ctx)
    settings = await client_for(ctx).fetch_one(
        None,
        "SELECT current_setting('max_connections')::int AS max_connections,"
        " current_setting('superuser_reserved_connections')::int AS superuser_reserved",
    )
    assert settings is not None
    everyone = [s for s in await sessions(ctx) if s["backend_type"] == CLIENT_BACKEND]
    total = len(everyone) + 1  # this very session counts too
    scoped = [s for s in everyone if db is None or s["database"] == db]

    def count(key: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in scoped:
            name = str(s.get(key) or "")
            out[name] = out.get(name, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    usable = max(settings["max_connections"] - settings["superuser_reserved"], 1)
    usage = round(100 * total / usable, 1)
    return {
        "database": db,
        "total": total,
        "in_database": len(scoped) if db else None,
        "max_connections": settings["max_connections"],
        "superuser_reserved": settings["superuser_reserved"],
        "available": usable - total,
        "usage_percent": usage,
        "by_database": count("database"),
        "by_state": count("state"),
        "by_user": count("user"),
        "by_client": count("client_addr"),
        "by_application": count("application"),
        "idle_in_transaction": sum(1 for s in scoped if s["state"] in IDLE_IN_TRANSACTION),
        "_summary": f"{total}/{settings['max_connections']} connections ({usage}% of usable)"
        + (f", {len(scoped)} on {db}" if db else ""),
    }


@TOOLSET.read(
    "counters",
    "Per-database commits, rollbacks (ratio), deadlocks, conflicts and temp files since reset.",
    NoParams,
    needs_resource=False,
)
async def counters(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    db = await database_for(ctx)
    rows = plain_rows(
        await client_for(ctx).fetch(
            None,
            "SELECT datname AS database, numbackends, xact_commit, xact_rollback, deadlocks,"
            " conflicts, temp_files, temp_bytes, blks_hit, blks_read, stats_reset"
            " FROM pg_stat_database WHERE datname IS NOT NULL"
            " AND (%(db)s::text IS NULL OR datname = %(db)s) ORDER BY datname",
            {"db": db},
        )
    )
    for r in rows:
        r["rollback_ratio"] = share(r["xact_rollback"], r["xact_commit"] + r["xact_rollback"])
    total_deadlocks = sum(r["deadlocks"] for r in rows)
    return {
        "database": db,
        "databases": rows,
        "deadlocks": total_deadlocks,
        "rollbacks": sum(r["xact_rollback"] for r in rows),
        "commits": sum(r["xact_commit"] for r in rows),
        "_summary": f"{total_deadlocks} deadlock(s), "
        f"{sum(r['xact_rollback'] for r in rows)} rollback(s) on {place(ctx, db)} since reset",
    }


class SlowQueryParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_by: Literal["total", "mean", "calls", "max"] = "total"
    min_mean_ms: float = Field(default=0, ge=0)
    limit: int = Field(default=20, ge=1, le=200)


_ORDER_COLUMNS = {
    "total": "total_exec_time",
    "mean": "mean_exec_time",
    "calls": "calls",
    "max": "max_exec_time",
}


@TOOLSET.read(
    "slow_queries",
    "Top statements from pg_stat_statements (a clear error when it is not installed).",
    SlowQueryParams,
    needs_resource=False,
)
async def slow_queries(ctx: ToolContext[SlowQueryParams]) -> dict[str, Any]:
    db = await database_for(ctx)
    client = client_for(ctx)
    info = await client.fetch_one(
        db,
        "SELECT current_database() AS db, current_setting('shared_preload_libraries') AS preload,"
        " (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
        "   WHERE e.extname = 'pg_stat_statements') AS schema",
    )
    assert info is not None
    preloaded = "pg_stat_statements" in [
        part.strip() for part in (info["preload"] or "").split(",")
    ]
    if not preloaded:
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED,
            f"pg_stat_statements is not installed on postgres target {ctx.ref.target}: add it to "
            "shared_preload_libraries (restart), then CREATE EXTENSION pg_stat_statements",
        )
    if info["schema"] is None:
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED,
            f"pg_stat_statements is preloaded but not created in database {info['db']!r}: "
            "CREATE EXTENSION pg_stat_statements",
        )
    p = ctx.params
    query = sql.SQL(
        "SELECT s.queryid::text AS queryid, d.datname AS database, r.rolname AS user, s.calls,"
        " round(s.total_exec_time::numeric, 3) AS total_ms,"
        " round(s.mean_exec_time::numeric, 3) AS mean_ms,"
        " round(s.max_exec_time::numeric, 3) AS max_ms, s.rows,"
        " s.shared_blks_hit, s.shared_blks_read, s.temp_blks_written, s.query"
        " FROM {view} s LEFT JOIN pg_database d ON d.oid = s.dbid"
        " LEFT JOIN pg_roles r ON r.oid = s.userid"
        " WHERE s.mean_exec_time >= %(min_mean)s"
        " AND (%(db)s::text IS NULL OR d.datname = %(db)s)"
        " ORDER BY {order} DESC LIMIT %(limit)s"
    ).format(
        view=sql.Identifier(info["schema"], "pg_stat_statements"),
        order=sql.Identifier("s", _ORDER_COLUMNS[p.order_by]),
    )
    rows = plain_rows(
        await client.fetch(db, query, {"min_mean": p.min_mean_ms, "db": db, "limit": p.limit})
    )
    for r in rows:
        r["query"] = query_text(r["query"])
    return {
        "database": db,
        "order_by": p.order_by,
        "statements": rows,
        "count": len(rows),
        "_summary": f"{len(rows)} statement(s) by {p.order_by} time"
        + (f"; top: {rows[0]['mean_ms']} ms mean, {rows[0]['calls']} calls" if rows else ""),
    }


class PidParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pid: int = Field(ge=1, le=2**31 - 1)


@TOOLSET.read(
    "backend",
    "One server process by pid: session, transaction, query, lock waits.",
    PidParams,
    needs_resource=False,
)
async def backend(ctx: ToolContext[PidParams]) -> dict[str, Any]:
    found = await sessions(ctx, pid=ctx.params.pid)
    if not found:
        return {"exists": False, "pid": ctx.params.pid, "_summary": f"no pid {ctx.params.pid}"}
    data = dict(found[0])
    data["exists"] = True
    data["_summary"] = session_brief(data)
    return data


@TOOLSET.read(
    "database",
    "One database's overview: size, owner, connections, commits/rollbacks, deadlocks, "
    "xid age, largest tables and extensions.",
    SizeParams,
)
async def database(ctx: ToolContext[SizeParams]) -> dict[str, Any]:
    db = await database_for(ctx, required=True)
    assert db is not None
    client = client_for(ctx)
    row = await client.fetch_one(
        db,
        """
        SELECT d.datname AS database, pg_get_userbyid(d.datdba) AS owner,
               pg_encoding_to_char(d.encoding) AS encoding, d.datcollate AS collation,
               d.datconnlimit AS connection_limit, pg_database_size(d.datname) AS bytes,
               age(d.datfrozenxid)::bigint AS xid_age, s.numbackends AS connections,
               s.xact_commit, s.xact_rollback, s.deadlocks, s.conflicts, s.temp_files,
               s.temp_bytes, s.blks_hit, s.blks_read, s.stats_reset,
               (SELECT count(*) FROM pg_stat_user_tables)::int AS tables,
               (SELECT array_agg(extname ORDER BY extname) FROM pg_extension) AS extensions
        FROM pg_database d JOIN pg_stat_database s ON s.datid = d.oid
        WHERE d.datname = current_database()
        """,
    )
    assert row is not None
    data = {k: plain(v) for k, v in row.items()}
    data["cache_hit_ratio"] = share(data["blks_hit"], data["blks_hit"] + data["blks_read"])
    data["rollback_ratio"] = share(
        data["xact_rollback"], data["xact_commit"] + data["xact_rollback"]
    )
    data["largest_tables"] = plain_rows(
        await client.fetch(db, TABLE_SIZES_SQL, {"limit": ctx.params.limit})
    )
    data["_summary"] = (
        f"{db}: {human_bytes(data['bytes'])}, {data['tables']} tables, "
        f"{data['connections']} connections, {data['deadlocks']} deadlocks, "
        f"xid age {data['xid_age']:,}"
    )
    return data
