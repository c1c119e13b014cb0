"""PostgreSQL toolset (async psycopg 3): diagnostics and safe maintenance on PostgreSQL 13–17.

Diagnostics run through a small connection pool per target and database, as the read-only role of
the target's ``dsn`` (pg_monitor is enough), in read-only transactions with ``statement_timeout``
and ``connect_timeout``. Writes use the ``maintenance_dsn`` role on a dedicated autocommit
connection with ``lock_timeout``, so VACUUM and REINDEX CONCURRENTLY (which cannot run in a
transaction) work and nothing queues behind a long transaction holding everybody else up.

The TargetRef resource is the database (``postgres:main/appdb``); tables, indexes, pids and slots
are parameters. Names are looked up in the catalog with bound values before anything runs (an
unknown name is a NOT_FOUND error, never a statement) and reach SQL only as
``psycopg.sql.Identifier``. Session-killing tools never touch superusers, replication or other
non-client backends, nor homelab-agents' own sessions, and record every session they end.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, cast

import psycopg
import psycopg.errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from activities.catalog import ToolContext, ToolFailure, Toolset
from core.config import PostgresTarget
from core.models import Reversibility, RiskLevel, ToolErrorKind
from core.redact import redact_text

log = logging.getLogger(__name__)

APPLICATION_NAME = "homelab-agents"
QUERY_CHARS = 300
SIGNAL_WAIT = 5.0  # seconds to wait for a cancelled query / terminated backend to be gone
CLIENT_BACKEND = "client backend"
IDLE_IN_TRANSACTION = ("idle in transaction", "idle in transaction (aborted)")

_AUTH_HINTS = (
    "authentication failed",
    "pg_hba.conf",
    "does not exist",
    "permission denied",
    "no password supplied",
    "ssl is not enabled",
)


# --- errors --------------------------------------------------------------------------------------


def translate(exc: Exception) -> ToolFailure | None:
    """psycopg errors → typed failures; only a lost connection is transient (retried)."""
    if isinstance(exc, PoolTimeout):
        return ToolFailure(ToolErrorKind.UNREACHABLE, f"postgres unreachable: {exc}")
    if isinstance(exc, PoolClosed):
        return ToolFailure(ToolErrorKind.UNREACHABLE, "postgres connection pool is closed")
    if isinstance(exc, pg_errors.QueryCanceled):
        return ToolFailure(
            ToolErrorKind.FAILED, f"statement cancelled (statement_timeout?): {_first_line(exc)}"
        )
    if isinstance(exc, pg_errors.LockNotAvailable):
        return ToolFailure(
            ToolErrorKind.CONFLICT,
            f"lock not available within lock_timeout (another session holds it): {_first_line(exc)}",
        )
    if isinstance(exc, pg_errors.ObjectInUse):
        return ToolFailure(ToolErrorKind.CONFLICT, _first_line(exc))
    if isinstance(exc, pg_errors.UndefinedTable | pg_errors.UndefinedObject):
        return ToolFailure(ToolErrorKind.NOT_FOUND, _first_line(exc))
    if isinstance(exc, pg_errors.InvalidCatalogName):
        return ToolFailure(ToolErrorKind.NOT_FOUND, _first_line(exc))
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return ToolFailure(ToolErrorKind.FAILED, f"permission denied: {_first_line(exc)}")
    if isinstance(exc, pg_errors.TooManyConnections | pg_errors.CannotConnectNow):
        return ToolFailure(ToolErrorKind.UNREACHABLE, f"postgres refuses connections: {exc}")
    if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
        text = str(exc)
        if any(hint in text.lower() for hint in _AUTH_HINTS):
            return ToolFailure(ToolErrorKind.FAILED, f"cannot connect to postgres: {text}")
        return ToolFailure(ToolErrorKind.UNREACHABLE, f"postgres unreachable: {text}")
    if isinstance(exc, psycopg.DataError | psycopg.ProgrammingError):
        return ToolFailure(ToolErrorKind.INVALID, _first_line(exc))
    if isinstance(exc, psycopg.Error):
        return ToolFailure(ToolErrorKind.FAILED, _first_line(exc))
    return None


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


TOOLSET = Toolset(
    service="postgres",
    description="PostgreSQL servers: sessions, locks, bloat, indexes, vacuum, replication.",
    translate=translate,
)


# --- values --------------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """Rows → JSON-friendly values (timestamps as exact ISO strings, numbers as numbers)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: plain(v) for k, v in row.items()} for row in rows]


def _query_text(text: Any) -> str:
    if not text:
        return ""
    flat = " ".join(str(text).split())
    return redact_text(flat[:QUERY_CHARS] + ("…" if len(flat) > QUERY_CHARS else ""))


def _ratio(part: float, whole: float) -> float:
    return round(part / whole, 4) if whole else 0.0


