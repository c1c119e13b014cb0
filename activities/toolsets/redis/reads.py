"""What an operator checks first on a Redis server: memory, persistence, clients, slow commands,
the biggest keys (a bounded SCAN sample), and its configuration."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.redis.client import CLIENT_NAME, TOOLSET, client_for, target_of
from core.models import ToolErrorKind
from core.units import human_bytes, human_duration

NO_LIMIT_POLICY = "noeviction"
GROWTH = 1.5
"""``suggested_maxmemory``: this much more, within the ceiling and half the host's memory."""


def _int(info: dict[str, Any], key: str) -> int:
    try:
        return int(info.get(key) or 0)
    except (TypeError, ValueError):
        return 0


def summarize_info(info: dict[str, Any], ceiling: int) -> dict[str, Any]:
    """INFO → the figures the alert rules and runbooks reason about."""
    used = _int(info, "used_memory")
    maxmemory = _int(info, "maxmemory")
    system = _int(info, "total_system_memory")
    policy = str(info.get("maxmemory_policy", ""))
    used_percent = round(100 * used / maxmemory, 1) if maxmemory else None
    clients = _int(info, "connected_clients")
    maxclients = _int(info, "maxclients")
    last_save = _int(info, "rdb_last_save_time")
    bound = min(ceiling, system // 2) if system else ceiling
    suggested = min(int(maxmemory * GROWTH), bound) if maxmemory else 0
    return {
        "server": "valkey" if "valkey_version" in info else "redis",
        "version": info.get("valkey_version") or info.get("redis_version"),
        "role": info.get("role"),
        "uptime_seconds": _int(info, "uptime_in_seconds"),
        "memory": {
            "used_memory": used,
            "used_memory_rss": _int(info, "used_memory_rss"),
            "used_memory_peak": _int(info, "used_memory_peak"),
            "maxmemory": maxmemory,
            "maxmemory_policy": policy,
            "total_system_memory": system,
            "mem_fragmentation_ratio": float(info.get("mem_fragmentation_ratio") or 0),
            "allocator": info.get("mem_allocator"),
        },
        "used_percent": used_percent,
        "at_maxmemory": bool(maxmemory and used >= maxmemory),
        "writes_refused": bool(maxmemory and used >= maxmemory and policy == NO_LIMIT_POLICY),
        "maxmemory_ceiling": ceiling,
        "suggested_maxmemory": suggested,
        "can_grow": bool(maxmemory and suggested > maxmemory),
        "evicted_keys": _int(info, "evicted_keys"),
        "expired_keys": _int(info, "expired_keys"),
        "clients": {
            "connected": clients,
            "maxclients": maxclients,
            "blocked": _int(info, "blocked_clients"),
            "rejected_connections": _int(info, "rejected_connections"),
        },
        "clients_percent": round(100 * clients / maxclients, 1) if maxclients else None,
        "persistence": {
            "rdb_last_save_time": last_save,
            "rdb_last_save_age_seconds": max(int(time.time()) - last_save, 0)
            if last_save
            else None,
            "rdb_changes_since_last_save": _int(info, "rdb_changes_since_last_save"),
            "rdb_bgsave_in_progress": bool(_int(info, "rdb_bgsave_in_progress")),
            "rdb_last_bgsave_status": info.get("rdb_last_bgsave_status"),
            "aof_enabled": bool(_int(info, "aof_enabled")),
            "aof_last_write_status": info.get("aof_last_write_status"),
            "loading": bool(_int(info, "loading")),
        },
        "replication": {
            "role": info.get("role"),
            "connected_slaves": _int(info, "connected_slaves"),
            "master_link_status": info.get("master_link_status"),
            "master_last_io_seconds_ago": info.get("master_last_io_seconds_ago"),
        },
        "keyspace": {k: v for k, v in info.items() if k.startswith("db") and isinstance(v, dict)},
    }


async def server_info(ctx: ToolContext[Any]) -> dict[str, Any]:
    info = await client_for(ctx).info("everything")
    return summarize_info(info, target_of(ctx).maxmemory_ceiling)


@TOOLSET.read(
    "info",
    "Memory against maxmemory and its policy, fragmentation, evictions, clients against "
    "maxclients, persistence (last save, status), replication, keyspace.",
    needs_resource=False,
)
async def info(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    data = await server_info(ctx)
    mem = data["memory"]
    limit = (
        f"{human_bytes(mem['used_memory'])} of maxmemory {human_bytes(mem['maxmemory'])} "
        f"({data['used_percent']}%, {mem['maxmemory_policy']})"
        if mem["maxmemory"]
        else f"{human_bytes(mem['used_memory'])} used, no maxmemory"
    )
    saved = data["persistence"]["rdb_last_save_age_seconds"]
    data["_summary"] = (
        f"{data['server']} {data['version']} {data['role']}: {limit}"
        + ("; WRITES REFUSED (noeviction at maxmemory)" if data["writes_refused"] else "")
        + f"; {data['evicted_keys']} evicted; clients {data['clients']['connected']}/"
        f"{data['clients']['maxclients']} ({data['clients']['rejected_connections']} rejected); "
        f"last save {human_duration(saved)} ago ({data['persistence']['rdb_last_bgsave_status']})"
    )
    return data


class SlowlogParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=20, ge=1, le=128)


@TOOLSET.read(
    "slowlog",
    "The slowest recent commands (SLOWLOG GET): duration, command (arguments cut), client.",
    SlowlogParams,
    needs_resource=False,
)
async def slowlog(ctx: ToolContext[SlowlogParams]) -> dict[str, Any]:
    client = client_for(ctx)
    entries = await client.slowlog_get(ctx.params.limit)
    total = await client.slowlog_len()
    rows: list[dict[str, Any]] = []
    for e in entries:
        command = e.get("command")
        words = command.split() if isinstance(command, str) else [str(command)]
        rows.append(
            {
                "id": e.get("id"),
                "at": e.get("start_time"),
                "duration_us": e.get("duration"),
                "command": " ".join(w[:40] for w in words[:6]) + (" …" if len(words) > 6 else ""),
                "client_address": e.get("client_address"),
                "client_name": e.get("client_name"),
            }
        )
    rows.sort(key=lambda r: r["duration_us"] or 0, reverse=True)
    return {
        "entries": rows,
        "length": total,
        "_summary": f"{total} slow-log entries; slowest {rows[0]['command']!r} "
        f"{(rows[0]['duration_us'] or 0) / 1000:.1f} ms"
        if rows
        else "slow log empty",
    }


class ClientsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_idle_seconds: int = Field(default=0, ge=0, description="list only clients idle this long")
    limit: int = Field(default=50, ge=1, le=1000)


def parse_client(row: dict[str, Any]) -> dict[str, Any]:
    flags = str(row.get("flags", ""))
    kind = (
        "replica"
        if "S" in flags
        else "master"
        if "M" in flags
        else "pubsub"
        if "P" in flags or int(row.get("sub", 0) or 0) or int(row.get("psub", 0) or 0)
        else "normal"
    )
    return {
        "id": int(row.get("id", 0)),
        "addr": row.get("addr"),
        "name": row.get("name") or "",
        "user": row.get("user"),
        "age": int(row.get("age", 0) or 0),
        "idle": int(row.get("idle", 0) or 0),
        "cmd": row.get("cmd"),
        "db": int(row.get("db", 0) or 0),
        "flags": flags,
        "type": kind,
        "ours": row.get("name") == CLIENT_NAME,
    }


async def client_rows(ctx: ToolContext[Any]) -> list[dict[str, Any]]:
    return [parse_client(r) for r in await client_for(ctx).client_list()]


def killable(c: dict[str, Any]) -> str | None:
    """Why a client must never be killed (None: it may be)."""
    if c["ours"]:
        return "homelab-agents' own connection"
    if c["type"] != "normal":
        return f"a {c['type']} connection"
    if "b" in c["flags"] or c["cmd"] in ("blpop", "brpop", "blmove", "bzpopmin", "xread"):
        return "blocked on a command (waiting is its job)"
    return None


@TOOLSET.read(
    "clients",
    "Connected clients by idle time and last command (CLIENT LIST), grouped by command and "
    "address; which of the idle ones client_kill may end.",
    ClientsParams,
    needs_resource=False,
)
async def clients(ctx: ToolContext[ClientsParams]) -> dict[str, Any]:
    rows = await client_rows(ctx)
    idle = sorted(
        (c for c in rows if c["idle"] >= ctx.params.min_idle_seconds),
        key=lambda c: c["idle"],
        reverse=True,
    )
    eligible = [c for c in idle if killable(c) is None]
    by_cmd = Counter(str(c["cmd"]) for c in rows)
    by_host = Counter(str(c["addr"]).rsplit(":", 1)[0] for c in rows)
    return {
        "total": len(rows),
        "clients": [{**c, "protected": killable(c)} for c in idle[: ctx.params.limit]],
        "idle_count": len(idle),
        "eligible_count": len(eligible),
        "by_command": dict(by_cmd.most_common(20)),
        "by_host": dict(by_host.most_common(20)),
        "_summary": f"{len(rows)} clients; {len(idle)} idle ≥ {ctx.params.min_idle_seconds}s "
        f"({len(eligible)} killable); top command {by_cmd.most_common(1)[0][0] if rows else '-'}",
    }


class BigkeysParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_keys: int = Field(default=5000, ge=10, le=100_000, description="SCAN at most this many")
    count: int = Field(default=200, ge=10, le=5000, description="SCAN COUNT per call")
    limit: int = Field(default=10, ge=1, le=100)
    max_seconds: float = Field(default=5.0, gt=0, le=20, description="stop scanning after this")


@TOOLSET.read(
    "bigkeys",
    "The biggest keys of a bounded SCAN sample of the URL's database (MEMORY USAGE each, by "
    "type): never KEYS *, stops at max_keys or max_seconds.",
    BigkeysParams,
    needs_resource=False,
    timeout=timedelta(seconds=60),
)
async def bigkeys(ctx: ToolContext[BigkeysParams]) -> dict[str, Any]:
    p = ctx.params
    client = client_for(ctx)
    deadline = time.monotonic() + p.max_seconds
    cursor, scanned = 0, 0
    sized: list[dict[str, Any]] = []
    by_type: Counter[str] = Counter()
    bytes_by_type: Counter[str] = Counter()
    while True:
        cursor, keys = await client.scan(cursor=cursor, count=p.count)
        if keys:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.type(key)
                pipe.memory_usage(key, samples=5)
            answers = await pipe.execute()
            for i, key in enumerate(keys):
                kind, size = str(answers[2 * i]), int(answers[2 * i + 1] or 0)
                by_type[kind] += 1
                bytes_by_type[kind] += size
                sized.append({"key": key[:200], "type": kind, "bytes": size})
            scanned += len(keys)
            sized = sorted(sized, key=lambda k: k["bytes"], reverse=True)[: p.limit]
        if cursor == 0 or scanned >= p.max_keys or time.monotonic() > deadline:
            break
    dbsize = await client.dbsize()
    complete = cursor == 0
    return {
        "scanned": scanned,
        "complete": complete,
        "dbsize": dbsize,
        "biggest": sized,
        "keys_by_type": dict(by_type),
        "bytes_by_type": dict(bytes_by_type),
        "sampled_bytes": sum(bytes_by_type.values()),
        "_summary": f"scanned {scanned} keys{'' if complete else ' (sample)'}: biggest "
        + (
            f"{sized[0]['key']!r} ({sized[0]['type']}, {human_bytes(sized[0]['bytes'])})"
            if sized
            else "-"
        ),
    }


_SECRET_PARAMS = ("pass", "masterauth", "masteruser", "aclfile", "tls-key", "tls-cert")
_DEFAULT_PARAMS = (
    "maxmemory",
    "maxmemory-policy",
    "maxclients",
    "timeout",
    "save",
    "appendonly",
    "appendfsync",
    "dir",
    "dbfilename",
    "slowlog-log-slower-than",
    "slowlog-max-len",
    "tcp-keepalive",
    "lazyfree-lazy-eviction",
    "activedefrag",
)


class ConfigParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parameters: list[str] = Field(
        default_factory=lambda: list(_DEFAULT_PARAMS),
        max_length=50,
        description="CONFIG GET these (glob patterns allowed); never secrets",
    )

    @field_validator("parameters")
    @classmethod
    def _safe(cls, names: list[str]) -> list[str]:
        for name in names:
            if not name or len(name) > 64 or not all(c.isalnum() or c in "-_*?" for c in name):
                raise ValueError(f"{name!r} is not a configuration parameter name")
        return names


@TOOLSET.read(
    "config",
    "Configuration values (CONFIG GET; passwords and keys are never read).",
    ConfigParams,
    needs_resource=False,
)
async def config(ctx: ToolContext[ConfigParams]) -> dict[str, Any]:
    client = client_for(ctx)
    values: dict[str, str] = {}
    for name in ctx.params.parameters:
        for key, value in (await client.config_get(name)).items():
            if key and not any(s in str(key) for s in _SECRET_PARAMS):
                values[str(key)] = str(value)
    if not values:
        raise ToolFailure(ToolErrorKind.NOT_FOUND, "no such configuration parameter")
    return {
        "config": dict(sorted(values.items())),
        "_summary": ", ".join(f"{k}={v}" for k, v in sorted(values.items())[:6]),
    }
