"""AdGuard Home reads: status and protection, blocklists and their age, the upstream test, and
query statistics."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from activities.catalog import NoParams, ToolContext
from activities.toolsets.adguard.client import (
    TOOLSET,
    client_for,
    dns_info,
    target_of,
    test_upstreams,
    upstream_lines,
)
from core.units import human_duration


@TOOLSET.read(
    "status",
    "Whether the DNS server runs, protection on or paused (and for how long), version, listen "
    "addresses.",
    needs_resource=False,
)
async def status(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    data = await client_for(ctx).get("/status")
    paused_ms = int(data.get("protection_disabled_duration") or 0)
    return {
        "running": bool(data.get("running")),
        "protection_enabled": bool(data.get("protection_enabled")),
        "protection_paused_seconds": paused_ms // 1000 if paused_ms else None,
        "version": data.get("version"),
        "dns_addresses": data.get("dns_addresses") or [],
        "dns_port": data.get("dns_port"),
        "_summary": f"AdGuard Home {data.get('version')}: "
        + ("running" if data.get("running") else "DNS server NOT running")
        + ", protection "
        + (
            "on"
            if data.get("protection_enabled")
            else ("paused for " + human_duration(paused_ms / 1000) if paused_ms else "OFF")
        ),
    }


def _age(stamp: str | None, now: float) -> float | None:
    if not stamp:
        return None
    try:
        return max(0.0, now - datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


@TOOLSET.read(
    "filtering_status",
    "Filtering on or off, every blocklist with its rule count and last update, and which "
    "enabled lists are stale (older than the target's stale_after, or empty).",
    needs_resource=False,
)
async def filtering_status(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    data = await client_for(ctx).get("/filtering/status")
    limit = target_of(ctx).stale_after.total_seconds()
    now = time.time()
    rows = []
    for f in data.get("filters") or []:
        age = _age(f.get("last_updated"), now)
        enabled = bool(f.get("enabled"))
        rows.append(
            {
                "id": f.get("id"),
                "name": f.get("name"),
                "url": f.get("url"),
                "enabled": enabled,
                "rules": int(f.get("rules_count") or 0),
                "last_updated": f.get("last_updated"),
                "age_seconds": round(age) if age is not None else None,
                "stale": enabled and (age is None or age > limit or not f.get("rules_count")),
            }
        )
    stale = [r["name"] for r in rows if r["stale"]]
    return {
        "enabled": bool(data.get("enabled")),
        "interval_hours": data.get("interval"),
        "filters": rows,
        "rules": sum(r["rules"] for r in rows if r["enabled"]),
        "stale": stale,
        "stale_count": len(stale),
        "user_rules": len(data.get("user_rules") or []),
        "_summary": f"filtering {'on' if data.get('enabled') else 'OFF'}, "
        f"{sum(1 for r in rows if r['enabled'])} lists, "
        f"{sum(r['rules'] for r in rows if r['enabled'])} rules"
        + (f"; stale: {', '.join(stale)}" if stale else ""),
    }


@TOOLSET.read(
    "upstreams",
    "The configured upstream DNS servers, each tested by AdGuard Home itself: which answer and "
    "which fail, with AdGuard's error text.",
    needs_resource=False,
    timeout=timedelta(seconds=60),
)
async def upstreams(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    api = client_for(ctx)
    info = await dns_info(api)
    configured = upstream_lines(info.get("upstream_dns") or [])
    results = await test_upstreams(api, info, configured) if configured else {}
    failing = [u for u in configured if results.get(u, "not tested") != "OK"]
    working = [u for u in configured if u not in failing]
    return {
        "configured": configured,
        "bootstrap": info.get("bootstrap_dns") or [],
        "fallback": info.get("fallback_dns") or [],
        "upstream_mode": info.get("upstream_mode"),
        "results": results,
        "failing": failing,
        "failing_count": len(failing),
        "working": working,
        "working_count": len(working),
        "all_failing": bool(configured) and not working,
        "_summary": (
            f"{len(working)} of {len(configured)} upstreams answer"
            + (
                "; failing: " + "; ".join(f"{u}: {results.get(u, 'not tested')}" for u in failing)
                if failing
                else ""
            )
        ),
    }


@TOOLSET.read(
    "query_stats",
    "Query-log statistics: queries, blocked share, average processing time, answers and "
    "average time per upstream.",
    needs_resource=False,
)
async def query_stats(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    data = await client_for(ctx).get("/stats")
    queries = int(data.get("num_dns_queries") or 0)
    blocked = int(data.get("num_blocked_filtering") or 0)

    def flat(entries: list[dict[str, Any]] | None) -> dict[str, float]:
        return {k: v for entry in entries or [] for k, v in entry.items()}

    return {
        "queries": queries,
        "blocked": blocked,
        "blocked_ratio": round(blocked / queries, 4) if queries else None,
        "avg_processing_seconds": data.get("avg_processing_time"),
        "upstream_answers": flat(data.get("top_upstreams_responses")),
        "upstream_avg_seconds": flat(data.get("top_upstreams_avg_time")),
        "time_units": data.get("time_units"),
        "_summary": f"{queries} queries, {blocked} blocked"
        + (f" ({round(blocked / queries * 100, 1)} %)" if queries else "")
        + f", average {data.get('avg_processing_time')} s",
    }
