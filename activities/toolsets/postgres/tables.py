"""Read tools for storage state: sizes, bloat, index health, vacuum progress, wraparound."""

from __future__ import annotations

import math
from typing import Any

from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, field_validator

from activities.catalog import ToolContext, ToolFailure
from activities.toolsets.postgres.client import (
    TOOLSET,
    client_for,
    database_for,
    plain,
    plain_rows,
    round_secs,
    share,
)
from activities.toolsets.postgres.lookup import Relation, checked_name, resolve
from core.models import ToolErrorKind
from core.units import human_bytes


class SizeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=20, ge=1, le=500)


TABLE_SIZES_SQL = """
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
    dbs = plain_rows(
        await client.fetch(
            None,
            "SELECT datname AS database, pg_database_size(datname) AS bytes FROM pg_database"
            " WHERE NOT datistemplate AND datallowconn ORDER BY 2 DESC",
        )
    )
    tables = (
        plain_rows(await client.fetch(db, TABLE_SIZES_SQL, {"limit": ctx.params.limit}))
        if db
        else []
    )
    return {
        "databases": dbs,
        "total_bytes": sum(d["bytes"] for d in dbs),
        "database": db,
        "tables": tables,
        "_summary": f"{len(dbs)} databases, {human_bytes(sum(d['bytes'] for d in dbs))}"
        + (
            f"; largest table in {db}: {tables[0]['schema']}.{tables[0]['table']} "
            f"{human_bytes(tables[0]['total_bytes'])}"
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
    data["dead_ratio"] = share(dead, live + dead)
    data["estimated_bloat_bytes"] = int(data["table_bytes"] * data["dead_ratio"])
    data["autovacuum_enabled"] = "autovacuum_enabled=false" not in (data.get("reloptions") or [])
    data["seconds_since_vacuum"] = round_secs(data["seconds_since_vacuum"])
    data["seconds_since_analyze"] = round_secs(data["seconds_since_analyze"])
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
        return checked_name(value)


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
            f"~{human_bytes(worst['estimated_bloat_bytes'])} bloat"
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
        return checked_name(value)


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
    rows = plain_rows(await client.fetch(db, _INDEXES_SQL, {"table": table_oid}))
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
    seq_heavy = plain_rows(
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
        return checked_name(value)


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
        f"{'valid' if data['valid'] else 'INVALID'}, {human_bytes(data['bytes'])}"
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
    running = plain_rows(
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
    rows = plain_rows(
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
        plain_rows(
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
