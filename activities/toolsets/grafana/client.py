"""The Grafana toolset and its client: a service-account token as a Bearer header, and the org."""

from __future__ import annotations

import asyncio
from typing import Any

from activities.catalog import ToolContext, Toolset
from activities.toolsets.http import HttpApi
from core.targets import GrafanaTarget

TOOLSET = Toolset(
    service="grafana",
    description="Grafana: health, data sources, dashboards, and incident annotations.",
)


def make_client(target: GrafanaTarget) -> HttpApi:
    headers = {"Accept": "application/json"}
    if target.token is not None:
        headers["Authorization"] = f"Bearer {target.token.get_secret_value()}"
    if target.org_id is not None:
        headers["X-Grafana-Org-Id"] = str(target.org_id)
    return HttpApi(
        target.url,
        product="Grafana",
        headers=headers,
        verify=target.verify_tls,
        timeout=target.timeout,
    )


def api_for(ctx: ToolContext[Any]) -> HttpApi:
    return ctx.clients.client("grafana", ctx.ref.target, make_client)


def target_of(ctx: ToolContext[Any]) -> GrafanaTarget:
    target = ctx.clients.target("grafana", ctx.ref.target)
    assert isinstance(target, GrafanaTarget)
    return target


async def _probe(target: GrafanaTarget) -> str:
    api = make_client(target)
    try:
        health = await api.get("/api/health")
        sources = await api.get("/api/datasources")  # proves the token, not just the server
    finally:
        await api.aclose()
    return (
        f"Grafana {health.get('version', '?')}, database {health.get('database', '?')}, "
        f"{len(sources or [])} data source(s) visible to the token"
    )


def probe(target: GrafanaTarget) -> str:
    return asyncio.run(_probe(target))


TOOLSET.probe = probe
