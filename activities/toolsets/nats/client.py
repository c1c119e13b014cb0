"""The toolset and the monitoring API client of a NATS target."""

from __future__ import annotations

from typing import Any, cast

from activities.catalog import ToolContext, Toolset
from activities.toolsets.http import HttpApi
from core.targets import NatsTarget

TOOLSET = Toolset(
    service="nats",
    description="NATS servers: connections, slow consumers, JetStream streams and consumer lag.",
)


def make_api(target: NatsTarget) -> HttpApi:
    return HttpApi(
        target.url, product="NATS monitoring", verify=target.verify_tls, timeout=target.timeout
    )


def api_for(ctx: ToolContext[Any]) -> HttpApi:
    return cast(HttpApi, ctx.clients.client("nats", ctx.ref.target, make_api))


def target_of(ctx: ToolContext[Any]) -> NatsTarget:
    return cast(NatsTarget, ctx.clients.target("nats", ctx.ref.target))


def place(ctx: ToolContext[Any]) -> str:
    return f"nats:{ctx.ref.target}"


def probe(target: NatsTarget) -> str:
    """``doctor``: the monitoring port answers /varz."""
    import asyncio

    async def check() -> str:
        api = make_api(target)
        try:
            varz = await api.get("/varz")
        finally:
            await api.aclose()
        return f"nats {varz.get('version')} {varz.get('server_name')}, {varz.get('connections')} connections"

    return asyncio.run(check())


TOOLSET.probe = probe