def human_size(value: float | None) -> str:
    """``12.5 MiB``; ``0 B`` for zero (sizes here are amounts, never limits)."""
    size = float(value or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.1f}".removesuffix(".0") + f" {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _secs(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


# --- client --------------------------------------------------------------------------------------


class PostgresClient:
    """One target: a lazily opened read-only pool per database, maintenance connections on demand."""

    def __init__(self, target: PostgresTarget) -> None:
        self.target = target
        self._pools: dict[str, AsyncConnectionPool] = {}
        self._closing: set[asyncio.Task[None]] = set()
        parsed = conninfo_to_dict(target.read_dsn.get_secret_value())
        self.default_db = str(parsed.get("dbname") or parsed.get("user") or "postgres")
        maint = target.maintenance_dsn or target.read_dsn
        self.maintenance_user = str(
            conninfo_to_dict(maint.get_secret_value()).get("user") or "(default user)"
        )

    def conninfo(
        self, dbname: str | None, *, maintenance: bool = False, timeout_ms: int = 0
    ) -> str:
        secret = (
            self.target.maintenance_dsn if maintenance and self.target.maintenance_dsn else None
        ) or self.target.read_dsn
        dsn = secret.get_secret_value()
        existing = str(conninfo_to_dict(dsn).get("options") or "")
        if maintenance:
            ours = (
                f"-c statement_timeout={timeout_ms} -c lock_timeout={self.target.lock_timeout_ms}"
            )
        else:
            ours = (
                f"-c statement_timeout={self.target.statement_timeout_ms} "
                "-c default_transaction_read_only=on "
                f"-c lock_timeout={self.target.statement_timeout_ms}"
            )
        extra: dict[str, Any] = {
            "connect_timeout": max(2, math.ceil(self.target.connect_timeout)),
            "application_name": APPLICATION_NAME,
            "options": f"{existing} {ours}".strip(),
        }
        if dbname:
            extra["dbname"] = dbname
        return make_conninfo(dsn, **extra)

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.set_read_only(True)

    async def pool(self, dbname: str | None) -> AsyncConnectionPool:
        key = dbname or ""
        pool = self._pools.get(key)
        if pool is None:
            pool = AsyncConnectionPool(
                self.conninfo(dbname),
                min_size=0,
                max_size=self.target.pool_max_size,
                open=False,
                configure=self._configure,
                check=AsyncConnectionPool.check_connection,
                timeout=self.target.connect_timeout + 2,
                max_idle=120,
                num_workers=1,
                name=f"postgres-{self.target.name}-{key or 'default'}",
            )
            self._pools[key] = pool
        await pool.open()
        return pool

    async def fetch(
        self, dbname: str | None, query: Any, params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """One read-only transaction on the diagnostic pool."""
        pool = await self.pool(dbname)
        try:
            async with pool.connection() as conn:
                async with conn.transaction():
                    async with conn.cursor(row_factory=dict_row) as cur:
                        await cur.execute(query, params)
                        return list(await cur.fetchall()) if cur.description else []
        except PoolTimeout:
            # Say why (refused, auth, too many clients), not just that the pool waited.
            try:
                conn = await psycopg.AsyncConnection.connect(self.conninfo(dbname))
            except psycopg.Error as exc:
                raise exc from None
            await conn.close()
            raise

    async def fetch_one(
        self, dbname: str | None, query: Any, params: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        rows = await self.fetch(dbname, query, params)
        return rows[0] if rows else None

    @contextlib.asynccontextmanager
    async def maintenance(
        self, dbname: str | None, limit: timedelta
    ) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
        """A dedicated autocommit connection as the maintenance role (VACUUM needs no transaction)."""
        conn = await psycopg.AsyncConnection.connect(
            self.conninfo(dbname, maintenance=True, timeout_ms=int(limit.total_seconds() * 1000)),
            autocommit=True,
            row_factory=dict_row,
        )
        try:
            yield conn
        finally:
            await conn.close()

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            with contextlib.suppress(Exception):
                await pool.close(timeout=2)

    def close(self) -> None:
        """Sync close for ``TargetClients.close``: schedules the pools' close on their loop."""
        if not self._pools:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._pools = {}  # the loop that owned the pools is gone with its connections
            return
        task = loop.create_task(self.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


def make_client(target: PostgresTarget) -> PostgresClient:
    return PostgresClient(target)


def probe(target: PostgresTarget) -> str:
    """``doctor``: connect as both roles, report the server and what each role may do."""
    parts = []
    client = PostgresClient(target)
    with psycopg.connect(client.conninfo(None)) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version') AS v, pg_is_in_recovery() AS standby,"
            " current_user AS who, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
            " AS superuser, pg_has_role(current_user, 'pg_monitor', 'USAGE') AS monitor"
        ).fetchone()
    assert row is not None
    version, standby, who, superuser, monitor = row
    parts.append(f"PostgreSQL {version}{' (standby)' if standby else ''}")
    role = (
        "superuser" if superuser else ("pg_monitor" if monitor else "no pg_monitor: limited view")
    )
    parts.append(f"diagnostics as {who} ({role})")
    if target.maintenance_dsn:
        with psycopg.connect(client.conninfo(None, maintenance=True, timeout_ms=5000)) as conn:
            row = conn.execute(
                "SELECT current_user, r.rolsuper, r.rolreplication,"
                " pg_has_role(current_user, 'pg_signal_backend', 'USAGE')"
                " FROM pg_roles r WHERE r.rolname = current_user"
            ).fetchone()
        assert row is not None
        who, superuser, replication, signal = row
        rights = (
            "superuser: prefer a least-privilege role"
            if superuser
            else (
                ", ".join(
                    name
                    for name, ok in (("pg_signal_backend", signal), ("REPLICATION", replication))
                    if ok
                )
                or "no signal or replication rights"
            )
        )
        parts.append(f"maintenance as {who} ({rights})")
    return "; ".join(parts)


TOOLSET.probe = probe


def client_for(ctx: ToolContext[Any]) -> PostgresClient:
    return cast(PostgresClient, ctx.clients.client("postgres", ctx.ref.target, make_client))


async def database_for(ctx: ToolContext[Any], *, required: bool = False) -> str | None:
    """The resource database, checked to exist (and be allowed) before anything uses it."""
    name = ctx.ref.resource or None
    if name is None:
        if required:
            raise ToolFailure(
                ToolErrorKind.INVALID,
                f"give the database as the target's resource (postgres:{ctx.ref.target}/DBNAME)",
            )
        return None
    client = client_for(ctx)
    allowed = client.target.databases
    if allowed and name not in allowed:
        raise ToolFailure(
            ToolErrorKind.NOT_FOUND,
            f"database {name!r} is not one of postgres target {ctx.ref.target}'s databases "
            f"({', '.join(allowed)})",
        )
    if "\x00" in name or len(name) > 63:
        raise ToolFailure(ToolErrorKind.INVALID, f"{name!r} is not a valid database name")
    rows = await client.fetch(
        None,
        "SELECT datname, datallowconn, datistemplate FROM pg_database ORDER BY datname",
    )
    found = next((r for r in rows if r["datname"] == name), None)
    if found is None:
        known = ", ".join(r["datname"] for r in rows if not r["datistemplate"])
        raise ToolFailure(
            ToolErrorKind.NOT_FOUND,
            f"no database {name!r} on postgres target {ctx.ref.target} (databases: {known})",
        )
    if not found["datallowconn"] or found["datistemplate"]:
        raise ToolFailure(ToolErrorKind.INVALID, f"database {name!r} does not allow connections")
    return name


def _where(ctx: ToolContext[Any], db: str | None = None) -> str:
    base = f"postgres:{ctx.ref.target}"
    name = db or ctx.ref.resource
    return f"{base}/{name}" if name else base


# --- names ---------------------------------------------------------------------------------------


def _name(value: str | None) -> str | None:
    if value is not None and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


class TableParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    table: str = Field(min_length=1, max_length=200, description="table name (or schema.table)")
    schema_: str | None = Field(default=None, alias="schema", max_length=63)

    @field_validator("table", "schema_")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        return _name(value)


@dataclass(frozen=True)
class Relation:
    oid: int
    schema: str
    name: str
    kind: str
    owner: str
    table: str = ""  # for an index: its table

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


_RELATION_SQL = """
SELECT c.oid, n.nspname AS schema, c.relname AS name, c.relkind AS kind,
       pg_get_userbyid(c.relowner) AS owner, coalesce(t.relname, '') AS table
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_index i ON i.indexrelid = c.oid
LEFT JOIN pg_class t ON t.oid = i.indrelid
WHERE c.relname = %(name)s AND c.relkind::text = ANY(%(kinds)s::text[])
  AND CASE WHEN %(schema)s::text IS NULL
           THEN n.nspname = ANY(current_schemas(false)::text[])
           ELSE n.nspname = %(schema)s END
ORDER BY array_position(current_schemas(false)::text[], n.nspname::text)
LIMIT 1
"""


async def resolve(
    ctx: ToolContext[Any], db: str, name: str, schema: str | None, *, index: bool = False
) -> Relation:
    """Find a table (or index) by name with bound values; NOT_FOUND before any statement runs."""
    client = client_for(ctx)
    kinds = ["i", "I"] if index else ["r", "m", "p", "t"]
    row = await client.fetch_one(
        db, _RELATION_SQL, {"name": name, "schema": schema, "kinds": kinds}
    )
    if row is None and schema is None and "." in name:
        first, _, rest = name.partition(".")
        row = await client.fetch_one(
            db, _RELATION_SQL, {"name": rest, "schema": first, "kinds": kinds}
        )
    if row is None:
        what = "index" if index else "table"
        where = f"schema {schema!r}" if schema else "the search path"
        raise ToolFailure(
            ToolErrorKind.NOT_FOUND,
            f"no {what} {name!r} in {where} of database {db!r} on postgres target {ctx.ref.target}",
        )
    return Relation(
        oid=row["oid"],
        schema=row["schema"],
        name=row["name"],
        kind=row["kind"],
        owner=row["owner"],
        table=row["table"],
    )


# --- sessions ------------------------------------------------------------------------------------

_SESSIONS_SQL = """
SELECT a.pid, a.datname AS database, a.usename AS user, a.application_name AS application,
       host(a.client_addr) AS client_addr, a.backend_type, a.state,
       a.wait_event_type, a.wait_event,
       a.backend_start, a.xact_start, a.query_start, a.state_change,
       extract(epoch FROM now() - a.xact_start)::float8 AS xact_seconds,
       extract(epoch FROM now() - a.query_start)::float8 AS query_seconds,
       extract(epoch FROM now() - a.state_change)::float8 AS state_seconds,
       CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid) ELSE '{}'::int[] END
         AS blocked_by,
       a.query,
       CASE
         WHEN a.application_name LIKE %(ours)s THEN 'a homelab-agents session'
         WHEN a.backend_type IS DISTINCT FROM 'client backend'
           THEN 'not a client backend (' || coalesce(a.backend_type, 'unknown') || ')'
         WHEN r.rolsuper IS NULL THEN 'session of an unknown role'
         WHEN r.rolsuper THEN 'superuser session'
       END AS protected
FROM pg_stat_activity a
LEFT JOIN pg_roles r ON r.oid = a.usesysid
WHERE a.pid <> pg_backend_pid()
  AND (%(db)s::text IS NULL OR a.datname = %(db)s)
  AND (%(pid)s::int IS NULL OR a.pid = %(pid)s)
ORDER BY a.backend_start
"""


def _session(row: dict[str, Any]) -> dict[str, Any]:
    data = {k: plain(v) for k, v in row.items()}
    data["query"] = _query_text(row.get("query"))
    for key in ("xact_seconds", "query_seconds", "state_seconds"):
        data[key] = _secs(row.get(key))
    data["blocked_by"] = list(row.get("blocked_by") or [])
    return data


async def sessions(
    ctx: ToolContext[Any], db: str | None = None, pid: int | None = None
) -> list[dict[str, Any]]:
    rows = await client_for(ctx).fetch(
        None, _SESSIONS_SQL, {"db": db, "pid": pid, "ours": f"{APPLICATION_NAME}%"}
    )
    return [_session(r) for r in rows]


def _brief(s: dict[str, Any]) -> str:
    age = s.get("xact_seconds") or s.get("state_seconds") or 0
    return (
        f"pid {s['pid']} ({s.get('user') or '?'}@{s.get('database') or '?'}, "
        f"{s.get('application') or 'no app'}, {s.get('state') or '?'} {age:.0f}s"
        + (f", {s['query'][:60]!r}" if s.get("query") else "")
        + ")"
    )


def _record(s: dict[str, Any]) -> dict[str, Any]:
    """What the change log keeps about a session we signalled."""
    return {
        "pid": s["pid"],
        "user": s.get("user"),
        "application": s.get("application"),
        "database": s.get("database"),
        "client_addr": s.get("client_addr"),
        "state": s.get("state"),
        "backend_start": s.get("backend_start"),
        "xact_start": s.get("xact_start"),
        "xact_seconds": s.get("xact_seconds"),
        "query": s.get("query", "")[:200],
    }


# --- read tools ----------------------------------------------------------------------------------


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
        "_summary": f"{len(clients)} client sessions on {_where(ctx, db)}, "
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
            f"{len(blocked)} blocked session(s) on {_where(ctx, db)}"
            + (f"; root blocker {_brief(root)} blocks {root['blocks_count']}" if root else "")
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
        f"on {_where(ctx, db)} ({len(eligible)} may be terminated)",
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


class SizeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=20, ge=1, le=500)


_TABLE_SIZES_SQL = """
SELECT n.nspname AS schema, c.relname AS table, c.relkind AS kind,
       pg_total_relation_size(c.oid) AS total_bytes, pg_table_size(c.oid) AS table_bytes,
       pg_indexes_size(c.oid) AS index_bytes,
       coalesce(pg_total_relation_size(c.reltoastrelid), 0) AS toast_bytes,
       c.reltuples::bigint AS estimated_rows
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
ORDER BY pg_total_relation_size(c.oid) DESC
LIMIT %(limit)s
"""


@TOOLSET.read(
    "sizes",
    "Database sizes; with a resource database, its largest tables (table, indexes, TOAST).",
    SizeParams,
    needs_resource=False,
)
async def sizes(ctx: ToolContext[SizeParams]) -> dict[str, Any]:
    db = await database_for(ctx)
    client = client_for(ctx)
    dbs = _rows(
        await client.fetch(
            None,
            "SELECT datname AS database, pg_database_size(datname) AS bytes FROM pg_database"
            " WHERE NOT datistemplate AND datallowconn ORDER BY 2 DESC",
        )
    )
    tables = (
        _rows(await client.fetch(db, _TABLE_SIZES_SQL, {"limit": ctx.params.limit})) if db else []
    )
    return {
        "databases": dbs,
        "total_bytes": sum(d["bytes"] for d in dbs),
        "database": db,
        "tables": tables,
        "_summary": f"{len(dbs)} databases, {human_size(sum(d['bytes'] for d in dbs))}"
        + (
            f"; largest table in {db}: {tables[0]['schema']}.{tables[0]['table']} "
            f"{human_size(tables[0]['total_bytes'])}"
            if tables
            else ""
        ),
    }


_TABLE_STATS_SQL = """
SELECT s.relid AS oid, s.schemaname AS schema, s.relname AS table,
       s.n_live_tup, s.n_dead_tup, s.n_mod_since_analyze,
       s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze,
       s.vacuum_count, s.autovacuum_count, s.analyze_count, s.autoanalyze_count,
       s.seq_scan, s.idx_scan,
       pg_table_size(s.relid) AS table_bytes, pg_total_relation_size(s.relid) AS total_bytes,
       c.relfilenode, c.reltuples::bigint AS reltuples, c.reloptions,
       extract(epoch FROM now() - greatest(s.last_vacuum, s.last_autovacuum))::float8
         AS seconds_since_vacuum,
       extract(epoch FROM now() - greatest(s.last_analyze, s.last_autoanalyze))::float8
         AS seconds_since_analyze
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE (%(oid)s::oid IS NULL OR s.relid = %(oid)s)
ORDER BY s.n_dead_tup DESC, s.relname
LIMIT %(limit)s
"""


def _table_stats(row: dict[str, Any]) -> dict[str, Any]:
    data = {k: plain(v) for k, v in row.items()}
    live, dead = data["n_live_tup"] or 0, data["n_dead_tup"] or 0
    data["dead_ratio"] = _ratio(dead, live + dead)
    data["estimated_bloat_bytes"] = int(data["table_bytes"] * data["dead_ratio"])
    data["autovacuum_enabled"] = "autovacuum_enabled=false" not in (data.get("reloptions") or [])
    data["seconds_since_vacuum"] = _secs(data["seconds_since_vacuum"])
    data["seconds_since_analyze"] = _secs(data["seconds_since_analyze"])
    return data


async def table_stats(ctx: ToolContext[Any], db: str, rel: Relation) -> dict[str, Any]:
    row = await client_for(ctx).fetch_one(db, _TABLE_STATS_SQL, {"oid": rel.oid, "limit": 1})
    if row is None:  # a partitioned parent or a table without statistics entry
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED, f"{rel.qualified} has no table statistics in {db}"
        )
    return _table_stats(row)


class BloatParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    table: str | None = Field(
        default=None, max_length=200, description="one table (or schema.table)"
    )
    schema_: str | None = Field(default=None, alias="schema", max_length=63)
    limit: int = Field(default=20, ge=1, le=500)

    @field_validator("table", "schema_")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        return _name(value)


@TOOLSET.read(
    "bloat",
    "Dead tuples per table (ratio and a size estimate), last (auto)vacuum; or one table's.",
    BloatParams,
)
async def bloat(ctx: ToolContext[BloatParams]) -> dict[str, Any]:
    db = await database_for(ctx, required=True)
    assert db is not None
    p = ctx.params
    one = None
    if p.table:
        rel = await resolve(ctx, db, p.table, p.schema_)
        one = await table_stats(ctx, db, rel)
    rows = await client_for(ctx).fetch(db, _TABLE_STATS_SQL, {"oid": None, "limit": p.limit})
    tables = [_table_stats(r) for r in rows]
    worst = one or (tables[0] if tables else None)
    return {
        "database": db,
        "table": one,
        "tables": tables,
        "total_dead_tuples": sum(t["n_dead_tup"] or 0 for t in tables),
        "_summary": (
            f"{worst['schema']}.{worst['table']} in {db}: {worst['n_dead_tup']} dead / "
            f"{worst['n_live_tup']} live tuples ({worst['dead_ratio']:.1%}), "
            f"~{human_size(worst['estimated_bloat_bytes'])} bloat"
            if worst
            else f"no user tables in {db}"
        ),
    }


class IndexHealthParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    table: str | None = Field(default=None, max_length=200)
    schema_: str | None = Field(default=None, alias="schema", max_length=63)
    min_bytes: int = Field(default=1024 * 1024, ge=0, description="bloat check: indexes this big")
    limit: int = Field(default=50, ge=1, le=500)

    @field_validator("table", "schema_")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        return _name(value)


_INDEXES_SQL = """
SELECT i.indexrelid AS oid, n.nspname AS schema, ci.relname AS index, ct.relname AS table,
       am.amname AS method, i.indisvalid AS valid, i.indisready AS ready, i.indislive AS live,
       i.indisunique AS is_unique, i.indisprimary AS is_primary,
       EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) AS backs_constraint,
       pg_relation_size(i.indexrelid) AS bytes, coalesce(s.idx_scan, 0) AS idx_scan,
       pg_get_indexdef(i.indexrelid) AS definition,
       i.indrelid::text || ':' || i.indkey::text || ':' || i.indclass::text || ':' ||
         coalesce(pg_get_expr(i.indexprs, i.indrelid), '') || ':' ||
         coalesce(pg_get_expr(i.indpred, i.indrelid), '') AS signature
FROM pg_index i
JOIN pg_class ci ON ci.oid = i.indexrelid
JOIN pg_class ct ON ct.oid = i.indrelid
JOIN pg_namespace n ON n.oid = ci.relnamespace
JOIN pg_am am ON am.oid = ci.relam
LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = i.indexrelid
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
  AND (%(table)s::oid IS NULL OR i.indrelid = %(table)s)
ORDER BY pg_relation_size(i.indexrelid) DESC
"""


@TOOLSET.read(
    "index_health",
    "Indexes that are invalid, unused, duplicated or bloated (pgstattuple when installed).",
    IndexHealthParams,
)
async def index_health(ctx: ToolContext[IndexHealthParams]) -> dict[str, Any]:
    db = await database_for(ctx, required=True)
    assert db is not None
    p = ctx.params
    client = client_for(ctx)
    table_oid = None
    if p.table:
        table_oid = (await resolve(ctx, db, p.table, p.schema_)).oid
    rows = _rows(await client.fetch(db, _INDEXES_SQL, {"table": table_oid}))
    invalid = [r for r in rows if not r["valid"]]
    unused = [
        r
        for r in rows
        if r["idx_scan"] == 0 and r["valid"] and not r["is_unique"] and not r["backs_constraint"]
    ]
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["signature"], []).append(r)
    duplicates = [
        {"table": g[0]["table"], "schema": g[0]["schema"], "indexes": [r["index"] for r in g]}
        for g in groups.values()
        if len(g) > 1
    ]
    bloated: list[dict[str, Any]] = []
    bloat_note = ""
    ext = await client.fetch_one(
        db,
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
        " WHERE e.extname = 'pgstattuple'",
    )
    candidates = [
        r for r in rows if r["method"] == "btree" and r["valid"] and r["bytes"] >= p.min_bytes
    ][:20]
    if ext is None:
        bloat_note = "index bloat needs the pgstattuple extension (CREATE EXTENSION pgstattuple)"
    else:
        for r in candidates:
            stat = await client.fetch_one(
                db,
                sql.SQL(
                    "SELECT avg_leaf_density, leaf_fragmentation FROM {}(%(oid)s::regclass)"
                ).format(sql.Identifier(ext["nspname"], "pgstatindex")),
                {"oid": r["oid"]},
            )
            if stat is None or stat["avg_leaf_density"] is None:
                continue
            density = float(stat["avg_leaf_density"])
            if math.isnan(density):
                continue
            estimate = int(r["bytes"] * max(0.0, 1 - density / 90.0))
            if density < 50:
                bloated.append(
                    {
                        "schema": r["schema"],
                        "index": r["index"],
                        "table": r["table"],
                        "bytes": r["bytes"],
                        "avg_leaf_density": round(density, 1),
                        "estimated_bloat_bytes": estimate,
                    }
                )
    for r in rows:
        r.pop("signature", None)
    seq_heavy = _rows(
        await client.fetch(
            db,
            "SELECT schemaname AS schema, relname AS table, seq_scan, coalesce(idx_scan, 0)"
            " AS idx_scan, n_live_tup FROM pg_stat_user_tables"
            " WHERE seq_scan > 10 * coalesce(idx_scan, 0) AND n_live_tup > 10000"
            " AND (%(table)s::oid IS NULL OR relid = %(table)s)"
            " ORDER BY seq_scan DESC LIMIT 20",
            {"table": table_oid},
        )
    )
    return {
        "database": db,
        "indexes": rows[: p.limit],
        "invalid": invalid,
        "invalid_count": len(invalid),
        "unused": unused[: p.limit],
        "unused_count": len(unused),
        "unused_bytes": sum(r["bytes"] for r in unused),
        "duplicates": duplicates,
        "bloated": bloated,
        "bloat_note": bloat_note,
        "seq_scan_heavy_tables": seq_heavy,
        "_summary": f"{len(rows)} indexes in {db}: {len(invalid)} invalid, {len(unused)} unused, "
        f"{len(duplicates)} duplicate group(s), {len(bloated)} bloated",
    }


class IndexParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index: str = Field(min_length=1, max_length=200)
    schema_: str | None = Field(default=None, alias="schema", max_length=63)

    @field_validator("index", "schema_")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        return _name(value)


_INDEX_SQL = """
SELECT n.nspname AS schema, ci.relname AS index, ct.relname AS table,
       i.indisvalid AS valid, i.indisready AS ready, i.indislive AS live,
       i.indisunique AS is_unique, ci.relfilenode, pg_relation_size(ci.oid) AS bytes,
       pg_get_indexdef(ci.oid) AS definition, pg_get_userbyid(ct.relowner) AS owner
FROM pg_index i
JOIN pg_class ci ON ci.oid = i.indexrelid
JOIN pg_class ct ON ct.oid = i.indrelid
JOIN pg_namespace n ON n.oid = ci.relnamespace
WHERE i.indexrelid = %(oid)s
"""


async def index_state(ctx: ToolContext[Any], db: str, rel: Relation) -> dict[str, Any]:
    row = await client_for(ctx).fetch_one(db, _INDEX_SQL, {"oid": rel.oid})
    if row is None:
        raise ToolFailure(ToolErrorKind.NOT_FOUND, f"index {rel.qualified} is gone from {db}")
    return {k: plain(v) for k, v in row.items()}


@TOOLSET.read("index", "One index: valid, ready, size, table and definition.", IndexParams)
async def index(ctx: ToolContext[IndexParams]) -> dict[str, Any]:
    db = await database_for(ctx, required=True)
    assert db is not None
    rel = await resolve(ctx, db, ctx.params.index, ctx.params.schema_, index=True)
    data = await index_state(ctx, db, rel)
    data["_summary"] = (
        f"index {rel.qualified} on {data['table']} in {db}: "
        f"{'valid' if data['valid'] else 'INVALID'}, {human_size(data['bytes'])}"
    )
    return data


class VacuumStatusParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stale_hours: float = Field(default=24, gt=0, description="not vacuumed/analyzed for this long")
    limit: int = Field(default=50, ge=1, le=500)


@TOOLSET.read(
    "vacuum_status",
    "Autovacuum settings, running vacuums with progress, tables not vacuumed/analyzed for long.",
    VacuumStatusParams,
)
async def vacuum_status(ctx: ToolContext[VacuumStatusParams]) -> dict[str, Any]:
    db = await database_for(ctx, required=True)
    assert db is not None
    client = client_for(ctx)
    settings = {
        r["name"]: r["setting"] + (r["unit"] or "")
        for r in await client.fetch(
            None,
            "SELECT name, setting, unit FROM pg_settings WHERE name LIKE 'autovacuum%%'"
            " OR name IN ('track_counts', 'vacuum_cost_delay', 'vacuum_cost_limit',"
            " 'vacuum_freeze_min_age', 'vacuum_freeze_table_age') ORDER BY name",
        )
    }
    running = _rows(
        await client.fetch(
            db,
            """
            SELECT p.pid, p.datname AS database,
                   CASE WHEN p.datname = current_database() THEN p.relid::regclass::text
                        ELSE p.relid::text END AS relation,
                   p.phase, p.heap_blks_total, p.heap_blks_scanned, p.heap_blks_vacuumed,
                   p.index_vacuum_count,
                   round(100.0 * p.heap_blks_scanned / nullif(p.heap_blks_total, 0), 1)
                     AS percent_scanned,
                   coalesce(a.backend_type = 'autovacuum worker', false) AS autovacuum,
                   extract(epoch FROM now() - a.xact_start)::float8 AS seconds
            FROM pg_stat_progress_vacuum p LEFT JOIN pg_stat_activity a ON a.pid = p.pid
            """,
        )
    )
    threshold = float(settings.get("autovacuum_vacuum_threshold", "50"))
    scale = float(settings.get("autovacuum_vacuum_scale_factor", "0.2"))
    stale_seconds = ctx.params.stale_hours * 3600
    tables = [
        _table_stats(r)
        for r in await client.fetch(db, _TABLE_STATS_SQL, {"oid": None, "limit": 100000})
    ]
    for t in tables:
        t["autovacuum_threshold"] = int(threshold + scale * max(t["reltuples"], 0))
        t["needs_vacuum"] = (t["n_dead_tup"] or 0) > t["autovacuum_threshold"]
    not_vacuumed = [
        t
        for t in tables
        if t["seconds_since_vacuum"] is None or t["seconds_since_vacuum"] > stale_seconds
    ]
    not_analyzed = [
        t
        for t in tables
        if t["seconds_since_analyze"] is None or t["seconds_since_analyze"] > stale_seconds
    ]
    needing = [t for t in tables if t["needs_vacuum"]]
    limit = ctx.params.limit

    def brief(t: dict[str, Any]) -> dict[str, Any]:
        keys = (
            "schema",
            "table",
            "n_live_tup",
            "n_dead_tup",
            "dead_ratio",
            "last_vacuum",
            "last_autovacuum",
            "last_analyze",
            "last_autoanalyze",
            "seconds_since_vacuum",
            "autovacuum_enabled",
            "autovacuum_threshold",
            "needs_vacuum",
        )
        return {k: t[k] for k in keys}

    return {
        "database": db,
        "settings": settings,
        "autovacuum_on": settings.get("autovacuum") == "on",
        "running": running,
        "running_count": len(running),
        "not_vacuumed": [brief(t) for t in not_vacuumed[:limit]],
        "not_vacuumed_count": len(not_vacuumed),
        "not_analyzed": [brief(t) for t in not_analyzed[:limit]],
        "not_analyzed_count": len(not_analyzed),
        "needs_vacuum": [brief(t) for t in needing[:limit]],
        "needs_vacuum_count": len(needing),
        "autovacuum_disabled_tables": [
            f"{t['schema']}.{t['table']}" for t in tables if not t["autovacuum_enabled"]
        ],
        "_summary": f"autovacuum {settings.get('autovacuum')}; {len(running)} vacuum(s) running; "
        f"in {db}: {len(needing)} table(s) over the autovacuum threshold, "
        f"{len(not_vacuumed)} not vacuumed for {ctx.params.stale_hours:g}h",
    }


class WraparoundParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=10, ge=1, le=200)


