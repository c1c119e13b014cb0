"""The AdGuard Home toolset and its client: the documented HTTP API under ``/control`` with a web
user's credentials (basic auth). AdGuard answers errors as ``text/plain`` lines, which HttpApi
quotes; a 401 (empty body) means the credentials were refused."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from activities.catalog import ToolContext, Toolset
from activities.toolsets.http import HttpApi
from core.targets import AdGuardTarget

TOOLSET = Toolset(
    service="adguard",
    description="AdGuard Home (HTTP API, basic auth): protection, blocklists, upstream tests, "
    "query statistics; enable protection, refresh filters, set upstreams.",
)


def make_client(target: AdGuardTarget) -> HttpApi:
    assert target.password is not None
    return HttpApi(
        target.url.rstrip("/") + "/control",
        product="AdGuard Home",
        auth=(target.username, target.password.get_secret_value()),
        verify=target.verify_tls,
        timeout=target.timeout,
    )


def client_for(ctx: ToolContext[Any]) -> HttpApi:
    return cast(HttpApi, ctx.clients.client("adguard", ctx.ref.target, make_client))


def target_of(ctx: ToolContext[Any]) -> AdGuardTarget:
    target = ctx.clients.target("adguard", ctx.ref.target)
    assert isinstance(target, AdGuardTarget)
    return target


async def dns_info(api: HttpApi) -> dict[str, Any]:
    return cast(dict[str, Any], await api.get("/dns_info"))


async def test_upstreams(
    api: HttpApi, info: dict[str, Any], upstreams: list[str]
) -> dict[str, str]:
    """AdGuard's own upstream test: ``OK`` or the error text per upstream."""
    body = {
        "upstream_dns": upstreams,
        "bootstrap_dns": info.get("bootstrap_dns") or [],
        "fallback_dns": info.get("fallback_dns") or [],
        "private_upstream": [],
    }
    answer = await api.post("/test_upstream_dns", json_body=body)
    return {str(k): str(v).strip() for k, v in (answer or {}).items()}


def upstream_lines(values: list[str]) -> list[str]:
    """Configured upstream lines without comments and blanks (AdGuard allows both)."""
    return [v.strip() for v in values if v.strip() and not v.strip().startswith("#")]


async def probe_async(target: AdGuardTarget) -> str:
    api = make_client(target)
    try:
        status = await api.get("/status")
    finally:
        await api.aclose()
    return (
        f"AdGuard Home {status.get('version')}, running {status.get('running')}, protection "
        f"{'on' if status.get('protection_enabled') else 'OFF'}"
    )


def probe(target: AdGuardTarget) -> str:
    return asyncio.run(probe_async(target))


TOOLSET.probe = probe
