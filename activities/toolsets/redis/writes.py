"""Redis writes: BGSAVE, CONFIG SET (maxmemory, maxmemory-policy only), CLIENT KILL of long-idle
clients, MEMORY PURGE. Each captures what it changes and is idempotent against that."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.redis.client import TOOLSET, client_for, place, target_of
from activities.toolsets.redis.reads import client_rows, killable, server_info
from core.models import Reversibility, RiskLevel, ToolErrorKind
from core.units import human_bytes, human_duration, parse_size

MIN_MAXMEMORY = 1024 * 1024
POLICIES = (
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
)


# --- BGSAVE ---------------------------------------------------------------------------------------


async def capture_persistence(ctx: ToolContext[Any]) -> dict[str, Any]:
    return dict((await server_info(ctx))["persistence"])


def _bgsave_preview(ctx: ToolContext[Any], b: dict[str, Any]) -> str:
    state = (
        f"last save {human_duration(b['rdb_last_save_age_seconds'])} ago "
        f"({b['rdb_last_bgsave_status']}), {b['rdb_changes_since_last_save']} changes since"
    )
    if b["rdb_bgsave_in_progress"]:
        return f"no-op: a BGSAVE is already running on {place(ctx)} ({state}); wait for it"
    return f"BGSAVE on {place(ctx)}: fork and write an RDB snapshot ({state})"


async def _wait_saved(ctx: ToolContext[Any], since: int, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        now = await capture_persistence(ctx)
        if not now["rdb_bgsave_in_progress"] and now["rdb_last_save_time"] > since:
            return now
        if not now["rdb_bgsave_in_progress"] and now["rdb_last_bgsave_status"] == "err":
            return now
        if time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.2)


@TOOLSET.write(
    "bgsave",
    "Write an RDB snapshot in the background (BGSAVE) and wait for it to finish.",
    level=RiskLevel.SOFT,
    reversibility=Reversibility.STATELESS,
    capture=capture_persistence,
    preview=_bgsave_preview,
    facts=lambda ctx, b: {"last_save": b["rdb_last_save_time"]},
    is_noop=lambda ctx, b: bool(b["rdb_bgsave_in_progress"]),
    needs_resource=False,
    timeout=timedelta(minutes=10),
)
async def bgsave(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    before = ctx.before or await capture_persistence(ctx)
    since = int(before["rdb_last_save_time"])
    current = await capture_persistence(ctx)
    if current["rdb_last_save_time"] <= since and not current["rdb_bgsave_in_progress"]:
        try:
            await client_for(ctx).bgsave()
        except Exception as exc:  # a save started meanwhile: wait for that one
            if "in progress" not in str(exc):
                raise
    after = await _wait_saved(ctx, since, within=540)
    if after["rdb_last_bgsave_status"] != "ok" or after["rdb_last_save_time"] <= since:
        raise ToolFailure(
            ToolErrorKind.FAILED,
            f"BGSAVE on {place(ctx)} did not complete: last status "
            f"{after['rdb_last_bgsave_status']}, still running: {after['rdb_bgsave_in_progress']} "
            "(see the server log: disk full, permissions, fork failure?)",
        )
    return {
        **after,
        "previous_save_time": since,
        "_summary": f"RDB snapshot written on {place(ctx)} (status {after['rdb_last_bgsave_status']})",
    }


# --- CONFIG SET --------------------------------------------------------------------------------------


class ConfigSetParams(BaseModel):
    """Only what a memory incident needs; runtime only (CONFIG REWRITE is never run)."""

    model_config = ConfigDict(extra="forbid")
    parameter: Literal["maxmemory", "maxmemory-policy"]
    value: str = Field(
        min_length=1, max_length=32, description="maxmemory: bytes or 512mb/1gb; or a policy"
    )

    @field_validator("value", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _valid(self) -> ConfigSetParams:
        if self.parameter == "maxmemory":
            try:
                size = parse_size(self.value.lower().removesuffix("b") or "0")
            except ValueError:
                raise ValueError(f"maxmemory {self.value!r} is not a size") from None
            if size < MIN_MAXMEMORY:
                raise ValueError("maxmemory must be at least 1 MiB (0, no limit, is not allowed)")
            self.value = str(size)
        elif self.value not in POLICIES:
            raise ValueError(f"maxmemory-policy must be one of {', '.join(POLICIES)}")
        return self


async def capture_config(ctx: ToolContext[ConfigSetParams]) -> dict[str, Any]:
    name = ctx.params.parameter
    found = await client_for(ctx).config_get(name)
    if name not in found:
        raise ToolFailure(ToolErrorKind.UNSUPPORTED, f"{place(ctx)} has no parameter {name}")
    info = await server_info(ctx)
    return {
        "parameter": name,
        "value": str(found[name]),
        "used_memory": info["memory"]["used_memory"],
        "ceiling": target_of(ctx).maxmemory_ceiling,
    }


def _show(parameter: str, value: str) -> str:
    if parameter == "maxmemory":
        return human_bytes(int(value)) if int(value) else "no limit"
    return value


def _config_refusal(ctx: ToolContext[ConfigSetParams], b: dict[str, Any]) -> str:
    p = ctx.params
    if p.parameter != "maxmemory":
        return ""
    new = int(p.value)
    if new > b["ceiling"]:
        return f"above this target's maxmemory_ceiling {human_bytes(b['ceiling'])}"
    return ""


def _below_use(ctx: ToolContext[ConfigSetParams], b: dict[str, Any]) -> str:
    """Lowering below what is in use is allowed (it is how a compensation restores the old
    limit) but said plainly: redis then evicts keys or refuses writes."""
    p = ctx.params
    if p.parameter == "maxmemory" and int(p.value) < b["used_memory"]:
        return f"; WARNING: below the {human_bytes(b['used_memory'])} in use: keys are evicted or writes refused"
    return ""


def _config_preview(ctx: ToolContext[ConfigSetParams], b: dict[str, Any]) -> str:
    p = ctx.params
    if b["value"] == p.value:
        return f"no-op: {p.parameter} on {place(ctx)} is already {_show(p.parameter, p.value)}"
    refusal = _config_refusal(ctx, b)
    return (
        f"CONFIG SET {p.parameter} {p.value} on {place(ctx)}: "
        f"{_show(p.parameter, b['value'])} → {_show(p.parameter, p.value)} "
        f"({human_bytes(b['used_memory'])} in use; runtime only, redis.conf unchanged)"
        + _below_use(ctx, b)
        + (f" [REFUSED: {refusal}]" if refusal else "")
    )


def _config_compensation(
    ctx: ToolContext[ConfigSetParams], b: dict[str, Any]
) -> tuple[str, dict[str, Any]] | Reversibility | None:
    if b["value"] == ctx.params.value:
        return None
    if ctx.params.parameter == "maxmemory" and int(b["value"] or 0) == 0:
        return Reversibility.IRREVERSIBLE  # "no limit" is never set back automatically
    return ("redis.config_set", {"parameter": ctx.params.parameter, "value": b["value"]})


@TOOLSET.write(
    "config_set",
    "Set maxmemory or maxmemory-policy at runtime (CONFIG SET); the old value is the "
    "compensation. maxmemory never above the target's ceiling, never 0 (no limit).",
    ConfigSetParams,
    level=RiskLevel.SOFT,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_config,
    preview=_config_preview,
    compensate=_config_compensation,
    is_noop=lambda ctx, b: b["value"] == ctx.params.value,
    needs_resource=False,
)
async def config_set(ctx: ToolContext[ConfigSetParams]) -> dict[str, Any]:
    p = ctx.params
    before = ctx.before or await capture_config(ctx)
    refusal = _config_refusal(ctx, before)
    if refusal:
        raise ToolFailure(ToolErrorKind.INVALID, f"refusing {p.parameter} {p.value}: {refusal}")
    client = client_for(ctx)
    current = str((await client.config_get(p.parameter)).get(p.parameter))
    if current != p.value:  # a retry after success finds it done
        await client.config_set(p.parameter, p.value)
    now = str((await client.config_get(p.parameter)).get(p.parameter))
    if now != p.value:
        raise ToolFailure(
            ToolErrorKind.FAILED, f"{p.parameter} on {place(ctx)} reads {now!r} after CONFIG SET"
        )
    info = await server_info(ctx)
    return {
        "parameter": p.parameter,
        "previous": before["value"],
        "value": now,
        "used_percent": info["used_percent"],
        "_summary": f"{p.parameter} {_show(p.parameter, before['value'])} → "
        f"{_show(p.parameter, now)} on {place(ctx)}",
    }


# --- CLIENT KILL -------------------------------------------------------------------------------------


class ClientKillParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_idle_seconds: int = Field(
        default=300, ge=30, description="end normal clients idle at least this long"
    )
    limit: int = Field(default=500, ge=1, le=10_000, description="at most this many")


async def capture_idle_clients(ctx: ToolContext[ClientKillParams]) -> dict[str, Any]:
    rows = await client_rows(ctx)
    idle = [c for c in rows if c["idle"] >= ctx.params.min_idle_seconds]
    victims = [c for c in idle if killable(c) is None]
    return {
        "min_idle_seconds": ctx.params.min_idle_seconds,
        "total": len(rows),
        "clients": victims[: ctx.params.limit],
        "protected": [{**c, "protected": killable(c)} for c in idle if killable(c)][:20],
    }


def _kill_preview(ctx: ToolContext[ClientKillParams], b: dict[str, Any]) -> str:
    victims = b["clients"]
    if not victims:
        return (
            f"no-op: no normal client idle ≥ {b['min_idle_seconds']}s on {place(ctx)} "
            f"({b['total']} connected, {len(b['protected'])} protected)"
        )
    listed = ", ".join(
        f"id {c['id']} {c['addr']}{' ' + c['name'] if c['name'] else ''} idle {c['idle']}s"
        for c in victims[:8]
    )
    more = f" and {len(victims) - 8} more" if len(victims) > 8 else ""
    return (
        f"CLIENT KILL ID on {len(victims)} of {b['total']} clients on {place(ctx)} idle ≥ "
        f"{b['min_idle_seconds']}s: {listed}{more} (never replicas, pub/sub, blocked or ours)"
    )


@TOOLSET.write(
    "client_kill",
    "End normal clients idle longer than a threshold (CLIENT KILL ID, exactly the previewed "
    "ones, only while still idle); never replicas, pub/sub, blocked or our own connections.",
    ClientKillParams,
    level=RiskLevel.SOFT,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=capture_idle_clients,
    preview=_kill_preview,
    is_noop=lambda ctx, b: not b["clients"],
    needs_resource=False,
)
async def client_kill(ctx: ToolContext[ClientKillParams]) -> dict[str, Any]:
    before = ctx.before or await capture_idle_clients(ctx)
    now = {c["id"]: c for c in await client_rows(ctx)}
    client = client_for(ctx)
    killed, skipped = [], []
    for c in before["clients"]:
        current = now.get(c["id"])
        if current is None:
            skipped.append({"id": c["id"], "reason": "gone"})
            continue
        if current["idle"] < before["min_idle_seconds"] or killable(current):
            skipped.append({"id": c["id"], "reason": "active again since the preview"})
            continue
        if await client.client_kill_filter(_id=str(c["id"]), skipme=True):
            killed.append(c)
        else:
            skipped.append({"id": c["id"], "reason": "gone"})
    return {
        "killed": killed,
        "killed_count": len(killed),
        "skipped": skipped,
        "_summary": f"ended {len(killed)} idle client(s) on {place(ctx)}"
        + (f", {len(skipped)} skipped" if skipped else ""),
    }


# --- MEMORY PURGE ------------------------------------------------------------------------------------


async def capture_memory(ctx: ToolContext[Any]) -> dict[str, Any]:
    mem = (await server_info(ctx))["memory"]
    return {
        "used_memory": mem["used_memory"],
        "used_memory_rss": mem["used_memory_rss"],
        "mem_fragmentation_ratio": mem["mem_fragmentation_ratio"],
        "allocator": mem["allocator"],
    }


@TOOLSET.write(
    "memory_purge",
    "Return the allocator's dirty pages to the OS (MEMORY PURGE, jemalloc only): lowers RSS "
    "and fragmentation without touching data.",
    level=RiskLevel.NONE,
    reversibility=Reversibility.STATELESS,
    capture=capture_memory,
    preview=lambda ctx, b: (
        f"MEMORY PURGE on {place(ctx)}: RSS {human_bytes(b['used_memory_rss'])} for "
        f"{human_bytes(b['used_memory'])} used (fragmentation {b['mem_fragmentation_ratio']})"
        + ("" if str(b["allocator"]).startswith("jemalloc") else " [REFUSED: not jemalloc]")
    ),
    needs_resource=False,
)
async def memory_purge(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    before = ctx.before or await capture_memory(ctx)
    if not str(before["allocator"]).startswith("jemalloc"):
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED,
            f"MEMORY PURGE only works with jemalloc; {place(ctx)} uses {before['allocator']}",
        )
    await client_for(ctx).memory_purge()
    after = await capture_memory(ctx)
    return {
        "before": before,
        **after,
        "_summary": f"RSS {human_bytes(before['used_memory_rss'])} → "
        f"{human_bytes(after['used_memory_rss'])} on {place(ctx)}",
    }
