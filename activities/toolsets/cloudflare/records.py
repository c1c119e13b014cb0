"""Cloudflare record writes: update, create and delete one record, each the others' compensation.

A record is named by the resource (``cloudflare:cf/home.example.com``) and the ``type`` param.
Every write is HARD by default (a wrong record takes a service off the internet), previews the
exact change, captures the record as it was, and is idempotent against it: a retry that finds the
record already as requested changes nothing.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import ToolContext, ToolFailure
from activities.toolsets.cloudflare.client import (
    AUTO_TTL,
    TOOLSET,
    client_for,
    describe,
    record_name,
    ttl_text,
)
from core.models import Reversibility, RiskLevel, ToolErrorKind

TYPES = r"^(A|AAAA|CNAME|TXT|MX|NS|SRV|CAA)$"


class RecordParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(default="A", pattern=TYPES)
    content: str = Field(min_length=1, max_length=2048, description="the new value")
    proxied: bool | None = Field(default=None, description="unset: keep (create: false)")
    ttl: int | None = Field(default=None, ge=1, le=86400, description="unset: keep (1 = auto)")


class DeleteParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(default="A", pattern=TYPES)
    content: str | None = Field(default=None, description="only the record with this value")


async def _matching(ctx: ToolContext[Any], rtype: str) -> tuple[Any, list[dict[str, Any]]]:
    client = client_for(ctx)
    zone = await client.zone_for(record_name(ctx))
    return zone, await client.records(zone, record_name(ctx), rtype)


async def capture_update(ctx: ToolContext[RecordParams]) -> dict[str, Any]:
    zone, found = await _matching(ctx, ctx.params.type)
    if not found:
        raise ToolFailure(
            ToolErrorKind.NOT_FOUND,
            f"no {ctx.params.type} record {record_name(ctx)} in zone {zone.name}: create it",
        )
    if len(found) > 1:
        raise ToolFailure(
            ToolErrorKind.CONFLICT,
            f"{len(found)} {ctx.params.type} records named {record_name(ctx)}: "
            "update them by hand (which one is meant is not clear)",
        )
    return describe(found[0]) | {"zone": zone.name, "zone_id": zone.id}


def planned(params: RecordParams, before: dict[str, Any]) -> dict[str, Any]:
    return {
        "content": params.content,
        "proxied": before["proxied"] if params.proxied is None else params.proxied,
        "ttl": before["ttl"] if params.ttl is None else params.ttl,
    }


def _changes(params: RecordParams, before: dict[str, Any]) -> list[str]:
    after = planned(params, before)
    parts = []
    if after["content"] != before["content"]:
        parts.append(f"content {before['content']} → {after['content']}")
    if after["proxied"] != before["proxied"]:
        parts.append(f"proxied {before['proxied']} → {after['proxied']}")
    if after["ttl"] != before["ttl"]:
        parts.append(f"ttl {ttl_text(before['ttl'])} → {ttl_text(after['ttl'])}")
    return parts


def _update_preview(ctx: ToolContext[RecordParams], before: dict[str, Any]) -> str:
    parts = _changes(ctx.params, before)
    where = f"{before['type']} {before['name']} in zone {before['zone']} (record {before['id']})"
    if not parts:
        return f"no-op: {where} already has content {before['content']}"
    return f"update {where}: " + ", ".join(parts)


@TOOLSET.write(
    "update_record",
    "Change one record's content (and proxied/ttl); the record as it was is the compensation.",
    RecordParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_update,
    preview=_update_preview,
    compensate=lambda ctx, b: (
        None
        if not _changes(ctx.params, b)
        else (
            "cloudflare.update_record",
            {"type": b["type"], "content": b["content"], "proxied": b["proxied"], "ttl": b["ttl"]},
        )
    ),
    is_noop=lambda ctx, b: not _changes(ctx.params, b),
)
async def update_record(ctx: ToolContext[RecordParams]) -> dict[str, Any]:
    before = ctx.before or await capture_update(ctx)
    client = client_for(ctx)
    after = planned(ctx.params, before)
    zone, found = await _matching(ctx, ctx.params.type)
    current = next((r for r in found if r.get("id") == before["id"]), None)
    if current is None:
        raise ToolFailure(
            ToolErrorKind.CONFLICT,
            f"record {before['id']} ({before['type']} {before['name']}) is gone since the "
            "preview: nothing changed",
        )
    body = {k: v for k, v in after.items() if current.get(k) != v}
    if body:  # idempotent: a retry after success finds nothing to change
        current = await client.call(
            "PATCH", f"/zones/{zone.id}/dns_records/{before['id']}", json_body=body
        )
    result = describe(current) | {"zone": zone.name}
    result["_summary"] = _update_preview(ctx, before).removeprefix("no-op: ")
    return result


async def capture_create(ctx: ToolContext[RecordParams]) -> dict[str, Any]:
    zone, found = await _matching(ctx, ctx.params.type)
    same = [r for r in found if r.get("content") == ctx.params.content]
    return {
        "zone": zone.name,
        "zone_id": zone.id,
        "name": record_name(ctx),
        "type": ctx.params.type,
        "existing": [describe(r) for r in found],
        "exists": bool(same),
    }


@TOOLSET.write(
    "create_record",
    "Create one record; deleting it again is the compensation.",
    RecordParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_create,
    preview=lambda ctx, b: (
        f"no-op: {b['type']} {b['name']} → {ctx.params.content} already exists in zone {b['zone']}"
        if b["exists"]
        else f"create {ctx.params.type} {b['name']} → {ctx.params.content} in zone {b['zone']} "
        f"(proxied {bool(ctx.params.proxied)}, ttl {ttl_text(ctx.params.ttl or AUTO_TTL)})"
        + (
            f"; {len(b['existing'])} other {ctx.params.type} record(s) of that name stay"
            if b["existing"]
            else ""
        )
    ),
    compensate=lambda ctx, b: (
        None
        if b["exists"]
        else ("cloudflare.delete_record", {"type": ctx.params.type, "content": ctx.params.content})
    ),
    is_noop=lambda ctx, b: bool(b["exists"]),
)
async def create_record(ctx: ToolContext[RecordParams]) -> dict[str, Any]:
    zone, found = await _matching(ctx, ctx.params.type)
    same = next((r for r in found if r.get("content") == ctx.params.content), None)
    if same is None:  # idempotent: a retry after success finds the record it made
        same = await client_for(ctx).call(
            "POST",
            f"/zones/{zone.id}/dns_records",
            json_body={
                "type": ctx.params.type,
                "name": record_name(ctx),
                "content": ctx.params.content,
                "proxied": bool(ctx.params.proxied),
                "ttl": ctx.params.ttl or AUTO_TTL,
            },
        )
    result = describe(same) | {"zone": zone.name}
    result["_summary"] = f"created {ctx.params.type} {record_name(ctx)} → {ctx.params.content}"
    return result


async def capture_delete(ctx: ToolContext[DeleteParams]) -> dict[str, Any]:
    zone, found = await _matching(ctx, ctx.params.type)
    chosen = [r for r in found if ctx.params.content in (None, r.get("content"))]
    if len(chosen) > 1:
        raise ToolFailure(
            ToolErrorKind.CONFLICT,
            f"{len(chosen)} {ctx.params.type} records named {record_name(ctx)}: give content",
        )
    record = describe(chosen[0]) if chosen else None
    return {"zone": zone.name, "zone_id": zone.id, "name": record_name(ctx), "record": record}


@TOOLSET.write(
    "delete_record",
    "Delete one record; re-creating it as it was is the compensation.",
    DeleteParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_delete,
    preview=lambda ctx, b: (
        f"no-op: no {ctx.params.type} record {b['name']} in zone {b['zone']}"
        if b["record"] is None
        else f"delete {b['record']['type']} {b['name']} → {b['record']['content']} in zone "
        f"{b['zone']} (record {b['record']['id']})"
    ),
    compensate=lambda ctx, b: (
        None
        if b["record"] is None
        else (
            "cloudflare.create_record",
            {
                "type": b["record"]["type"],
                "content": b["record"]["content"],
                "proxied": b["record"]["proxied"],
                "ttl": b["record"]["ttl"],
            },
        )
    ),
    is_noop=lambda ctx, b: b["record"] is None,
)
async def delete_record(ctx: ToolContext[DeleteParams]) -> dict[str, Any]:
    before = ctx.before or await capture_delete(ctx)
    if before["record"] is None:
        return {"deleted": None, "_summary": f"nothing to delete at {record_name(ctx)}"}
    zone, found = await _matching(ctx, ctx.params.type)
    if any(r.get("id") == before["record"]["id"] for r in found):  # a retry finds it gone
        await client_for(ctx).call(
            "DELETE", f"/zones/{zone.id}/dns_records/{before['record']['id']}"
        )
    return {
        "deleted": before["record"],
        "_summary": f"deleted {before['record']['type']} {record_name(ctx)} → "
        f"{before['record']['content']}",
    }
