"""Cloudflare reads: zones, records, drift from the desired state, the WAN address, and what
the zone's authoritative servers actually answer."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.cloudflare.client import (
    TOOLSET,
    client_for,
    describe,
    desired_for,
    record_name,
    target_of,
)
from activities.toolsets.dns_query import Answer, query
from core.models import ToolErrorKind
from core.targets import DesiredRecord


@TOOLSET.read(
    "zones",
    "Zones the token can see (of the configured ones): status and name servers.",
    needs_resource=False,
)
async def zones(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    found = await client_for(ctx).zones()
    rows = [
        {"id": z.id, "name": z.name, "status": z.status, "name_servers": z.name_servers}
        for z in found
    ]
    inactive = [z.name for z in found if z.status != "active"]
    return {
        "zones": rows,
        "count": len(rows),
        "inactive": inactive,
        "_summary": f"{len(rows)} zones"
        + (f", not active: {', '.join(inactive)}" if inactive else ""),
    }


class RecordsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str | None = Field(default=None, pattern=r"^[A-Z]{1,10}$")
    limit: int = Field(default=200, ge=1, le=5000, description="records returned (all are read)")


@TOOLSET.read(
    "records",
    "DNS records of the resource's zone (or of every zone), every page read; a record name as "
    "the resource lists only that name.",
    RecordsParams,
    needs_resource=False,
)
async def records(ctx: ToolContext[RecordsParams]) -> dict[str, Any]:
    client = client_for(ctx)
    name = ctx.ref.resource.rstrip(".").lower() or None
    zones = [await client.zone_for(name)] if name else await client.zones()
    rows: list[dict[str, Any]] = []
    for zone in zones:
        only = name if name and name != zone.name.lower() else None
        for record in await client.records(zone, only, ctx.params.type):
            rows.append(describe(record) | {"zone": zone.name})
    return {
        "records": rows[: ctx.params.limit],
        "count": len(rows),
        "truncated": len(rows) > ctx.params.limit,
        "_summary": f"{len(rows)} records in {', '.join(z.name for z in zones) or 'no zone'}",
    }


async def desired_content(ctx: ToolContext[Any], desired: DesiredRecord) -> tuple[str, str]:
    """The content a record should have, and where it came from (the config or the WAN)."""
    if desired.dynamic:
        return await client_for(ctx).public_ip(), "public_ip"
    return desired.content, "config"


async def compare(ctx: ToolContext[Any], desired: DesiredRecord, wan: str | None) -> dict[str, Any]:
    """One desired record against Cloudflare: ok, drifted or missing, with both sides."""
    client = client_for(ctx)
    zone = await client.zone_for(desired.name)
    content = wan if desired.dynamic and wan else desired.content
    found = await client.records(zone, desired.name, desired.type)
    row: dict[str, Any] = {
        "name": desired.name.lower(),
        "type": desired.type,
        "zone": zone.name,
        "desired_content": content,
        "desired_proxied": desired.proxied,
        "desired_ttl": desired.ttl,
        "source": "public_ip" if desired.dynamic else "config",
        "actual": [describe(r) for r in found],
    }
    if not found:
        row["state"] = "missing"
    elif any(
        r.get("content") == content
        and bool(r.get("proxied")) == desired.proxied
        and (desired.proxied or r.get("ttl") == desired.ttl)
        for r in found
    ):
        row["state"] = "ok"
    else:
        row["state"] = "drifted"
    row["actual_content"] = found[0].get("content") if found else None
    return row


@TOOLSET.read(
    "drift",
    "The configured records against Cloudflare (public_ip records against the WAN address): "
    "ok, drifted or missing. A record name as the resource checks only that record.",
    needs_resource=False,
)
async def drift(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    target = target_of(ctx)
    wanted = [desired_for(target, record_name(ctx))] if ctx.ref.resource else list(target.records)
    wan = await client_for(ctx).public_ip() if any(d.dynamic for d in wanted) else None
    rows = list(await asyncio.gather(*(compare(ctx, d, wan) for d in wanted)))
    bad = [r for r in rows if r["state"] != "ok"]
    data: dict[str, Any] = {
        "records": rows,
        "count": len(rows),
        "drifted_count": len(bad),
        "drifted": [f"{r['type']} {r['name']}: {r['state']}" for r in bad],
        "public_ip": wan,
        "_summary": (
            f"{len(bad)} of {len(rows)} records differ from the desired state"
            + (
                ": "
                + "; ".join(
                    f"{r['type']} {r['name']} {r['state']} ({r['actual_content']} ≠ {r['desired_content']})"
                    for r in bad
                )
                if bad
                else ""
            )
        ),
    }
    if ctx.ref.resource:
        data["record"] = rows[0]
    return data


@TOOLSET.read(
    "public_ip",
    "The WAN address (from public_ip_url) and the dynamic (public_ip) records that follow it.",
    needs_resource=False,
)
async def public_ip(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    address = await client_for(ctx).public_ip()
    dynamic = [r.name for r in target_of(ctx).records if r.dynamic]
    return {
        "public_ip": address,
        "dynamic_records": dynamic,
        "_summary": f"public IP {address}; {len(dynamic)} dynamic records",
    }


async def authoritative(ctx: ToolContext[Any], zone_servers: list[str]) -> list[str]:
    servers = target_of(ctx).nameservers or zone_servers
    if not servers:
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"no name servers to ask: set nameservers on cloudflare target {ctx.ref.target}",
        )
    return servers


@TOOLSET.read(
    "resolve",
    "Ask the zone's authoritative name servers (or the configured nameservers) for the record "
    "and compare the answer with the desired content: what the world will see.",
)
async def resolve(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    target = target_of(ctx)
    name = record_name(ctx)
    desired = desired_for(target, name)
    client = client_for(ctx)
    zone = await client.zone_for(name)
    content, source = await desired_content(ctx, desired)
    servers = await authoritative(ctx, zone.name_servers)
    results: list[Answer | ToolFailure] = []
    for server in servers:
        try:
            results.append(await query(server, name, desired.type, limit=target.timeout))
        except ToolFailure as failure:
            if failure.kind is not ToolErrorKind.UNREACHABLE:
                raise
            results.append(failure)
    answers = [r for r in results if isinstance(r, Answer)]
    if not answers:
        raise ToolFailure(
            ToolErrorKind.UNREACHABLE,
            "no authoritative server answered: " + "; ".join(str(r) for r in results),
        )
    # A proxied record answers Cloudflare's edge addresses: only that it answers can be seen.
    matches = [a.ok if desired.proxied else content in a.answers for a in answers]
    return {
        "name": name,
        "type": desired.type,
        "desired_content": content,
        "source": source,
        "servers": [a.as_dict() for a in answers],
        "unreachable": [str(r) for r in results if isinstance(r, ToolFailure)],
        "matches_desired": all(matches),
        "proxied": desired.proxied,
        "_summary": "; ".join(
            f"{a.server}: {a.rcode} {', '.join(a.answers) or '-'}" for a in answers
        )
        + f" (desired {content})",
    }
