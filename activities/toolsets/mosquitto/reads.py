"""Mosquitto reads: the broker's figures from ``$SYS``, and raw ``$SYS`` values by prefix."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import NoParams, ToolContext
from activities.toolsets.mosquitto.client import TOOLSET, place, read_sys, target_of

_FIGURES = {
    "clients_connected": "clients/connected",
    "clients_disconnected": "clients/disconnected",
    "clients_maximum": "clients/maximum",
    "clients_total": "clients/total",
    "clients_expired": "clients/expired",
    "messages_received": "messages/received",
    "messages_sent": "messages/sent",
    "messages_stored": "messages/stored",
    "publish_dropped": "publish/messages/dropped",
    "publish_received": "publish/messages/received",
    "publish_sent": "publish/messages/sent",
    "retained_messages": "retained messages/count",
    "subscriptions": "subscriptions/count",
    "store_bytes": "store/messages/bytes",
    "heap_current": "heap/current",
    "heap_maximum": "heap/maximum",
    "bytes_received": "bytes/received",
    "bytes_sent": "bytes/sent",
}
_LOADS = {
    "messages_received_1min": "load/messages/received/1min",
    "messages_sent_1min": "load/messages/sent/1min",
    "publish_dropped_1min": "load/publish/dropped/1min",
    "connections_1min": "load/connections/1min",
}


def _number(value: str | None) -> float | int | None:
    if value is None:
        return None
    text = value.split()[0] if value.split() else value
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return None


@TOOLSET.read(
    "broker",
    "Broker figures from $SYS: version, uptime, clients (connected, disconnected, maximum), "
    "messages received/sent/stored, dropped publishes (and per minute), subscriptions, heap.",
    needs_resource=False,
)
async def broker(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    raw = await read_sys(target_of(ctx))
    get = {k.removeprefix("$SYS/broker/"): v for k, v in raw.items()}
    data: dict[str, Any] = {
        "version": get.get("version"),
        "uptime": get.get("uptime"),
        **{name: _number(get.get(path)) for name, path in _FIGURES.items()},
        **{name: _number(get.get(path)) for name, path in _LOADS.items()},
        "topics_read": len(raw),
    }
    data["dropping"] = bool(data["publish_dropped_1min"])
    data["_summary"] = (
        f"{data['version']} up {data['uptime']}: {data['clients_connected']} clients connected "
        f"({data['clients_disconnected']} disconnected, max {data['clients_maximum']}), "
        f"{data['publish_dropped']} publishes dropped"
        + (f" ({data['publish_dropped_1min']}/min now)" if data["dropping"] else "")
        + f", {data['subscriptions']} subscriptions"
    )
    return data


class SysParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prefix: str = Field(
        default="$SYS/broker/",
        pattern=r"^\$SYS/[A-Za-z0-9 _/.-]*$",
        description="only topics under this prefix",
    )


@TOOLSET.read(
    "sys",
    "Raw $SYS values under a prefix (every topic's latest value).",
    SysParams,
    needs_resource=False,
)
async def sys(ctx: ToolContext[SysParams]) -> dict[str, Any]:
    raw = await read_sys(target_of(ctx))
    values = {k: v for k, v in sorted(raw.items()) if k.startswith(ctx.params.prefix)}
    return {"values": values, "_summary": f"{len(values)} $SYS topics on {place(ctx)}"}
