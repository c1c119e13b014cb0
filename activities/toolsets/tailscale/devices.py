"""Tailscale reads (devices, key expiry, offline devices, routes and exit nodes) and the two
re-authorization-style writes the API allows: disable a device's key expiry (so a server whose key
expired may rejoin) and authorize a device. Both HARD; the previous value is the compensation."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import NoParams, ToolContext
from activities.toolsets.tailscale.client import (
    TOOLSET,
    client_for,
    describe,
    device_ref,
    target_of,
)
from core.models import Reversibility, RiskLevel


async def _described(ctx: ToolContext[Any]) -> list[dict[str, Any]]:
    offline_after = target_of(ctx).offline_after.total_seconds()
    return [describe(d, offline_after) for d in await client_for(ctx).devices()]


async def _one(ctx: ToolContext[Any]) -> dict[str, Any]:
    device = await client_for(ctx).device(device_ref(ctx))
    return describe(device, target_of(ctx).offline_after.total_seconds())


@TOOLSET.read(
    "devices",
    "Every device of the tailnet: addresses, OS, online, key expiry, tags, routes, exit node.",
    needs_resource=False,
)
async def devices(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    rows = await _described(ctx)
    offline = [r["hostname"] for r in rows if not r["online"]]
    return {
        "devices": rows,
        "count": len(rows),
        "offline": offline,
        "_summary": f"{len(rows)} devices, {len(offline)} offline"
        + (f" ({', '.join(offline)})" if offline else ""),
    }


class ExpiryParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    within_days: float = Field(default=14, gt=0, le=365, description="expiring = fewer days left")


@TOOLSET.read(
    "key_expiry",
    "Days left on each device's node key (none when expiry is disabled); the expiring and "
    "expired ones. A device as the resource reports only that one.",
    ExpiryParams,
    needs_resource=False,
)
async def key_expiry(ctx: ToolContext[ExpiryParams]) -> dict[str, Any]:
    rows = [await _one(ctx)] if ctx.ref.resource else await _described(ctx)
    within = ctx.params.within_days
    for row in rows:
        days = row["key_days_left"]
        row["expiring"] = days is not None and days < within
    expiring = [f"{r['hostname']} ({r['key_days_left']} d)" for r in rows if r["expiring"]]
    data: dict[str, Any] = {
        "devices": [
            {
                k: r[k]
                for k in (
                    "id",
                    "hostname",
                    "tagged",
                    "key_days_left",
                    "expires",
                    "key_expiry_disabled",
                    "expiring",
                    "key_expired",
                    "online",
                )
            }
            for r in rows
        ],
        "expiring": expiring,
        "expiring_count": len(expiring),
        "expired": [r["hostname"] for r in rows if r["key_expired"]],
        "_summary": f"{len(expiring)} of {len(rows)} device keys expire within {within:g} days"
        + (f": {', '.join(expiring)}" if expiring else ""),
    }
    if ctx.ref.resource:
        data["device"] = data["devices"][0]
    return data


@TOOLSET.read(
    "offline_devices",
    "Devices not connected (or not seen for offline_after), subnet routers and exit nodes "
    "first, with the routes nobody online serves any more.",
    needs_resource=False,
)
async def offline_devices(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    rows = await _described(ctx)
    offline = [r for r in rows if not r["online"]]
    offline.sort(key=lambda r: (not (r["subnet_routes"] or r["exit_node"]), r["hostname"] or ""))
    served = {route for r in rows if r["online"] for route in r["subnet_routes"]}
    unserved = sorted({route for r in offline for route in r["subnet_routes"]} - served)
    routers = [r["hostname"] for r in offline if r["subnet_routes"] or r["exit_node"]]
    return {
        "offline": [
            {
                k: r[k]
                for k in (
                    "id",
                    "hostname",
                    "last_seen",
                    "last_seen_seconds",
                    "subnet_routes",
                    "exit_node",
                    "key_expired",
                    "tagged",
                )
            }
            for r in offline
        ],
        "offline_count": len(offline),
        "routers_offline": routers,
        "unserved_routes": unserved,
        "_summary": f"{len(offline)} of {len(rows)} devices offline"
        + (f"; routers: {', '.join(routers)}" if routers else "")
        + (f"; routes nobody serves: {', '.join(unserved)}" if unserved else ""),
    }


@TOOLSET.read(
    "routes",
    "Subnet routes and exit nodes: advertised, approved (enabled), unapproved, and whether the "
    "device serving them is online. A device as the resource reports only that one.",
    needs_resource=False,
)
async def routes(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    rows = [await _one(ctx)] if ctx.ref.resource else await _described(ctx)
    routers = [
        {
            k: r[k]
            for k in (
                "id",
                "hostname",
                "online",
                "advertised_routes",
                "enabled_routes",
                "unapproved_routes",
                "subnet_routes",
                "exit_node",
                "exit_node_offered",
            )
        }
        for r in rows
        if r["advertised_routes"] or r["enabled_routes"]
    ]
    data: dict[str, Any] = {
        "routers": routers,
        "exit_nodes": [r["hostname"] for r in routers if r["exit_node"]],
        "unapproved": {
            r["hostname"]: r["unapproved_routes"] for r in routers if r["unapproved_routes"]
        },
        "_summary": f"{len(routers)} routers, {sum(1 for r in routers if not r['online'])} offline",
    }
    if ctx.ref.resource:
        one = rows[0]
        data["device"] = {
            k: one[k]
            for k in ("id", "hostname", "online", "subnet_routes", "exit_node", "key_expired")
        }
    return data


class KeyExpiryParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    disabled: bool = Field(default=True, description="true: the key does not expire")


async def capture_device(ctx: ToolContext[Any]) -> dict[str, Any]:
    row = await _one(ctx)
    return {
        k: row[k]
        for k in (
            "id",
            "hostname",
            "name",
            "tagged",
            "tags",
            "authorized",
            "key_expiry_disabled",
            "expires",
            "key_days_left",
            "key_expired",
            "online",
            "user",
        )
    }


def _expiry_preview(ctx: ToolContext[KeyExpiryParams], b: dict[str, Any]) -> str:
    who = f"{b['hostname']} ({b['id']}, {'tags ' + ', '.join(b['tags']) if b['tagged'] else 'owned by ' + str(b['user'])})"
    if b["key_expiry_disabled"] == ctx.params.disabled:
        return f"no-op: key expiry of {who} is already {'disabled' if b['key_expiry_disabled'] else 'enabled'}"
    if ctx.params.disabled:
        state = "expired" if b["key_expired"] else f"expires in {b['key_days_left']} days"
        return f"disable key expiry of {who}: its node key ({state}, {b['expires']}) no longer expires; it may rejoin without re-authenticating"
    return f"enable key expiry of {who} again: the key expires at {b['expires']}"


@TOOLSET.write(
    "set_key_expiry",
    "Disable (or re-enable) a device's node-key expiry: Tailscale's documented way to let a "
    "server whose key expired rejoin. For servers (tagged devices); people re-authenticate.",
    KeyExpiryParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_device,
    preview=_expiry_preview,
    compensate=lambda ctx, b: (
        None
        if b["key_expiry_disabled"] == ctx.params.disabled
        else ("tailscale.set_key_expiry", {"disabled": b["key_expiry_disabled"]})
    ),
    is_noop=lambda ctx, b: b["key_expiry_disabled"] == ctx.params.disabled,
)
async def set_key_expiry(ctx: ToolContext[KeyExpiryParams]) -> dict[str, Any]:
    before = ctx.before or await capture_device(ctx)
    current = await capture_device(ctx)
    if current["key_expiry_disabled"] != ctx.params.disabled:
        await client_for(ctx).call(
            "POST",
            f"/api/v2/device/{before['id']}/key",
            json_body={"keyExpiryDisabled": ctx.params.disabled},
        )
    after = await capture_device(ctx)
    return after | {"_summary": _expiry_preview(ctx, before).removeprefix("no-op: ")}


class AuthorizeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    authorized: bool = True


@TOOLSET.write(
    "authorize",
    "Authorize a device (or revoke its authorization) where device approval is required.",
    AuthorizeParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_device,
    preview=lambda ctx, b: (
        f"no-op: {b['hostname']} ({b['id']}) is already {'authorized' if b['authorized'] else 'not authorized'}"
        if b["authorized"] == ctx.params.authorized
        else f"{'authorize' if ctx.params.authorized else 'revoke the authorization of'} {b['hostname']} ({b['id']}, user {b['user']})"
    ),
    compensate=lambda ctx, b: (
        None
        if b["authorized"] == ctx.params.authorized
        else ("tailscale.authorize", {"authorized": b["authorized"]})
    ),
    is_noop=lambda ctx, b: b["authorized"] == ctx.params.authorized,
)
async def authorize(ctx: ToolContext[AuthorizeParams]) -> dict[str, Any]:
    before = ctx.before or await capture_device(ctx)
    if (await capture_device(ctx))["authorized"] != ctx.params.authorized:
        await client_for(ctx).call(
            "POST",
            f"/api/v2/device/{before['id']}/authorized",
            json_body={"authorized": ctx.params.authorized},
        )
    after = await capture_device(ctx)
    return after | {"_summary": f"{after['hostname']} authorized: {after['authorized']}"}