_WRAP_LIMIT = 2**31 - 1


@TOOLSET.read(
    "wraparound",
    "Transaction ID wraparound risk: age(datfrozenxid) per database (and oldest tables).",
    WraparoundParams,
    needs_resource=False,
)
async def wraparound(ctx: ToolContext[WraparoundParams]) -> dict[str, Any]:
    db = await database_for(ctx)
    client = client_for(ctx)
    rows = _rows(
        await client.fetch(
            None,
            "SELECT datname AS database, age(datfrozenxid)::bigint AS xid_age,"
            " mxid_age(datminmxid)::bigint AS mxid_age,"
            " current_setting('autovacuum_freeze_max_age')::bigint AS freeze_max_age"
            " FROM pg_database ORDER BY 2 DESC",
        )
    )
    for r in rows:
        r["percent_to_wraparound"] = round(100 * r["xid_age"] / _WRAP_LIMIT, 2)
        r["percent_of_freeze_max_age"] = round(100 * r["xid_age"] / r["freeze_max_age"], 1)
        r["risk"] = (
            "critical"
            if r["percent_to_wraparound"] >= 50
            else "warning"
            if r["xid_age"] > r["freeze_max_age"]
            else "ok"
        )
    tables = (
        _rows(
            await client.fetch(
                db,
                "SELECT n.nspname AS schema, c.relname AS table,"
                " age(c.relfrozenxid)::bigint AS xid_age, pg_table_size(c.oid) AS bytes"
                " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind IN ('r', 'm', 't') ORDER BY 3 DESC LIMIT %(limit)s",
                {"limit": ctx.params.limit},
            )
        )
        if db
        else []
    )
    worst = rows[0] if rows else None
    order = {"ok": 0, "warning": 1, "critical": 2}
    risk = max((r["risk"] for r in rows), key=lambda k: order[k], default="ok")
    return {
        "databases": rows,
        "max_xid_age": worst["xid_age"] if worst else 0,
        "max_percent_to_wraparound": worst["percent_to_wraparound"] if worst else 0,
        "risk": risk,
        "database": db,
        "oldest_tables": tables,
        "_summary": f"wraparound risk {risk}: oldest {worst['database']} at xid age "
        f"{worst['xid_age']:,} ({worst['percent_to_wraparound']}% of the limit)"
        if worst
        else "no databases",
    }


