"""The toolset and the management API client of a RabbitMQ target."""

from __future__ import annotations

import asyncio
from typing import Any, cast
from urllib.parse import quote

from activities.catalog import ToolContext, ToolFailure, Toolset
from activities.toolsets.http import HttpApi
from activities.toolsets.upstreams import backend_for
from core.models import ToolErrorKind
from core.targets import RabbitmqTarget

TOOLSET = Toolset(
    service="rabbitmq",
    description="RabbitMQ brokers: queues (depth, consumers, rates), nodes, alarms; purge.",
)


def make_api(target: RabbitmqTarget) -> HttpApi:
    assert target.password is not None  # the model requires it
    return HttpApi(
        target.url.rstrip("/") + "/api",
        product="RabbitMQ management API",
        auth=(target.username, target.password.get_secret_value()),
        verify=target.verify_tls,
        timeout=target.timeout,
    )


def api_for(ctx: ToolContext[Any]) -> HttpApi:
    return cast(HttpApi, ctx.clients.client("rabbitmq", ctx.ref.target, make_api))


def target_of(ctx: ToolContext[Any]) -> RabbitmqTarget:
    return cast(RabbitmqTarget, ctx.clients.target("rabbitmq", ctx.ref.target))


def vhost_path(ctx: ToolContext[Any]) -> str:
    return quote(target_of(ctx).vhost, safe="")


def queue_name(ctx: ToolContext[Any]) -> str:
    name = ctx.ref.resource
    if not name or len(name) > 255 or "\x00" in name:
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"give the queue as the resource (rabbitmq:{ctx.ref.target}/QUEUE)",
        )
    return name


def place(ctx: ToolContext[Any], queue: str | None = None) -> str:
    vhost = target_of(ctx).vhost
    base = f"rabbitmq:{ctx.ref.target}"
    return f"{base}/{queue} (vhost {vhost})" if queue else base


def _rate(stats: dict[str, Any] | None, key: str) -> float:
    details = (stats or {}).get(f"{key}_details") or {}
    return round(float(details.get("rate") or 0.0), 3)


def queue_row(q: dict[str, Any], backends: dict[str, str]) -> dict[str, Any]:
    stats = q.get("message_stats") or {}
    return {
        "name": q.get("name"),
        "vhost": q.get("vhost"),
        "type": q.get("type"),
        "state": q.get("state"),
        "durable": q.get("durable"),
        "messages": int(q.get("messages") or 0),
        "messages_ready": int(q.get("messages_ready") or 0),
        "messages_unacknowledged": int(q.get("messages_unacknowledged") or 0),
        "consumers": int(q.get("consumers") or 0),
        "consumer_utilisation": q.get("consumer_utilisation"),
        "publish_rate": _rate(stats, "publish"),
        "deliver_rate": _rate(stats, "deliver_get"),
        "ack_rate": _rate(stats, "ack"),
        "memory": int(q.get("memory") or 0),
        "idle_since": q.get("idle_since"),
        "consumer_backend": backend_for(str(q.get("name")), backends),
    }


async def get_queue(ctx: ToolContext[Any], name: str) -> dict[str, Any]:
    raw = await api_for(ctx).get(f"/queues/{vhost_path(ctx)}/{quote(name, safe='')}")
    return queue_row(raw, target_of(ctx).backends)


def probe(target: RabbitmqTarget) -> str:
    """``doctor``: version, node count, whether the user sees the vhost."""

    async def check() -> str:
        api = make_api(target)
        try:
            overview = await api.get("/overview")
            await api.get(f"/queues/{quote(target.vhost, safe='')}")
        finally:
            await api.aclose()
        return (
            f"RabbitMQ {overview.get('rabbitmq_version')} (Erlang {overview.get('erlang_version')}), "
            f"cluster {overview.get('cluster_name')}, as {target.username} on vhost {target.vhost}"
        )

    return asyncio.run(check())


TOOLSET.probe = probe
