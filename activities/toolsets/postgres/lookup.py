"""Tables, indexes and sessions looked up in the catalogs with bound values before anything acts.

An unknown name is a NOT_FOUND error, never a statement; names reach SQL only as
``psycopg.sql.Identifier``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, field_validator

from activities.catalog import ToolContext, ToolFailure
from activities.toolsets.postgres.client import (
    client_for,
    plain,
    query_text,
    round_secs,
)
from core.models import ToolErrorKind

# --- names ---------------------------------------------------------------------------------------


def checked_name(value: str | None) -> str | None:
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
        return checked_name(value)


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
         WHEN a.usename = current_user OR a.usename = ANY(%(ours)s::text[])
           THEN 'a homelab-agents session (role ' || a.usename || ')'
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
    data["query"] = query_text(row.get("query"))
    for key in ("xact_seconds", "query_seconds", "state_seconds"):
        data[key] = round_secs(row.get(key))
    data["blocked_by"] = list(row.get("blocked_by") or [])
    return data


async def sessions(
    ctx: ToolContext[Any], db: str | None = None, pid: int | None = None
) -> list[dict[str, Any]]:
    rows = await client_for(ctx).fetch(
        None, _SESSIONS_SQL, {"db": db, "pid": pid, "ours": client_for(ctx).own_roles}
    )
    return [_session(r) for r in rows]


def session_brief(s: dict[str, Any]) -> str:
    age = s.get("xact_seconds") or s.get("state_seconds") or 0
    return (
        f"pid {s['pid']} ({s.get('user') or '?'}@{s.get('database') or '?'}, "
        f"{s.get('application') or 'no app'}, {s.get('state') or '?'} {age:.0f}s"
        + (f", {s['query'][:60]!r}" if s.get("query") else "")
        + ")"
    )


def session_record(s: dict[str, Any]) -> dict[str, Any]:
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