@TOOLSET.read(
    "counters",
    "Per-database commits, rollbacks (ratio), deadlocks, conflicts and temp files since reset.",
    NoParams,
    needs_resource=False,
)
async def counters(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    db = await database_for(ctx)
    rows = _rows(
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
        r["rollback_ratio"] = _ratio(r["xact_rollback"], r["xact_commit"] + r["xact_rollback"])
    total_deadlocks = sum(r["deadlocks"] for r in rows)
    return {
        "database": db,
        "databases": rows,
        "deadlocks": total_deadlocks,
        "rollbacks": sum(r["xact_rollback"] for r in rows),
        "commits": sum(r["xact_commit"] for r in rows),
        "_summary": f"{total_deadlocks} deadlock(s), "
        f"{sum(r['xact_rollback'] for r in rows)} rollback(s) on {_where(ctx, db)} since reset",
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
    rows = _rows(
        await client.fetch(db, query, {"min_mean": p.min_mean_ms, "db": db, "limit": p.limit})
    )
    for r in rows:
        r["query"] = _query_text(r["query"])
    return {
        "database": db,
        "order_by": p.order_by,
        "statements": rows,
        "count": len(rows),
        "_summary": f"{len(rows)} statement(s) by {p.order_by} time"
        + (f"; top: {rows[0]['mean_ms']} ms mean, {rows[0]['calls']} calls" if rows else ""),
    }


class SlotFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slot: str | None = Field(
        default=None, pattern=r"^[a-z0-9_]{1,63}$", description="report this slot too"
    )


@TOOLSET.read(
    "replication",
    "Primary: standbys with lag, replication slots (inactive ones, retained WAL). "
    "Replica: receive/replay lag and paused replay.",
    SlotFilter,
    needs_resource=False,
)
async def replication(ctx: ToolContext[SlotFilter]) -> dict[str, Any]:
    client = client_for(ctx)
    base = await client.fetch_one(
        None,
        "SELECT pg_is_in_recovery() AS in_recovery,"
        " current_setting('server_version_num')::int AS version_num",
    )
    assert base is not None
    standby = bool(base["in_recovery"])
    slots = _rows(
        await client.fetch(
            None,
            """
            SELECT slot_name, slot_type, plugin, database, active, active_pid, temporary,
                   restart_lsn::text AS restart_lsn,
                   confirmed_flush_lsn::text AS confirmed_flush_lsn,
                   wal_status, safe_wal_size,
                   CASE WHEN pg_is_in_recovery() OR restart_lsn IS NULL THEN NULL
                        ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint
                   END AS retained_bytes
            FROM pg_replication_slots ORDER BY slot_name
            """,
        )
    )
    data: dict[str, Any] = {
        "role": "replica" if standby else "primary",
        "in_recovery": standby,
        "slots": slots,
        "inactive_slots": [s for s in slots if not s["active"]],
        "inactive_slot_count": sum(1 for s in slots if not s["active"]),
    }
    if ctx.params.slot is not None:
        found = next((s for s in slots if s["slot_name"] == ctx.params.slot), None)
        data["slot"] = found
        data["slot_exists"] = found is not None
    if not standby:
        senders = _rows(
            await client.fetch(
                None,
                """
                SELECT pid, usename AS user, application_name AS application,
                       host(client_addr) AS client_addr, state, sync_state,
                       sent_lsn::text AS sent_lsn, replay_lsn::text AS replay_lsn,
                       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint
                         AS replay_lag_bytes,
                       extract(epoch FROM write_lag)::float8 AS write_lag_seconds,
                       extract(epoch FROM flush_lag)::float8 AS flush_lag_seconds,
                       extract(epoch FROM replay_lag)::float8 AS replay_lag_seconds,
                       backend_start
                FROM pg_stat_replication ORDER BY application_name
                """,
            )
        )
        data["standbys"] = senders
        data["standby_count"] = len(senders)
        data["max_replay_lag_bytes"] = max((s["replay_lag_bytes"] or 0 for s in senders), default=0)
        data["_summary"] = (
            f"primary with {len(senders)} standby(s), max replay lag "
            f"{human_size(data['max_replay_lag_bytes'])}; {len(slots)} slot(s), "
            f"{data['inactive_slot_count']} inactive"
        )
        return data
    pause_state = (
        "pg_get_wal_replay_pause_state()"
        if base["version_num"] >= 140000
        else ("CASE WHEN pg_is_wal_replay_paused() THEN 'paused' ELSE 'not paused' END")
    )
    replica = await client.fetch_one(
        None,
        sql.SQL(
            """
            SELECT pg_last_wal_receive_lsn()::text AS receive_lsn,
                   pg_last_wal_replay_lsn()::text AS replay_lsn,
                   coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()),
                            0)::bigint AS replay_lag_bytes,
                   pg_last_xact_replay_timestamp() AS last_replay_at,
                   CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                        ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
                   END AS replay_lag_seconds,
                   pg_is_wal_replay_paused() AS replay_paused,
                   {pause_state} AS pause_state
            """
        ).format(pause_state=sql.SQL(pause_state)),  # a constant chosen by version, not input
    )
    assert replica is not None
    receiver = await client.fetch_one(
        None,
        "SELECT status, sender_host, sender_port, slot_name, flushed_lsn::text AS flushed_lsn,"
        " latest_end_lsn::text AS latest_end_lsn, last_msg_receipt_time"
        " FROM pg_stat_wal_receiver",
    )
    rep = {k: plain(v) for k, v in replica.items()}
    rep["replay_lag_seconds"] = _secs(rep["replay_lag_seconds"])
    rep["wal_receiver"] = {k: plain(v) for k, v in receiver.items()} if receiver else None
    rep["streaming"] = bool(receiver and receiver.get("status") == "streaming")
    data["replica"] = rep
    data["_summary"] = (
        f"replica {'PAUSED' if rep['replay_paused'] else 'replaying'}, "
        f"replay lag {human_size(rep['replay_lag_bytes'])} / {rep['replay_lag_seconds']}s, "
        f"receiver {rep['wal_receiver']['status'] if rep['wal_receiver'] else 'not running'}"
    )
    return data


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
    data["_summary"] = _brief(data)
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
    data["cache_hit_ratio"] = _ratio(data["blks_hit"], data["blks_hit"] + data["blks_read"])
    data["rollback_ratio"] = _ratio(
        data["xact_rollback"], data["xact_commit"] + data["xact_rollback"]
    )
    data["largest_tables"] = _rows(
        await client.fetch(db, _TABLE_SIZES_SQL, {"limit": ctx.params.limit})
    )
    data["_summary"] = (
        f"{db}: {human_size(data['bytes'])}, {data['tables']} tables, "
        f"{data['connections']} connections, {data['deadlocks']} deadlocks, "
        f"xid age {data['xid_age']:,}"
    )
    return data


# --- maintenance rights --------------------------------------------------------------------------


async def may_maintain(ctx: ToolContext[Any], db: str, rel: Relation, what: str) -> None:
    """Refuse before anything runs when the maintenance role may not VACUUM/REINDEX this table.

    PostgreSQL does not fail such a VACUUM: it warns "skipping" and reports success.
    """
    client = client_for(ctx)
    async with client.maintenance(db, timedelta(seconds=10)) as conn:
        cur = await conn.execute(
            """
            SELECT current_user AS who, r.rolsuper AS superuser,
                   pg_has_role(current_user, c.relowner, 'USAGE') AS owner,
                   pg_has_role(current_user, d.datdba, 'USAGE') AS db_owner,
                   current_setting('server_version_num')::int AS version_num
            FROM pg_class c, pg_roles r, pg_database d
            WHERE c.oid = %(oid)s AND r.rolname = current_user
              AND d.datname = current_database()
            """,
            {"oid": rel.oid},
        )
        row = await cur.fetchone()
        if row is None:
            raise ToolFailure(ToolErrorKind.NOT_FOUND, f"{rel.qualified} is gone from {db}")
        allowed = row["superuser"] or row["owner"] or (row["db_owner"] and what != "REINDEX")
        if not allowed and row["version_num"] >= 170000:
            cur = await conn.execute(
                "SELECT has_table_privilege(%(oid)s::oid, 'MAINTAIN') AS ok", {"oid": rel.oid}
            )
            got = await cur.fetchone()
            allowed = bool(got and got["ok"])
    if not allowed:
        raise ToolFailure(
            ToolErrorKind.FAILED,
            f"the maintenance role {row['who']!r} may not {what} {rel.qualified} (owned by "
            f"{rel.owner!r}): GRANT {rel.owner} TO {row['who']} (PostgreSQL 13–16) or "
            f"GRANT pg_maintain TO {row['who']} (17+)",
        )


@contextlib.asynccontextmanager
async def collecting_notices(
    conn: psycopg.AsyncConnection[Any],
) -> AsyncIterator[list[str]]:
    notices: list[str] = []

    def keep(diag: psycopg.errors.Diagnostic) -> None:
        notices.append(f"{diag.severity}: {diag.message_primary}")

    conn.add_notice_handler(keep)
    try:
        yield notices
    finally:
        conn.remove_notice_handler(keep)


def _refused(notices: list[str]) -> str:
    return next((n for n in notices if "skipping" in n or "permission" in n), "")


# --- VACUUM / ANALYZE -----------------------------------------------------------------------------


class VacuumParams(TableParams):
    analyze: bool = Field(default=True, description="VACUUM (ANALYZE): refresh planner statistics")


def _vacuum_sql(rel: Relation, analyze: bool, full: bool = False) -> sql.Composed:
    options = [name for name, on in (("FULL", full), ("ANALYZE", analyze)) if on]
    if options:
        return sql.SQL("VACUUM ({}) {}").format(
            sql.SQL(", ").join(map(sql.SQL, options)), rel.ident
        )
    return sql.SQL("VACUUM {}").format(rel.ident)


async def _table_for(ctx: ToolContext[Any]) -> tuple[str, Relation]:
    db = await database_for(ctx, required=True)
    assert db is not None
    return db, await resolve(ctx, db, ctx.params.table, ctx.params.schema_)


async def capture_table(ctx: ToolContext[Any], what: str) -> dict[str, Any]:
    db, rel = await _table_for(ctx)
    await may_maintain(ctx, db, rel, what)
    stats = await table_stats(ctx, db, rel)
    return {
        "database": db,
        "schema": rel.schema,
        "table": rel.name,
        "owner": rel.owner,
        **{
            k: stats[k]
            for k in (
                "n_live_tup",
                "n_dead_tup",
                "dead_ratio",
                "n_mod_since_analyze",
                "vacuum_count",
                "analyze_count",
                "last_vacuum",
                "last_autovacuum",
                "last_analyze",
                "table_bytes",
                "total_bytes",
                "relfilenode",
                "estimated_bloat_bytes",
            )
        },
    }


async def capture_vacuum(ctx: ToolContext[Any]) -> dict[str, Any]:
    return await capture_table(ctx, "VACUUM")


async def capture_analyze(ctx: ToolContext[Any]) -> dict[str, Any]:
    return await capture_table(ctx, "ANALYZE")


def _vacuum_preview(ctx: ToolContext[Any], before: dict[str, Any], *, full: bool = False) -> str:
    rel = Relation(0, before["schema"], before["table"], "r", before["owner"])
    analyze = bool(getattr(ctx.params, "analyze", False))
    statement = _vacuum_sql(rel, analyze, full).as_string(None)
    state = (
        f"{before['n_dead_tup']} dead / {before['n_live_tup']} live tuples "
        f"({before['dead_ratio']:.1%}), {human_size(before['table_bytes'])}, "
        f"last vacuum {before['last_vacuum'] or before['last_autovacuum'] or 'never'}"
    )
    if not full and _vacuum_noop(ctx, before):
        return f"no-op: {rel.qualified} in {before['database']} has no dead tuples ({state})"
    lock = (
        "ACCESS EXCLUSIVE lock: reads and writes wait until it finishes; rewrites the table"
        if full
        else "runs alongside reads and writes"
    )
    return f"{statement} in database {before['database']} on {_where(ctx, before['database'])} ({state}; {lock})"


def _vacuum_noop(ctx: ToolContext[Any], before: dict[str, Any]) -> bool:
    analyze = bool(getattr(ctx.params, "analyze", False))
    return not before["n_dead_tup"] and (not analyze or not before["n_mod_since_analyze"])


async def _run_maintenance(
    ctx: ToolContext[Any], db: str, statement: sql.Composed, limit: timedelta
) -> list[str]:
    client = client_for(ctx)
    async with client.maintenance(db, limit) as conn, collecting_notices(conn) as notices:
        await conn.execute(statement)
    refused = _refused(notices)
    if refused:
        raise ToolFailure(ToolErrorKind.FAILED, f"PostgreSQL did not do it: {refused}")
    return notices


def _after(before: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    return {
        "database": before["database"],
        "schema": before["schema"],
        "table": before["table"],
        "n_dead_tup_before": before["n_dead_tup"],
        "n_dead_tup": now["n_dead_tup"],
        "n_live_tup": now["n_live_tup"],
        "dead_ratio": now["dead_ratio"],
        "table_bytes_before": before["table_bytes"],
        "table_bytes": now["table_bytes"],
        "vacuum_count": now["vacuum_count"],
        "analyze_count": now["analyze_count"],
        "last_vacuum": now["last_vacuum"],
        "last_analyze": now["last_analyze"],
        "relfilenode": now["relfilenode"],
    }


VACUUM_TIMEOUT = timedelta(minutes=30)


@TOOLSET.write(
    "vacuum",
    "VACUUM (ANALYZE) one table: removes dead tuples without blocking reads or writes.",
    VacuumParams,
    level=RiskLevel.SOFT,
    reversibility=Reversibility.STATELESS,
    capture=capture_vacuum,
    preview=_vacuum_preview,
    is_noop=_vacuum_noop,
    timeout=VACUUM_TIMEOUT,
)
async def vacuum(ctx: ToolContext[VacuumParams]) -> dict[str, Any]:
    db, rel = await _table_for(ctx)
    before = ctx.before or await capture_table(ctx, "VACUUM")
    current = await table_stats(ctx, db, rel)
    if current["vacuum_count"] > before["vacuum_count"]:  # a retry after this change ran
        return _after(before, current) | {"_summary": f"{rel.qualified} was already vacuumed"}
    notices = await _run_maintenance(ctx, db, _vacuum_sql(rel, ctx.params.analyze), VACUUM_TIMEOUT)
    now = await table_stats(ctx, db, rel)
    return _after(before, now) | {
        "notices": notices,
        "_summary": f"vacuumed {rel.qualified} in {db}: dead tuples "
        f"{before['n_dead_tup']} → {now['n_dead_tup']}",
    }


@TOOLSET.write(
    "analyze",
    "ANALYZE one table: refresh the planner's statistics (reads the table, blocks nothing).",
    TableParams,
    level=RiskLevel.SOFT,
    reversibility=Reversibility.STATELESS,
    capture=capture_analyze,
    preview=lambda ctx, b: (
        f"ANALYZE {sql.Identifier(b['schema'], b['table']).as_string(None)} in database "
        f"{b['database']} on {_where(ctx, b['database'])} ({b['n_mod_since_analyze']} rows "
        f"changed since the last analyze at {b['last_analyze'] or 'never'})"
    ),
    timeout=VACUUM_TIMEOUT,
)
async def analyze(ctx: ToolContext[TableParams]) -> dict[str, Any]:
    db, rel = await _table_for(ctx)
    before = ctx.before or await capture_table(ctx, "ANALYZE")
    current = await table_stats(ctx, db, rel)
    if current["analyze_count"] > before["analyze_count"]:
        return _after(before, current) | {"_summary": f"{rel.qualified} was already analyzed"}
    notices = await _run_maintenance(
        ctx, db, sql.SQL("ANALYZE {}").format(rel.ident), VACUUM_TIMEOUT
    )
    now = await table_stats(ctx, db, rel)
    return _after(before, now) | {
        "notices": notices,
        "_summary": f"analyzed {rel.qualified} in {db}",
    }


@TOOLSET.write(
    "vacuum_full",
    "VACUUM FULL one table: rewrites it to return space to the OS (ACCESS EXCLUSIVE lock).",
    VacuumParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=capture_vacuum,
    preview=lambda ctx, b: _vacuum_preview(ctx, b, full=True),
    timeout=timedelta(hours=2),
)
async def vacuum_full(ctx: ToolContext[VacuumParams]) -> dict[str, Any]:
    db, rel = await _table_for(ctx)
    before = ctx.before or await capture_table(ctx, "VACUUM")
    current = await table_stats(ctx, db, rel)
    if current["relfilenode"] != before["relfilenode"]:  # rewritten already: a retry
        return _after(before, current) | {"_summary": f"{rel.qualified} was already rewritten"}
    notices = await _run_maintenance(
        ctx, db, _vacuum_sql(rel, ctx.params.analyze, full=True), timedelta(hours=2)
    )
    now = await table_stats(ctx, db, rel)
    return _after(before, now) | {
        "notices": notices,
        "_summary": f"VACUUM FULL {rel.qualified}: {human_size(before['table_bytes'])} → "
        f"{human_size(now['table_bytes'])}",
    }


# --- REINDEX ---------------------------------------------------------------------------------------


class ReindexParams(BaseModel):
    """Exactly one of ``index`` or ``table`` (all of its indexes)."""

    model_config = ConfigDict(extra="forbid")
    index: str | None = Field(default=None, max_length=200)
    table: str | None = Field(default=None, max_length=200)
    schema_: str | None = Field(default=None, alias="schema", max_length=63)

    @field_validator("index", "table", "schema_")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        return _name(value)

    @model_validator(mode="after")
    def _one(self) -> ReindexParams:
        if (self.index is None) == (self.table is None):
            raise ValueError("give exactly one of index or table")
        return self


async def _reindex_target(ctx: ToolContext[ReindexParams]) -> tuple[str, Relation, Relation]:
    """(database, the index or table named, the table whose ownership matters)."""
    db = await database_for(ctx, required=True)
    assert db is not None
    p = ctx.params
    if p.index is not None:
        rel = await resolve(ctx, db, p.index, p.schema_, index=True)
        table = await resolve(ctx, db, rel.table, rel.schema)
        return db, rel, table
    assert p.table is not None
    rel = await resolve(ctx, db, p.table, p.schema_)
    return db, rel, rel


_TABLE_INDEXES_SQL = """
SELECT ci.relname AS index, ci.relfilenode, i.indisvalid AS valid,
       pg_relation_size(ci.oid) AS bytes
FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid
WHERE i.indrelid = %(table)s ORDER BY ci.relname
"""


async def capture_reindex(ctx: ToolContext[ReindexParams]) -> dict[str, Any]:
    db, rel, table = await _reindex_target(ctx)
    await may_maintain(ctx, db, table, "REINDEX")
    indexes = _rows(await client_for(ctx).fetch(db, _TABLE_INDEXES_SQL, {"table": table.oid}))
    if rel.kind in ("i", "I"):
        targets = [i for i in indexes if i["index"] == rel.name]
    else:
        targets = indexes
    if not targets:
        raise ToolFailure(ToolErrorKind.NOT_FOUND, f"{rel.qualified} has no indexes to rebuild")
    return {
        "database": db,
        "schema": rel.schema,
        "name": rel.name,
        "kind": "index" if rel.kind in ("i", "I") else "table",
        "table": table.name,
        "indexes": targets,
        "all_indexes": [i["index"] for i in indexes],
        "invalid": [i["index"] for i in targets if not i["valid"]],
        "bytes": sum(i["bytes"] for i in targets),
    }


def _reindex_sql(before: dict[str, Any], concurrently: bool) -> sql.Composed:
    kind = sql.SQL("INDEX" if before["kind"] == "index" else "TABLE")
    how = sql.SQL(" CONCURRENTLY") if concurrently else sql.SQL("")
    return sql.SQL("REINDEX {}{} {}").format(
        kind, how, sql.Identifier(before["schema"], before["name"])
    )


def _reindex_preview(concurrently: bool) -> Callable[[ToolContext[Any], dict[str, Any]], str]:
    def preview(ctx: ToolContext[Any], before: dict[str, Any]) -> str:
        invalid = (
            f", {len(before['invalid'])} invalid: {', '.join(before['invalid'])}"
            if before["invalid"]
            else ""
        )
        locks = (
            "builds new indexes alongside and swaps them in; reads and writes continue"
            if concurrently
            else "blocks writes to the table (and reads using the index) until it finishes"
        )
        return (
            f"{_reindex_sql(before, concurrently).as_string(None)} in database "
            f"{before['database']} on {_where(ctx, before['database'])} "
            f"({len(before['indexes'])} index(es), {human_size(before['bytes'])}{invalid}; {locks})"
        )

    return preview


async def _reindex(ctx: ToolContext[ReindexParams], concurrently: bool) -> dict[str, Any]:
    db, rel, table = await _reindex_target(ctx)
    before = ctx.before or await capture_reindex(ctx)
    client = client_for(ctx)
    old = {i["index"]: i["relfilenode"] for i in before["indexes"]}
    current = _rows(await client.fetch(db, _TABLE_INDEXES_SQL, {"table": table.oid}))
    mine = [i for i in current if i["index"] in old]
    if mine and all(i["relfilenode"] != old[i["index"]] and i["valid"] for i in mine):
        return {"indexes": mine, "_summary": f"{rel.qualified} was already rebuilt"}
    try:
        notices = await _run_maintenance(
            ctx, db, _reindex_sql(before, concurrently), timedelta(hours=2)
        )
    except (psycopg.Error, ToolFailure) as exc:
        leftovers = await _drop_ccnew_leftovers(ctx, db, table, before)
        failure = translate(exc) if isinstance(exc, psycopg.Error) else exc
        assert failure is not None
        note = f"; removed the leftover index(es) {', '.join(leftovers)}" if leftovers else ""
        raise ToolFailure(failure.kind, f"REINDEX failed: {failure.message}{note}") from exc
    after = _rows(await client.fetch(db, _TABLE_INDEXES_SQL, {"table": table.oid}))
    rebuilt = [i for i in after if i["index"] in old]
    return {
        "database": db,
        "indexes": rebuilt,
        "invalid": [i["index"] for i in rebuilt if not i["valid"]],
        "bytes_before": before["bytes"],
        "bytes": sum(i["bytes"] for i in rebuilt),
        "notices": notices,
        "_summary": f"rebuilt {len(rebuilt)} index(es) of {table.qualified} in {db}: "
        f"{human_size(before['bytes'])} → {human_size(sum(i['bytes'] for i in rebuilt))}, "
        f"{sum(1 for i in rebuilt if not i['valid'])} invalid",
    }


async def _drop_ccnew_leftovers(
    ctx: ToolContext[Any], db: str, table: Relation, before: dict[str, Any]
) -> list[str]:
    """A failed REINDEX CONCURRENTLY leaves invalid ``*_ccnew`` copies: remove only those."""
    client = client_for(ctx)
    now = _rows(await client.fetch(db, _TABLE_INDEXES_SQL, {"table": table.oid}))
    known = set(before["all_indexes"])
    leftovers = [
        i["index"]
        for i in now
        if i["index"] not in known and not i["valid"] and "_ccnew" in i["index"]
    ]
    for name in leftovers:
        with contextlib.suppress(psycopg.Error):
            async with client.maintenance(db, timedelta(minutes=5)) as conn:
                await conn.execute(
                    sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                        sql.Identifier(table.schema, name)
                    )
                )
    return leftovers


@TOOLSET.write(
    "reindex",
    "REINDEX CONCURRENTLY an index (or all of a table's): rebuilds invalid or bloated indexes "
    "without blocking reads or writes.",
    ReindexParams,
    level=RiskLevel.SOFT,
    reversibility=Reversibility.STATELESS,
    capture=capture_reindex,
    preview=_reindex_preview(True),
    timeout=timedelta(hours=2),
)
async def reindex(ctx: ToolContext[ReindexParams]) -> dict[str, Any]:
    return await _reindex(ctx, concurrently=True)


@TOOLSET.write(
    "reindex_locking",
    "Plain REINDEX (not concurrent): faster, but blocks writes while it runs.",
    ReindexParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.STATELESS,
    capture=capture_reindex,
    preview=_reindex_preview(False),
    timeout=timedelta(hours=2),
)
async def reindex_locking(ctx: ToolContext[ReindexParams]) -> dict[str, Any]:
    return await _reindex(ctx, concurrently=False)


# --- cancel / terminate ------------------------------------------------------------------------------


class SignalParams(PidParams):
    xact_start: str | None = Field(
        default=None,
        description="act only while this transaction (its start time) is still running",
    )


def _refuse_protected(s: dict[str, Any], verb: str) -> None:
    if s["protected"]:
        raise ToolFailure(
            ToolErrorKind.INVALID, f"refusing to {verb} pid {s['pid']}: {s['protected']}"
        )


async def capture_backend(ctx: ToolContext[SignalParams]) -> dict[str, Any]:
    found = await sessions(ctx, pid=ctx.params.pid)
    if not found:
        raise ToolFailure(
            ToolErrorKind.NOT_FOUND,
            f"no server process with pid {ctx.params.pid} on postgres target {ctx.ref.target}",
        )
    s = found[0]
    if ctx.ref.resource and s["database"] != ctx.ref.resource:
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"pid {s['pid']} is connected to {s['database']!r}, not to {ctx.ref.resource!r}",
        )
    return s


def _xact_gone(ctx: ToolContext[SignalParams], before: dict[str, Any]) -> bool:
    wanted = ctx.params.xact_start
    return wanted is not None and before.get("xact_start") != wanted


_SIGNAL_SQL = """
SELECT a.pid, {fn}(a.pid) AS signalled
FROM pg_stat_activity a JOIN pg_roles r ON r.oid = a.usesysid
WHERE a.pid = %(pid)s AND a.backend_start = %(backend_start)s::timestamptz
  AND a.backend_type = 'client backend' AND NOT r.rolsuper AND a.pid <> pg_backend_pid()
  AND a.application_name NOT LIKE %(ours)s
  AND (%(query_start)s::timestamptz IS NULL OR a.query_start = %(query_start)s::timestamptz)
  AND (%(xact_start)s::timestamptz IS NULL OR a.xact_start = %(xact_start)s::timestamptz)
  AND (%(state_change)s::timestamptz IS NULL OR a.state_change = %(state_change)s::timestamptz)
"""


async def _signal(
    ctx: ToolContext[Any],
    s: dict[str, Any],
    fn: Literal["pg_cancel_backend", "pg_terminate_backend"],
    *,
    query_start: str | None = None,
    xact_start: str | None = None,
    state_change: str | None = None,
) -> bool:
    """Signal exactly this backend (pid + start time, optionally the same query/transaction/idle
    period) as the maintenance role, re-checking the protections in the same statement."""
    async with client_for(ctx).maintenance(None, timedelta(seconds=30)) as conn:
        cur = await conn.execute(
            sql.SQL(_SIGNAL_SQL).format(fn=sql.Identifier(fn)),
            {
                "pid": s["pid"],
                "backend_start": s["backend_start"],
                "query_start": query_start,
                "xact_start": xact_start,
                "state_change": state_change,
                "ours": f"{APPLICATION_NAME}%",
            },
        )
        row = await cur.fetchone()
    return bool(row and row["signalled"])


async def _wait_until(check: Callable[[], Any], within: float = SIGNAL_WAIT) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


async def _still_there(ctx: ToolContext[Any], s: dict[str, Any]) -> dict[str, Any] | None:
    found = await sessions(ctx, pid=s["pid"])
    if found and found[0]["backend_start"] == s["backend_start"]:
        return found[0]
    return None


@TOOLSET.write(
    "cancel_query",
    "Cancel the query a backend is running (pg_cancel_backend); the session stays connected.",
    SignalParams,
    level=RiskLevel.SOFT,
    reversibility=Reversibility.STATELESS,
    capture=capture_backend,
    preview=lambda ctx, b: (
        f"no-op: pid {b['pid']} is {b['state']}, no query running"
        if b["state"] != "active" or _xact_gone(ctx, b)
        else f"SELECT pg_cancel_backend({b['pid']}) on {_where(ctx, b['database'])}: cancel "
        f"{_brief(b)} running for {b['query_seconds'] or 0:.0f}s"
    ),
    is_noop=lambda ctx, b: b["state"] != "active" or _xact_gone(ctx, b),
    needs_resource=False,
)
async def cancel_query(ctx: ToolContext[SignalParams]) -> dict[str, Any]:
    before = ctx.before or await capture_backend(ctx)
    _refuse_protected(before, "cancel the query of")
    sent = await _signal(
        ctx,
        before,
        "pg_cancel_backend",
        query_start=before["query_start"],
        xact_start=ctx.params.xact_start,
    )
    after: dict[str, Any] | None = None

    async def ended() -> bool:
        nonlocal after
        after = await _still_there(ctx, before)
        return (
            after is None
            or after["query_start"] != before["query_start"]
            or (after["state"] != "active")
        )

    done = await _wait_until(ended) if sent else True
    return {
        "cancelled": _record(before) if sent else None,
        "signalled": sent,
        "query_ended": done,
        "state_after": after["state"] if after else "gone",
        "_summary": (
            f"cancelled the query of pid {before['pid']} (now {after['state'] if after else 'gone'})"
            if sent
            else f"the query of pid {before['pid']} had already finished: nothing cancelled"
        ),
    }


@TOOLSET.write(
    "terminate_backend",
    "Terminate one session (pg_terminate_backend): its open transaction is rolled back.",
    SignalParams,
    level=RiskLevel.SOFT,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=capture_backend,
    preview=lambda ctx, b: (
        f"no-op: the transaction of pid {b['pid']} started at {ctx.params.xact_start} has ended"
        if _xact_gone(ctx, b)
        else f"SELECT pg_terminate_backend({b['pid']}) on {_where(ctx, b['database'])}: end "
        f"{_brief(b)}"
        + (
            f"; rolls back its transaction open for {b['xact_seconds']:.0f}s"
            if b["xact_start"]
            else ""
        )
        + (f" [REFUSED: {b['protected']}]" if b["protected"] else "")
    ),
    is_noop=_xact_gone,
    needs_resource=False,
)
async def terminate_backend(ctx: ToolContext[SignalParams]) -> dict[str, Any]:
    before = ctx.before or await capture_backend(ctx)
    _refuse_protected(before, "terminate")
    if await _still_there(ctx, before) is None:  # a retry after it went
        return {"terminated": [], "_summary": f"pid {before['pid']} is already gone"}
    sent = await _signal(ctx, before, "pg_terminate_backend", xact_start=ctx.params.xact_start)

    async def gone() -> bool:
        return await _still_there(ctx, before) is None

    exited = await _wait_until(gone) if sent else False
    return {
        "terminated": [_record(before)] if sent else [],
        "exited": exited,
        "_summary": (
            f"terminated {_brief(before)}" + ("" if exited else " (still exiting)")
            if sent
            else f"pid {before['pid']} no longer matched (transaction ended): nothing terminated"
        ),
    }


class IdleCleanupParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    older_than_seconds: float = Field(
        default=300, ge=1, description="idle in transaction at least this long"
    )


def _eligible_preview(ctx: ToolContext[Any], before: dict[str, Any], what: str) -> str:
    victims = before["sessions"]
    where = _where(ctx, before.get("database"))
    skipped = before["protected"]
    skip_note = (
        f"; leaving {len(skipped)} protected: "
        + ", ".join(f"pid {s['pid']} ({s['protected']})" for s in skipped[:5])
        if skipped
        else ""
    )
    if not victims:
        return f"no-op: no {what} on {where}{skip_note}"
    listed = ", ".join(_brief(s) for s in victims[:10])
    more = f" and {len(victims) - 10} more" if len(victims) > 10 else ""
    return f"pg_terminate_backend on {len(victims)} {what} on {where}: {listed}{more}{skip_note}"


async def capture_idle(ctx: ToolContext[IdleCleanupParams]) -> dict[str, Any]:
    db = await database_for(ctx)
    found = [
        s
        for s in await sessions(ctx, db)
        if s["state"] in IDLE_IN_TRANSACTION
        and (s["state_seconds"] or 0) >= ctx.params.older_than_seconds
    ]
    return {
        "database": db,
        "older_than_seconds": ctx.params.older_than_seconds,
        "sessions": [s for s in found if not s["protected"]],
        "protected": [s for s in found if s["protected"]],
    }


async def _terminate_each(
    ctx: ToolContext[Any], victims: list[dict[str, Any]], *, same_idle_period: bool
) -> dict[str, Any]:
    terminated, skipped = [], []
    for s in victims:
        sent = await _signal(
            ctx,
            s,
            "pg_terminate_backend",
            state_change=s["state_change"] if same_idle_period else None,
        )
        if sent:
            terminated.append(s)
        else:
            skipped.append({"pid": s["pid"], "reason": "gone or changed since the preview"})

    async def all_gone() -> bool:
        return all([await _still_there(ctx, s) is None for s in terminated])

    exited = await _wait_until(all_gone) if terminated else True
    return {
        "terminated": [_record(s) for s in terminated],
        "terminated_count": len(terminated),
        "skipped": skipped,
        "exited": exited,
    }


@TOOLSET.write(
    "terminate_idle_in_transaction",
    "Terminate sessions idle in a transaction for longer than N seconds (never superusers, "
    "replication or our own); the resource database limits it to one database.",
    IdleCleanupParams,
    level=RiskLevel.SOFT,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=capture_idle,
    preview=lambda ctx, b: _eligible_preview(
        ctx, b, f"session(s) idle in transaction ≥ {b['older_than_seconds']:g}s"
    ),
    is_noop=lambda ctx, b: not b["sessions"],
    needs_resource=False,
)
async def terminate_idle_in_transaction(ctx: ToolContext[IdleCleanupParams]) -> dict[str, Any]:
    before = ctx.before or await capture_idle(ctx)
    # Exactly the previewed sessions, and only if still in the same idle period.
    result = await _terminate_each(ctx, before["sessions"], same_idle_period=True)
    result["_summary"] = (
        f"terminated {result['terminated_count']} idle-in-transaction session(s) on "
        f"{_where(ctx, before['database'])}"
        + (f", {len(result['skipped'])} had moved on" if result["skipped"] else "")
    )
    return result


class DatabaseSessionsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str | None = Field(default=None, max_length=63, description="only this role's sessions")
    state: (
        Literal["active", "idle", "idle in transaction", "idle in transaction (aborted)"] | None
    ) = None

    @field_validator("user")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        return _name(value)


async def capture_db_sessions(ctx: ToolContext[DatabaseSessionsParams]) -> dict[str, Any]:
    db = await database_for(ctx, required=True)
    p = ctx.params
    found = [
        s
        for s in await sessions(ctx, db)
        if (p.user is None or s["user"] == p.user) and (p.state is None or s["state"] == p.state)
    ]
    return {
        "database": db,
        "user": p.user,
        "state": p.state,
        "sessions": [s for s in found if not s["protected"]],
        "protected": [s for s in found if s["protected"] and s["backend_type"] == CLIENT_BACKEND],
    }


@TOOLSET.write(
    "terminate_database_sessions",
    "Terminate the sessions of one database (optionally one user's, or one state's); never "
    "superusers, replication or our own.",
    DatabaseSessionsParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=capture_db_sessions,
    preview=lambda ctx, b: _eligible_preview(
        ctx,
        b,
        "session(s)"
        + (f" of {b['user']}" if b["user"] else "")
        + (f" in state {b['state']}" if b["state"] else ""),
    ),
    is_noop=lambda ctx, b: not b["sessions"],
)
async def terminate_database_sessions(
    ctx: ToolContext[DatabaseSessionsParams],
) -> dict[str, Any]:
    before = ctx.before or await capture_db_sessions(ctx)
    result = await _terminate_each(ctx, before["sessions"], same_idle_period=False)
    result["_summary"] = (
        f"terminated {result['terminated_count']} session(s) of {before['database']}"
    )
    return result


# --- replication -------------------------------------------------------------------------------------


class SlotParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slot: str = Field(pattern=r"^[a-z0-9_]{1,63}$", description="replication slot name")


async def capture_slot(ctx: ToolContext[SlotParams]) -> dict[str, Any]:
    client = client_for(ctx)
    row = await client.fetch_one(
        None,
        """
        SELECT slot_name, slot_type, plugin, database, active, active_pid, temporary,
               restart_lsn::text AS restart_lsn, wal_status,
               CASE WHEN pg_is_in_recovery() OR restart_lsn IS NULL THEN NULL
                    ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint
               END AS retained_bytes
        FROM pg_replication_slots WHERE slot_name = %(slot)s
        """,
        {"slot": ctx.params.slot},
    )
    if row is None:
        return {"exists": False, "slot_name": ctx.params.slot}
    data = {k: plain(v) for k, v in row.items()}
    if data["active"]:
        raise ToolFailure(
            ToolErrorKind.CONFLICT,
            f"replication slot {ctx.params.slot!r} is active (pid {data['active_pid']}): "
            "refusing to drop a slot in use",
        )
    async with client.maintenance(None, timedelta(seconds=10)) as conn:
        cur = await conn.execute(
            "SELECT current_user AS who, rolsuper OR rolreplication AS ok FROM pg_roles"
            " WHERE rolname = current_user"
        )
        rights = await cur.fetchone()
    if not rights or not rights["ok"]:
        who = rights["who"] if rights else client.maintenance_user
        raise ToolFailure(
            ToolErrorKind.FAILED,
            f"the maintenance role {who!r} may not drop replication slots: "
            f"ALTER ROLE {who} REPLICATION",
        )
    return {"exists": True, **data}


@TOOLSET.write(
    "drop_replication_slot",
    "Drop an inactive replication slot (frees the WAL it retains; its consumer must resync).",
    SlotParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=capture_slot,
    preview=lambda ctx, b: (
        f"no-op: replication slot {b['slot_name']!r} does not exist"
        if not b["exists"]
        else f"SELECT pg_drop_replication_slot('{b['slot_name']}') on "
        f"{_where(ctx)}: inactive {b['slot_type']} slot"
        + (f" of database {b['database']}" if b["database"] else "")
        + f", restart_lsn {b['restart_lsn']}, retaining "
        f"{human_size(b['retained_bytes'] or 0)} of WAL; its consumer will need a fresh base "
        "backup / resync"
    ),
    is_noop=lambda ctx, b: not b["exists"],
    needs_resource=False,
)
async def drop_replication_slot(ctx: ToolContext[SlotParams]) -> dict[str, Any]:
    before = ctx.before or await capture_slot(ctx)
    client = client_for(ctx)
    # logical slots must be dropped from their own database
    async with client.maintenance(before.get("database"), timedelta(seconds=30)) as conn:
        cur = await conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) AS dropped FROM pg_replication_slots"
            " WHERE slot_name = %(slot)s AND NOT active",
            {"slot": ctx.params.slot},
        )
        dropped = await cur.fetchone()
    if dropped is None:
        still = await client.fetch_one(
            None,
            "SELECT active FROM pg_replication_slots WHERE slot_name = %(slot)s",
            {"slot": ctx.params.slot},
        )
        if still is not None:
            raise ToolFailure(
                ToolErrorKind.CONFLICT,
                f"replication slot {ctx.params.slot!r} became active: not dropped",
            )
        return {"dropped": None, "_summary": f"slot {ctx.params.slot!r} was already gone"}
    return {
        "dropped": {
            k: before.get(k)
            for k in ("slot_name", "slot_type", "database", "restart_lsn", "retained_bytes")
        },
        "_summary": f"dropped replication slot {ctx.params.slot!r}, "
        f"freeing {human_size(before.get('retained_bytes') or 0)} of WAL",
    }


