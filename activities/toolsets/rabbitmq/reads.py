"""RabbitMQ reads: queues by depth, one queue, nodes with memory/disk alarms."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import NoParams, ToolContext
from activities.toolsets.rabbitmq.client import (
    TOOLSET,
    api_for,
    get_queue,
    place,
    queue_name,
    queue_row,
    target_of,
    vhost_path,
)
from core.units import human_bytes


class QueuesParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=20, ge=1, le=500)
    min_messages: int = Field(default=0, ge=0, description="only queues at least this deep")


@TOOLSET.read(
    "queues",
    "Queues of the target's vhost by depth: ready/unacked messages, consumers, publish/deliver/"
    "ack rates, and the container configured to consume each.",
    QueuesParams,
    needs_resource=False,
)
async def queues(ctx: ToolContext[QueuesParams]) -> dict[str, Any]:
    rows = [
        queue_row(q, target_of(ctx).backends)
        for q in await api_for(ctx).get(f"/queues/{vhost_path(ctx)}") or []
    ]
    rows.sort(key=lambda q: q["messages"], reverse=True)
    deep = [q for q in rows if q["messages"] >= ctx.params.min_messages]
    orphaned = [q for q in rows if q["consumers"] == 0 and q["messages"] > 0]
    return {
        "queues": deep[: ctx.params.limit],
        "queue_count": len(rows),
        "total_messages": sum(q["messages"] for q in rows),
        "without_consumers": [q["name"] for q in orphaned],
        "deepest": rows[0] if rows else None,
        "_summary": f"{len(rows)} queues on {place(ctx)}, {sum(q['messages'] for q in rows)} "
        "messages"
        + (f"; deepest {rows[0]['name']} ({rows[0]['messages']})" if rows else "")
        + (
            f"; no consumer but messages: {', '.join(q['name'] for q in orphaned[:5])}"
            if orphaned
            else ""
        ),
    }


@TOOLSET.read(
    "queue",
    "One queue (the resource): depth, consumers, rates, state, and its consuming container.",
)
async def queue(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    name = queue_name(ctx)
    q = await get_queue(ctx, name)
    backend = q["consumer_backend"]
    q["_summary"] = (
        f"queue {name} on {place(ctx)}: {q['messages_ready']} ready, "
        f"{q['messages_unacknowledged']} unacked, {q['consumers']} consumer(s), publish "
        f"{q['publish_rate']}/s, deliver {q['deliver_rate']}/s"
        + (f"; consumed by {backend['ref']}" if backend else "")
    )
    return q


@TOOLSET.read(
    "nodes",
    "Cluster nodes: running, memory against the high watermark, disk free against its limit, "
    "file descriptors, and the resource alarms that block publishers.",
    needs_resource=False,
)
async def nodes(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    rows = []
    for n in await api_for(ctx).get("/nodes") or []:
        mem_used, mem_limit = int(n.get("mem_used") or 0), int(n.get("mem_limit") or 0)
        rows.append(
            {
                "name": n.get("name"),
                "running": bool(n.get("running")),
                "mem_used": mem_used,
                "mem_limit": mem_limit,
                "mem_percent": round(100 * mem_used / mem_limit, 1) if mem_limit else None,
                "mem_alarm": bool(n.get("mem_alarm")),
                "disk_free": int(n.get("disk_free") or 0),
                "disk_free_limit": int(n.get("disk_free_limit") or 0),
                "disk_free_alarm": bool(n.get("disk_free_alarm")),
                "fd_used": n.get("fd_used"),
                "fd_total": n.get("fd_total"),
                "partitions": n.get("partitions") or [],
                "uptime_ms": n.get("uptime"),
            }
        )
    alarms = [
        f"{n['name']}: {kind}"
        for n in rows
        for kind, on in (("memory", n["mem_alarm"]), ("disk", n["disk_free_alarm"]))
        if on
    ]
    worst = max(rows, key=lambda n: n["mem_percent"] or 0, default=None)
    return {
        "nodes": rows,
        "alarms": alarms,
        "alarm_count": len(alarms),
        "not_running": [n["name"] for n in rows if not n["running"]],
        "max_mem_percent": worst["mem_percent"] if worst else None,
        "_summary": f"{len(rows)} node(s) on {place(ctx)}"
        + (
            f"; {worst['name']} memory {human_bytes(worst['mem_used'])} of "
            f"{human_bytes(worst['mem_limit'])} ({worst['mem_percent']}%)"
            if worst
            else ""
        )
        + (f"; ALARMS: {', '.join(alarms)} (publishers blocked)" if alarms else "; no alarms"),
    }
