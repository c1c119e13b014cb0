"""The toolset, its error translation, and the one way to reach a PostgreSQL target.

Diagnostics go through a small pool per target and database as the read-only role, in read-only
transactions with ``statement_timeout``; writes use the maintenance role on a dedicated autocommit
connection with ``lock_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import ipaddress
import math
import os
from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import psycopg
import psycopg.errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from activities.catalog import ToolContext, ToolFailure, Toolset
from core.models import ToolErrorKind
from core.redact import redact_text
from core.targets import PostgresTarget

APPLICATION_NAME = "homelab-agents"  # a label for pg_stat_activity readers, never a protection
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


def plain_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: plain(v) for k, v in row.items()} for row in rows]


def query_text(text: Any) -> str:
    if not text:
        return ""
    flat = " ".join(str(text).split())
    return redact_text(flat[:QUERY_CHARS] + ("…" if len(flat) > QUERY_CHARS else ""))


def share(part: float, whole: float) -> float:
    return round(part / whole, 4) if whole else 0.0


def round_secs(value: Any) -> float | None:
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
        self.own_roles = sorted(
            {login_role(target.read_dsn.get_secret_value()), login_role(maint.get_secret_value())}
        )
        """The roles the agents log in as: their sessions are never cancelled or terminated. By
        role, not application_name, which any client may set to anything."""

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


def login_role(dsn: str) -> str:
    """The role a DSN logs in as: its ``user``, else libpq's default (PGUSER, else the OS user)."""
    return str(conninfo_to_dict(dsn).get("user") or os.environ.get("PGUSER") or getpass.getuser())


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


def place(ctx: ToolContext[Any], db: str | None = None) -> str:
    base = f"postgres:{ctx.ref.target}"
    name = db or ctx.ref.resource
    return f"{base}/{name}" if name else base