async def capture_replay(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    row = await client_for(ctx).fetch_one(
        None,
        "SELECT pg_is_in_recovery() AS in_recovery,"
        " CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END AS paused,"
        " pg_last_wal_receive_lsn()::text AS receive_lsn,"
        " pg_last_wal_replay_lsn()::text AS replay_lsn,"
        " coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)::bigint"
        "   AS replay_lag_bytes",
    )
    assert row is not None
    if not row["in_recovery"]:
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED,
            f"postgres target {ctx.ref.target} is a primary: WAL replay only exists on a replica",
        )
    return {k: plain(v) for k, v in row.items()}


async def _set_replay(ctx: ToolContext[NoParams], pause: bool) -> dict[str, Any]:
    before = ctx.before or await capture_replay(ctx)
    fn = "pg_wal_replay_pause" if pause else "pg_wal_replay_resume"
    current = await capture_replay(ctx)
    if bool(current["paused"]) != pause:
        async with client_for(ctx).maintenance(None, timedelta(seconds=30)) as conn:
            await conn.execute(sql.SQL("SELECT {}()").format(sql.Identifier(fn)))

    async def settled() -> bool:
        return bool((await capture_replay(ctx))["paused"]) == pause

    await _wait_until(settled)
    now = await capture_replay(ctx)
    return now | {
        "replay_lag_bytes_before": before["replay_lag_bytes"],
        "_summary": f"WAL replay {'paused' if now['paused'] else 'resumed'} on "
        f"{_where(ctx)}; replay lag {human_size(now['replay_lag_bytes'])}",
    }


