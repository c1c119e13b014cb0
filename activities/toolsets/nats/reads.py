"""NATS reads: server figures (/varz), connections by pending bytes (/connz), JetStream (/jsz)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import NoParams, ToolContext
from activities.toolsets.nats.client import TOOLSET, api_for, place, target_of
from activities.toolsets.upstreams import backend_for
from core.units import human_bytes


@TOOLSET.read(
    "varz",
    "Server figures (/varz): version, connections against max, slow consumers (and by kind on "
    "2.10+), memory, messages and bytes in/out, JetStream on or off.",
    needs_resource=False,
)
async def varz(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    v = await api_for(ctx).get("/varz")
    connections, max_connections = (
        int(v.get("connections") or 0),
        int(v.get("max_connections") or 0),
    )
    return {
        "server_name": v.get("server_name"),
        "version": v.get("version"),
        "uptime": v.get("uptime"),
        "connections": connections,
        "max_connections": max_connections,
        "connections_percent": round(100 * connections / max_connections, 1)
        if max_connections
        else None,
        "slow_consumers": int(v.get("slow_consumers") or 0),
        "slow_consumer_stats": v.get("slow_consumer_stats"),
        "max_pending": v.get("max_pending"),
        "write_deadline_ns": v.get("write_deadline"),
        "mem": int(v.get("mem") or 0),
        "cpu": v.get("cpu"),
        "in_msgs": v.get("in_msgs"),
        "out_msgs": v.get("out_msgs"),
        "in_bytes": v.get("in_bytes"),
        "out_bytes": v.get("out_bytes"),
        "subscriptions": v.get("subscriptions"),
        "jetstream": bool((v.get("jetstream") or {}).get("config")),
        "_summary": f"nats {v.get('version')} {v.get('server_name')}: {connections} connections, "
        f"{int(v.get('slow_consumers') or 0)} slow consumer(s) since start, "
        f"{human_bytes(int(v.get('mem') or 0))} memory",
    }


class ConnzParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sort: Literal["pending", "msgs_to", "bytes_to", "subs", "idle", "start"] = "pending"
    limit: int = Field(default=20, ge=1, le=1024)
    closed: bool = Field(
        default=False, description="closed connections instead (why they closed: Slow Consumer…)"
    )


@TOOLSET.read(
    "connz",
    "Connections by pending bytes (or another sort): client name, language, pending, "
    "subscriptions; closed ones with their reason (e.g. Slow Consumer).",
    ConnzParams,
    needs_resource=False,
)
async def connz(ctx: ToolContext[ConnzParams]) -> dict[str, Any]:
    p = ctx.params
    params: dict[str, Any] = {"sort": "stop" if p.closed else p.sort, "limit": p.limit, "subs": 1}
    if p.closed:
        params["state"] = "closed"
    data = await api_for(ctx).get("/connz", params=params)
    backends = target_of(ctx).backends
    rows = [
        {
            "cid": c.get("cid"),
            "name": c.get("name") or "",
            "ip": c.get("ip"),
            "port": c.get("port"),
            "lang": c.get("lang"),
            "pending_bytes": int(c.get("pending_bytes") or 0),
            "subscriptions": c.get("subscriptions"),
            "subscriptions_list": (c.get("subscriptions_list") or [])[:10],
            "in_msgs": c.get("in_msgs"),
            "out_msgs": c.get("out_msgs"),
            "idle": c.get("idle"),
            "reason": c.get("reason"),
            "backend": backend_for(c.get("name") or "", backends) if c.get("name") else None,
        }
        for c in data.get("connections") or []
    ]
    slow = [c for c in rows if "slow" in str(c["reason"] or "").lower()]
    top = rows[0] if rows else None
    return {
        "connections": rows,
        "total": data.get("total"),
        "closed": p.closed,
        "slow_consumers_closed": slow,
        "top": top,
        "_summary": (
            f"{len(slow)} connection(s) closed as slow consumers on {place(ctx)}: "
            + ", ".join(f"{c['name'] or c['cid']} ({c['ip']})" for c in slow[:5])
            if p.closed
            else f"{data.get('total')} connections on {place(ctx)}"
            + (
                f"; most pending: {top['name'] or top['cid']} {human_bytes(top['pending_bytes'])}"
                if top
                else ""
            )
        ),
    }


class JszParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_pending: int = Field(default=0, ge=0, description="list consumers at least this far behind")


@TOOLSET.read(
    "jsz",
    "JetStream: streams (messages, bytes, subjects) and their consumers' lag (num_pending, "
    "ack pending, redelivered); the furthest-behind consumer.",
    JszParams,
    needs_resource=False,
)
async def jsz(ctx: ToolContext[JszParams]) -> dict[str, Any]:
    data = await api_for(ctx).get("/jsz", params={"streams": "true", "consumers": "true"})
    streams, consumers = [], []
    for account in data.get("account_details") or []:
        for s in account.get("stream_detail") or []:
            state = s.get("state") or {}
            streams.append(
                {
                    "account": account.get("name"),
                    "stream": s.get("name"),
                    "messages": state.get("messages"),
                    "bytes": state.get("bytes"),
                    "consumer_count": state.get("consumer_count"),
                    "subjects": (s.get("config") or {}).get("subjects"),
                }
            )
            for c in s.get("consumer_detail") or []:
                consumers.append(
                    {
                        "stream": s.get("name"),
                        "consumer": c.get("name"),
                        "num_pending": int(c.get("num_pending") or 0),
                        "num_ack_pending": int(c.get("num_ack_pending") or 0),
                        "num_redelivered": int(c.get("num_redelivered") or 0),
                        "num_waiting": int(c.get("num_waiting") or 0),
                        "last_active": (c.get("delivered") or {}).get("last_active"),
                    }
                )
    consumers.sort(key=lambda c: c["num_pending"], reverse=True)
    behind = [c for c in consumers if c["num_pending"] >= ctx.params.min_pending]
    worst = consumers[0] if consumers else None
    return {
        "enabled": not data.get("disabled", False),
        "streams": streams,
        "consumers": behind,
        "stream_count": data.get("streams"),
        "consumer_count": data.get("consumers"),
        "messages": data.get("messages"),
        "worst_consumer": worst,
        "max_pending": worst["num_pending"] if worst else 0,
        "_summary": f"JetStream on {place(ctx)}: {data.get('streams')} stream(s), "
        f"{data.get('consumers')} consumer(s)"
        + (
            f"; furthest behind {worst['stream']}/{worst['consumer']} with {worst['num_pending']} "
            f"pending, {worst['num_ack_pending']} awaiting ack"
            if worst
            else ""
        ),
    }
