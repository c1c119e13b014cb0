"""Replication: the read tool for senders, slots and replay, and the slot and replay writes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.postgres.backends import wait_until
from activities.toolsets.postgres.client import (
    TOOLSET,
    client_for,
    place,
    plain,
    plain_rows,
    round_secs,
)
from core.models import Reversibility, RiskLevel, ToolErrorKind
from core.units import human_bytes


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
    slots = plain_rows(
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
        senders = plain_rows(
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
            f"{human_bytes(data['max_replay_lag_bytes'])}; {len(slots)} slot(s), "
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
    rep["replay_lag_seconds"] = round_secs(rep["replay_lag_seconds"])
    rep["wal_receiver"] = {k: plain(v) for k, v in receiver.items()} if receiver else None
    rep["streaming"] = bool(receiver and receiver.get("status") == "streaming")
    data["replica"] = rep
    data["_summary"] = (
        f"replica {'PAUSED' if rep['replay_paused'] else 'replaying'}, "
        f"replay lag {human_bytes(rep['replay_lag_bytes'])} / {rep['replay_lag_seconds']}s, "
        f"receiver {rep['wal_receiver']['status'] if rep['wal_receiver'] else 'not running'}"
    )
    return data


# --- slot and replay writes ---------------------------------------------------------------------


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
        f"{place(ctx)}: inactive {b['slot_type']} slot"
        + (f" of database {b['database']}" if b["database"] else "")
        + f", restart_lsn {b['restart_lsn']}, retaining "
        f"{human_bytes(b['retained_bytes'] or 0)} of WAL; its consumer will need a fresh base "
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
        f"freeing {human_bytes(before.get('retained_bytes') or 0)} of WAL",
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

    await wait_until(settled)
    now = await capture_replay(ctx)
    return now | {
        "replay_lag_bytes_before": before["replay_lag_bytes"],
        "_summary": f"WAL replay {'paused' if now['paused'] else 'resumed'} on "
        f"{place(ctx)}; replay lag {human_bytes(now['replay_lag_bytes'])}",
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
        else f"SELECT pg_wal_replay_resume() on {place(ctx)}: replay is paused "
        f"{human_bytes(b['replay_lag_bytes'])} behind what it has received"
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
        else f"SELECT pg_wal_replay_pause() on {place(ctx)}: the replica stops applying WAL"
    ),
    compensate=lambda ctx, b: None if b["paused"] else ("postgres.resume_replay", {}),
    is_noop=lambda ctx, b: bool(b["paused"]),
    needs_resource=False,
)
async def pause_replay(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    return await _set_replay(ctx, pause=True)
