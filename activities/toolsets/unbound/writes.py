"""Unbound writes: flush one zone from the caches, and reload (re-read the config file, caches and
infrastructure state emptied), refused unless ``unbound-checkconf`` passes. Both only drop cached
state Unbound rebuilds by asking again, so nothing needs undoing (SOFT, stateless)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.unbound.client import (
    TOOLSET,
    checkconf,
    config_text,
    configured_forwards,
    control,
    key_values,
    running_forwards,
    target_of,
    zone_name,
)
from core.models import Reversibility, RiskLevel, ToolErrorKind


class FlushParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    zone: str = Field(min_length=1, max_length=253, description="every name at or under it")
    infra: bool = Field(
        default=True, description="also forget server timeouts and rtt (flush_infra all)"
    )


async def capture_flush(ctx: ToolContext[FlushParams]) -> dict[str, Any]:
    target = target_of(ctx)
    values = key_values((await control(target, "stats_noreset")).stdout)
    return {
        "zone": zone_name(ctx.params.zone),
        "resolver": target.resolver,
        "rrset_cache": int(values.get("rrset.cache.count", 0) or 0),
        "msg_cache": int(values.get("msg.cache.count", 0) or 0),
    }


@TOOLSET.write(
    "flush_zone",
    "Drop a zone's records, messages and keys from Unbound's caches (and, by default, what it "
    "remembers about unresponsive servers), so the next query asks again.",
    FlushParams,
    level=RiskLevel.SOFT,
    reversibility=Reversibility.STATELESS,
    capture=capture_flush,
    preview=lambda ctx, b: (
        f"flush zone {b['zone']} from unbound at {b['resolver']} (of {b['rrset_cache']} cached "
        "rrsets and "
        f"{b['msg_cache']} messages)"
        + ("; forget every server's timeout state (flush_infra all)" if ctx.params.infra else "")
    ),
    needs_resource=False,
)
async def flush_zone(ctx: ToolContext[FlushParams]) -> dict[str, Any]:
    target = target_of(ctx)
    zone = zone_name(ctx.params.zone)
    flushed = (await control(target, "flush_zone", zone)).stdout.strip()
    if ctx.params.infra:
        await control(target, "flush_infra", "all")
    return {
        "zone": zone,
        "result": flushed,
        "infra": ctx.params.infra,
        "_summary": f"flushed {zone}: {flushed}",
    }


async def capture_reload(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    target = target_of(ctx)
    valid, output = await checkconf(target)
    if not valid:
        raise ToolFailure(
            ToolErrorKind.CONFLICT,
            f"unbound-checkconf fails, so unbound is not reloaded: {output[-300:]}",
        )
    running = running_forwards((await control(target, "list_forwards")).stdout)
    text = await config_text(target)
    return {
        "config": str(target.config) if target.config else "(default)",
        "running_forwards": running,
        "configured_forwards": configured_forwards(text) if text is not None else running,
    }


def _reload_preview(ctx: ToolContext[NoParams], b: dict[str, Any]) -> str:
    zones = sorted(set(b["running_forwards"]) | set(b["configured_forwards"]))
    changes = [
        f"{z} {', '.join(b['running_forwards'].get(z, [])) or '-'} → "
        f"{', '.join(b['configured_forwards'].get(z, [])) or '-'}"
        for z in zones
    ]
    return (
        f"reload unbound at {target_of(ctx).resolver}: re-read {b['config']} (unbound-checkconf "
        "passes), caches and server state emptied"
        + (f"; forwarders {'; '.join(changes)}" if changes else "")
    )


@TOOLSET.write(
    "reload",
    "Reload Unbound: re-read its config file (only when unbound-checkconf passes) and start "
    "with empty caches.",
    level=RiskLevel.SOFT,
    reversibility=Reversibility.STATELESS,
    capture=capture_reload,
    preview=_reload_preview,
    needs_resource=False,
)
async def reload(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    target = target_of(ctx)
    result = (await control(target, "reload")).stdout.strip()
    running = running_forwards((await control(target, "list_forwards")).stdout)
    return {
        "result": result,
        "running_forwards": running,
        "_summary": f"reloaded unbound: {result}",
    }
