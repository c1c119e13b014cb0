"""AdGuard Home writes: protection on (SOFT) or paused (HARD), each the other's compensation;
refresh the blocklists (SOFT; the old copies are not kept: irreversible); set the upstream DNS
servers (HARD, the old list is the compensation, the new one tested by AdGuard first)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.adguard.client import (
    TOOLSET,
    client_for,
    dns_info,
    target_of,
    test_upstreams,
    upstream_lines,
)
from core.models import Reversibility, RiskLevel, ToolErrorKind


async def capture_protection(ctx: ToolContext[Any]) -> dict[str, Any]:
    data = await client_for(ctx).get("/status")
    paused_ms = int(data.get("protection_disabled_duration") or 0)
    return {
        "url": target_of(ctx).url,
        "enabled": bool(data.get("protection_enabled")),
        "paused_minutes": max(1, paused_ms // 60000) if paused_ms else None,
    }


@TOOLSET.write(
    "enable_protection",
    "Turn DNS protection (filtering, blocklists) back on.",
    level=RiskLevel.SOFT,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_protection,
    preview=lambda ctx, b: (
        f"no-op: protection is already on at {b['url']}"
        if b["enabled"]
        else f"turn protection on at {b['url']} (now "
        + (f"paused for {b['paused_minutes']} more min)" if b["paused_minutes"] else "off)")
    ),
    compensate=lambda ctx, b: (
        None
        if b["enabled"]
        else (
            "adguard.disable_protection",
            {"minutes": b["paused_minutes"]} if b["paused_minutes"] else {},
        )
    ),
    is_noop=lambda ctx, b: bool(b["enabled"]),
    needs_resource=False,
)
async def enable_protection(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    api = client_for(ctx)
    if not (await api.get("/status")).get("protection_enabled"):
        await api.post("/protection", json_body={"enabled": True})
    after = await capture_protection(ctx)
    return after | {"_summary": f"protection {'on' if after['enabled'] else 'STILL OFF'}"}


class PauseParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    minutes: int | None = Field(default=None, ge=1, le=1440, description="unset: until turned on")


@TOOLSET.write(
    "disable_protection",
    "Turn DNS protection off, or pause it for some minutes (every blocked domain resolves).",
    PauseParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_protection,
    preview=lambda ctx, b: (
        f"no-op: protection is already off at {b['url']}"
        if not b["enabled"]
        else f"turn protection off at {b['url']}"
        + (f" for {ctx.params.minutes} min" if ctx.params.minutes else " until turned on again")
        + ": every blocked domain resolves"
    ),
    compensate=lambda ctx, b: ("adguard.enable_protection", {}) if b["enabled"] else None,
    is_noop=lambda ctx, b: not b["enabled"],
    needs_resource=False,
)
async def disable_protection(ctx: ToolContext[PauseParams]) -> dict[str, Any]:
    api = client_for(ctx)
    if (await api.get("/status")).get("protection_enabled"):
        body: dict[str, Any] = {"enabled": False}
        if ctx.params.minutes:
            body["duration"] = ctx.params.minutes * 60_000
        await api.post("/protection", json_body=body)
    after = await capture_protection(ctx)
    return after | {"_summary": f"protection {'on' if after['enabled'] else 'off'}"}


async def capture_filters(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    data = await client_for(ctx).get("/filtering/status")
    lists = [
        {
            "name": f.get("name"),
            "rules": f.get("rules_count"),
            "last_updated": f.get("last_updated"),
        }
        for f in data.get("filters") or []
        if f.get("enabled")
    ]
    return {"url": target_of(ctx).url, "enabled": bool(data.get("enabled")), "lists": lists}


@TOOLSET.write(
    "refresh_filters",
    "Download every enabled blocklist again now (AdGuard rate-limits it per list itself).",
    level=RiskLevel.SOFT,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=capture_filters,
    preview=lambda ctx, b: (
        f"refresh {len(b['lists'])} blocklists at {b['url']}: "
        + ", ".join(
            f"{x['name']} ({x['rules']} rules, updated {x['last_updated'] or 'never'})"
            for x in b["lists"]
        )
    ),
    needs_resource=False,
    timeout=timedelta(minutes=5),
)
async def refresh_filters(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    answer = await client_for(ctx).post("/filtering/refresh", json_body={"whitelist": False})
    after = await capture_filters(ctx)
    updated = int((answer or {}).get("updated") or 0)
    return after | {"updated": updated, "_summary": f"{updated} blocklists updated"}


class UpstreamParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    upstreams: list[str] = Field(min_length=1, max_length=32, description="upstream DNS servers")

    @field_validator("upstreams")
    @classmethod
    def _lines(cls, values: list[str]) -> list[str]:
        for value in values:
            if not value.strip() or any(c in value for c in "\n\r\t ") or len(value) > 300:
                raise ValueError(f"{value!r} is not one upstream address")
        return values


async def capture_upstreams(ctx: ToolContext[UpstreamParams]) -> dict[str, Any]:
    info = await dns_info(client_for(ctx))
    return {"url": target_of(ctx).url, "upstreams": list(info.get("upstream_dns") or [])}


def _upstream_preview(ctx: ToolContext[UpstreamParams], b: dict[str, Any]) -> str:
    old = upstream_lines(b["upstreams"])
    if old == ctx.params.upstreams:
        return f"no-op: {b['url']} already uses {', '.join(old)}"
    removed = [u for u in old if u not in ctx.params.upstreams]
    added = [u for u in ctx.params.upstreams if u not in old]
    return (
        f"set the upstream DNS servers of {b['url']}: {', '.join(old) or '-'} → "
        f"{', '.join(ctx.params.upstreams)}"
        + (f" (removed {', '.join(removed)})" if removed else "")
        + (f" (added {', '.join(added)})" if added else "")
    )


@TOOLSET.write(
    "set_upstreams",
    "Replace the upstream DNS servers (each tested by AdGuard first; refused if none answers); "
    "the old list is the compensation.",
    UpstreamParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_upstreams,
    preview=_upstream_preview,
    compensate=lambda ctx, b: (
        None
        if upstream_lines(b["upstreams"]) == ctx.params.upstreams
        else ("adguard.set_upstreams", {"upstreams": b["upstreams"]})
    ),
    is_noop=lambda ctx, b: upstream_lines(b["upstreams"]) == ctx.params.upstreams,
    needs_resource=False,
    timeout=timedelta(minutes=2),
)
async def set_upstreams(ctx: ToolContext[UpstreamParams]) -> dict[str, Any]:
    api = client_for(ctx)
    info = await dns_info(api)
    if upstream_lines(info.get("upstream_dns") or []) != ctx.params.upstreams:
        tested = await test_upstreams(api, info, ctx.params.upstreams)
        if not any(tested.get(u) == "OK" for u in ctx.params.upstreams):
            raise ToolFailure(
                ToolErrorKind.FAILED,
                "none of the new upstreams answers AdGuard's test, nothing changed: "
                + "; ".join(f"{u}: {tested.get(u)}" for u in ctx.params.upstreams),
            )
        await api.post("/dns_config", json_body={"upstream_dns": ctx.params.upstreams})
    now = upstream_lines((await dns_info(api)).get("upstream_dns") or [])
    return {"upstreams": now, "_summary": f"upstreams now {', '.join(now)}"}
