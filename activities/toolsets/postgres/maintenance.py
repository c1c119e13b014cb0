"""VACUUM, ANALYZE and REINDEX, each checked against the maintenance role's rights first."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from activities.catalog import ToolContext, ToolFailure
from activities.toolsets.postgres.client import (
    TOOLSET,
    client_for,
    database_for,
    place,
    plain_rows,
    translate,
)
from activities.toolsets.postgres.lookup import Relation, TableParams, checked_name, resolve
from activities.toolsets.postgres.tables import table_stats
from core.models import Reversibility, RiskLevel, ToolErrorKind
from core.units import human_bytes

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
        f"({before['dead_ratio']:.1%}), {human_bytes(before['table_bytes'])}, "
        f"last vacuum {before['last_vacuum'] or before['last_autovacuum'] or 'never'}"
    )
    if not full and _vacuum_noop(ctx, before):
        return f"no-op: {rel.qualified} in {before['database']} has no dead tuples ({state})"
    lock = (
        "ACCESS EXCLUSIVE lock: reads and writes wait until it finishes; rewrites the table"
        if full
        else "runs alongside reads and writes"
    )
    return f"{statement} in database {before['database']} on {place(ctx, before['database'])} ({state}; {lock})"


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
        f"{b['database']} on {place(ctx, b['database'])} ({b['n_mod_since_analyze']} rows "
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
        "_summary": f"VACUUM FULL {rel.qualified}: {human_bytes(before['table_bytes'])} → "
        f"{human_bytes(now['table_bytes'])}",
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
        return checked_name(value)

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
    indexes = plain_rows(await client_for(ctx).fetch(db, _TABLE_INDEXES_SQL, {"table": table.oid}))
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
            f"{before['database']} on {place(ctx, before['database'])} "
            f"({len(before['indexes'])} index(es), {human_bytes(before['bytes'])}{invalid}; {locks})"
        )

    return preview


async def _reindex(ctx: ToolContext[ReindexParams], concurrently: bool) -> dict[str, Any]:
    db, rel, table = await _reindex_target(ctx)
    before = ctx.before or await capture_reindex(ctx)
    client = client_for(ctx)
    old = {i["index"]: i["relfilenode"] for i in before["indexes"]}
    current = plain_rows(await client.fetch(db, _TABLE_INDEXES_SQL, {"table": table.oid}))
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
    after = plain_rows(await client.fetch(db, _TABLE_INDEXES_SQL, {"table": table.oid}))
    rebuilt = [i for i in after if i["index"] in old]
    return {
        "database": db,
        "indexes": rebuilt,
        "invalid": [i["index"] for i in rebuilt if not i["valid"]],
        "bytes_before": before["bytes"],
        "bytes": sum(i["bytes"] for i in rebuilt),
        "notices": notices,
        "_summary": f"rebuilt {len(rebuilt)} index(es) of {table.qualified} in {db}: "
        f"{human_bytes(before['bytes'])} → {human_bytes(sum(i['bytes'] for i in rebuilt))}, "
        f"{sum(1 for i in rebuilt if not i['valid'])} invalid",
    }


async def _drop_ccnew_leftovers(
    ctx: ToolContext[Any], db: str, table: Relation, before: dict[str, Any]
) -> list[str]:
    """A failed REINDEX CONCURRENTLY leaves invalid ``*_ccnew`` copies: remove only those."""
    client = client_for(ctx)
    now = plain_rows(await client.fetch(db, _TABLE_INDEXES_SQL, {"table": table.oid}))
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
