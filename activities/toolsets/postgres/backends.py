"""Cancelling queries and ending sessions.

Never superusers, replication or other non-client backends, nor homelab-agents' own sessions (the
roles its targets log in as: an application_name is whatever a client says it is); every session
ended is recorded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal

from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, field_validator

from activities.catalog import ToolContext, ToolFailure
from activities.toolsets.postgres.client import (
    CLIENT_BACKEND,
    IDLE_IN_TRANSACTION,
    SIGNAL_WAIT,
    TOOLSET,
    client_for,
    database_for,
    place,
)
from activities.toolsets.postgres.lookup import (
    checked_name,
    session_brief,
    session_record,
    sessions,
)
from activities.toolsets.postgres.server import PidParams
from core.models import Reversibility, RiskLevel, ToolErrorKind


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
    """The session as it is now; a session that no longer exists is captured as ``gone``.

    Gone is the state cancel and terminate want (a client that closes its connection after the
    cancel ends its transaction itself): those writes are then no-ops, not failures.
    """
    found = await sessions(ctx, pid=ctx.params.pid)
    if not found:
        return {
            "pid": ctx.params.pid,
            "gone": True,
            "state": "gone",
            "database": ctx.ref.resource or None,
            "xact_start": None,
            "protected": None,
        }
    s = found[0]
    if ctx.ref.resource and s["database"] != ctx.ref.resource:
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"pid {s['pid']} is connected to {s['database']!r}, not to {ctx.ref.resource!r}",
        )
    return s


def _xact_gone(ctx: ToolContext[SignalParams], before: dict[str, Any]) -> bool:
    """The session ended, or the transaction the call names is over (another one may run)."""
    if before.get("gone"):
        return True
    wanted = ctx.params.xact_start
    return wanted is not None and before.get("xact_start") != wanted


def _session_facts(s: dict[str, Any]) -> dict[str, Any]:
    """Which session and which query/transaction: what an approval is about (not its age)."""
    keys = ("pid", "user", "database", "application", "backend_start", "query_start", "xact_start")
    return {k: s.get(k) for k in keys} | {"gone": bool(s.get("gone")), "state": s.get("state")}


def _gone_note(before: dict[str, Any]) -> str:
    return f"no-op: pid {before['pid']} no longer exists (the session ended before this step)"


_SIGNAL_SQL = """
SELECT a.pid, {fn}(a.pid) AS signalled
FROM pg_stat_activity a JOIN pg_roles r ON r.oid = a.usesysid
WHERE a.pid = %(pid)s AND a.backend_start = %(backend_start)s::timestamptz
  AND a.backend_type = 'client backend' AND NOT r.rolsuper AND a.pid <> pg_backend_pid()
  AND a.usename <> current_user AND NOT a.usename = ANY(%(ours)s::text[])
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
                "ours": client_for(ctx).own_roles,
            },
        )
        row = await cur.fetchone()
    return bool(row and row["signalled"])


async def wait_until(check: Callable[[], Any], within: float = SIGNAL_WAIT) -> bool:
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
        _gone_note(b)
        if b.get("gone")
        else f"no-op: pid {b['pid']} is {b['state']}, no query running"
        if b["state"] != "active" or _xact_gone(ctx, b)
        else f"SELECT pg_cancel_backend({b['pid']}) on {place(ctx, b['database'])}: cancel "
        f"{session_brief(b)} running for {b['query_seconds'] or 0:.0f}s"
    ),
    is_noop=lambda ctx, b: b["state"] != "active" or _xact_gone(ctx, b),
    facts=lambda ctx, b: _session_facts(b),
    needs_resource=False,
)
async def cancel_query(ctx: ToolContext[SignalParams]) -> dict[str, Any]:
    before = ctx.before or await capture_backend(ctx)
    if before.get("gone"):
        return {"cancelled": None, "signalled": False, "_summary": _gone_note(before)}
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

    done = await wait_until(ended) if sent else True
    return {
        "cancelled": session_record(before) if sent else None,
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
        _gone_note(b)
        if b.get("gone")
        else f"no-op: the transaction of pid {b['pid']} started at {ctx.params.xact_start} has ended"
        if _xact_gone(ctx, b)
        else f"SELECT pg_terminate_backend({b['pid']}) on {place(ctx, b['database'])}: end "
        f"{session_brief(b)}"
        + (
            f"; rolls back its transaction open for {b['xact_seconds']:.0f}s"
            if b["xact_start"]
            else ""
        )
        + (f" [REFUSED: {b['protected']}]" if b["protected"] else "")
    ),
    is_noop=_xact_gone,
    facts=lambda ctx, b: _session_facts(b),
    needs_resource=False,
)
async def terminate_backend(ctx: ToolContext[SignalParams]) -> dict[str, Any]:
    before = ctx.before or await capture_backend(ctx)
    if before.get("gone"):
        return {"terminated": [], "_summary": _gone_note(before)}
    _refuse_protected(before, "terminate")
    if await _still_there(ctx, before) is None:  # a retry after it went
        return {"terminated": [], "_summary": f"pid {before['pid']} is already gone"}
    sent = await _signal(ctx, before, "pg_terminate_backend", xact_start=ctx.params.xact_start)

    async def gone() -> bool:
        return await _still_there(ctx, before) is None

    exited = await wait_until(gone) if sent else False
    return {
        "terminated": [session_record(before)] if sent else [],
        "exited": exited,
        "_summary": (
            f"terminated {session_brief(before)}" + ("" if exited else " (still exiting)")
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
    where = place(ctx, before.get("database"))
    skipped = before["protected"]
    skip_note = (
        f"; leaving {len(skipped)} protected: "
        + ", ".join(f"pid {s['pid']} ({s['protected']})" for s in skipped[:5])
        if skipped
        else ""
    )
    if not victims:
        return f"no-op: no {what} on {where}{skip_note}"
    listed = ", ".join(session_brief(s) for s in victims[:10])
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

    exited = await wait_until(all_gone) if terminated else True
    return {
        "terminated": [session_record(s) for s in terminated],
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
    facts=lambda ctx, b: [_session_facts(s) for s in b["sessions"]],
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
        f"{place(ctx, before['database'])}"
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
        return checked_name(value)


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
    facts=lambda ctx, b: [_session_facts(s) for s in b["sessions"]],
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