@TOOLSET.write(
    "resume_replay",
    "Resume paused WAL replay on a replica (pg_wal_replay_resume).",
    NoParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_replay,
    preview=lambda ctx, b: (
        "no-op: WAL replay is not paused"
        if not b["paused"]
        else f"SELECT pg_wal_replay_resume() on {_where(ctx)}: replay is paused "
        f"{human_size(b['replay_lag_bytes'])} behind what it has received"
    ),
    compensate=lambda ctx, b: ("postgres.pause_replay", {}) if b["paused"] else None,
    is_noop=lambda ctx, b: not b["paused"],
    needs_resource=False,
)
async def resume_replay(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    return await _set_replay(ctx, pause=False)


@TOOLSET.write(
    "pause_replay",
    "Pause WAL replay on a replica (pg_wal_replay_pause); the compensation of resume_replay.",
    NoParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_replay,
    preview=lambda ctx, b: (
        "no-op: WAL replay is already paused"
        if b["paused"]
        else f"SELECT pg_wal_replay_pause() on {_where(ctx)}: the replica stops applying WAL"
    ),
    compensate=lambda ctx, b: None if b["paused"] else ("postgres.resume_replay", {}),
    is_noop=lambda ctx, b: bool(b["paused"]),
    needs_resource=False,
)
async def pause_replay(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    return await _set_replay(ctx, pause=True)
