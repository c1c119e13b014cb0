"""Caddy reads: the running config, the reverse-proxy upstreams, ``caddy validate``."""

from __future__ import annotations

from typing import Any

from activities.catalog import NoParams, ToolContext
from activities.toolsets.caddy.client import (
    TOOLSET,
    api_for,
    place,
    proxy_upstreams,
    running_config,
    target_of,
    validate,
)
from activities.toolsets.upstreams import probe_all, upstream_summary


@TOOLSET.read(
    "config",
    "The running configuration (admin API GET /config/): servers, listeners, routes, "
    "reverse-proxy upstreams, and its sha256.",
    needs_resource=False,
)
async def config(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    running, sha = await running_config(ctx)
    servers = ((running.get("apps") or {}).get("http") or {}).get("servers") or {}
    summary = {
        name: {"listen": s.get("listen", []), "routes": len(s.get("routes") or [])}
        for name, s in servers.items()
    }
    return {
        "servers": summary,
        "upstreams": proxy_upstreams(running),
        "config_sha256": sha,
        "apps": sorted((running.get("apps") or {}).keys()),
        "_summary": f"{place(ctx)} runs {len(servers)} server(s) "
        + ", ".join(f"{n} on {','.join(s['listen'])}" for n, s in summary.items())
        + f"; config sha256 {sha[:12]}",
    }


@TOOLSET.read(
    "upstreams",
    "Reverse-proxy upstreams: Caddy's own counters (GET /reverse_proxy/upstreams: requests, "
    "fails), a probe from the agents' host, and the configured Docker/PostgreSQL target behind each.",
    needs_resource=False,
)
async def upstreams(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    target = target_of(ctx)
    running, _ = await running_config(ctx)
    counters = await api_for(ctx).get("/reverse_proxy/upstreams") or []
    by_address = {c.get("address"): c for c in counters if isinstance(c, dict)}
    addresses = list(dict.fromkeys([*proxy_upstreams(running), *by_address]))
    listed = [
        {
            "address": a,
            "num_requests": (by_address.get(a) or {}).get("num_requests", 0),
            "fails": (by_address.get(a) or {}).get("fails", 0),
        }
        for a in addresses
    ]
    data = upstream_summary(await probe_all(listed, target.backends, target.probe_timeout))
    first = data["first_down"]
    data["_summary"] = (
        f"{data['down_count']} of {data['upstream_count']} upstream(s) of {place(ctx)} down: "
        + ", ".join(f"{u['address']} ({u['error']})" for u in data["down"][:4])
        + (
            f"; {first['address']} is {first['backend']['ref']}"
            if first and first["backend"]
            else ""
        )
        if data["down"]
        else f"all {data['upstream_count']} upstream(s) of {place(ctx)} answer"
    )
    return data


@TOOLSET.read(
    "config_test",
    "Validate the config file (caddy validate --config FILE --adapter A): valid or not, and why.",
    needs_resource=False,
)
async def config_test(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    result = await validate(target_of(ctx))
    result["_summary"] = f"caddy validate on {place(ctx)}: " + (
        "valid" if result["valid"] else "FAILS: " + "; ".join(result["errors"][:2])
    )
    return result
