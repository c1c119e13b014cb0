"""The Cloudflare toolset, its API v4 client and the record a target's resource names.

Every answer comes in the v4 envelope (``success``, ``errors``, ``messages``, ``result``,
``result_info``); lists are paginated and read to the end. The token is a scoped API token sent
as ``Authorization: Bearer``; HttpApi types every failure (403 is UNAUTHORIZED with Cloudflare's
own ``code: message``, 429 is retried after ``Retry-After``). Zones outside ``zones`` are refused
before any call.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, cast

import httpx

from activities.catalog import ToolContext, ToolFailure, Toolset
from activities.toolsets.http import HttpApi
from core.models import ToolErrorKind
from core.targets import CloudflareTarget, DesiredRecord

TOOLSET = Toolset(
    service="cloudflare",
    description="Cloudflare DNS (API v4, scoped token): zones, records, drift from the desired "
    "state, dynamic DNS.",
)

PER_PAGE = 100
AUTO_TTL = 1


def cloudflare_message(response: httpx.Response) -> str:
    """``code N: message`` for each entry of the envelope's ``errors`` (and its error_chain)."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return response.text.strip()[:300] or response.reason_phrase
    errors = body.get("errors") if isinstance(body, dict) else None
    if not errors:
        return json.dumps(body)[:300]
    parts = []
    for error in errors:
        chain = "; ".join(
            f"code {c.get('code')}: {c.get('message')}" for c in error.get("error_chain") or []
        )
        parts.append(
            f"code {error.get('code')}: {error.get('message')}" + (f" ({chain})" if chain else "")
        )
    return "; ".join(parts)[:500]


@dataclass(frozen=True)
class Zone:
    id: str
    name: str
    status: str
    name_servers: list[str]


class CloudflareClient:
    """One target: the v4 API with its token, and a separate token-less client for the WAN
    address (the token must never reach a third party)."""

    def __init__(self, target: CloudflareTarget) -> None:
        assert target.token is not None
        self.target = target
        self.api = HttpApi(
            target.api_url,
            product="Cloudflare API",
            headers={"Authorization": f"Bearer {target.token.get_secret_value()}"},
            timeout=target.timeout,
            message=cloudflare_message,
        )
        self.public = HttpApi(
            target.public_ip_url, product="public IP service", timeout=target.timeout
        )

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        body = await self.api.request(method, path, **kwargs)
        if not isinstance(body, dict) or "success" not in body:
            raise ToolFailure(ToolErrorKind.FAILED, f"Cloudflare {method} {path}: not a v4 answer")
        if not body["success"]:
            raise ToolFailure(
                ToolErrorKind.FAILED,
                f"Cloudflare {method} {path}: "
                + "; ".join(f"code {e.get('code')}: {e.get('message')}" for e in body["errors"]),
            )
        return body.get("result")

    async def paged(self, path: str, params: dict[str, Any], per_page: int = PER_PAGE) -> list[Any]:
        """Every page of a list (``result_info.total_pages``), in order."""
        items: list[Any] = []
        page = 1
        while True:
            body = await self.api.get(path, params={**params, "page": page, "per_page": per_page})
            if not isinstance(body, dict) or not body.get("success"):
                raise ToolFailure(ToolErrorKind.FAILED, f"Cloudflare GET {path}: not a v4 answer")
            items.extend(body.get("result") or [])
            info = body.get("result_info") or {}
            if page >= int(info.get("total_pages") or 1):
                return items
            page += 1

    async def zones(self) -> list[Zone]:
        found = await self.paged("/zones", {}, per_page=50)
        zones = [
            Zone(z["id"], z["name"], z.get("status", ""), list(z.get("name_servers") or []))
            for z in found
        ]
        if self.target.zones:
            zones = [z for z in zones if z.name in self.target.zones]
        return sorted(zones, key=lambda z: z.name)

    async def zone_for(self, name: str) -> Zone:
        """The configured zone a record name belongs to (longest suffix match)."""
        fqdn = name.rstrip(".").lower()
        candidates = [
            z
            for z in await self.zones()
            if fqdn == z.name.lower() or fqdn.endswith("." + z.name.lower())
        ]
        if not candidates:
            allowed = ", ".join(self.target.zones) or "the zones the token can read"
            raise ToolFailure(
                ToolErrorKind.NOT_FOUND,
                f"{name} is in none of cloudflare target {self.target.name}'s zones ({allowed})",
            )
        return max(candidates, key=lambda z: len(z.name))

    async def records(
        self, zone: Zone, name: str | None = None, rtype: str | None = None
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {}
        if name:
            params["name"] = name.rstrip(".").lower()
        if rtype:
            params["type"] = rtype
        return cast(list[dict[str, Any]], await self.paged(f"/zones/{zone.id}/dns_records", params))

    async def public_ip(self) -> str:
        text = await self.public.get("")
        address = str(text).strip()
        if not address or len(address) > 45 or " " in address:
            raise ToolFailure(
                ToolErrorKind.FAILED,
                f"{self.target.public_ip_url} did not answer an address: {address[:60]!r}",
            )
        return address

    async def aclose(self) -> None:
        await asyncio.gather(self.api.aclose(), self.public.aclose())


def make_client(target: CloudflareTarget) -> CloudflareClient:
    return CloudflareClient(target)


def client_for(ctx: ToolContext[Any]) -> CloudflareClient:
    return cast(CloudflareClient, ctx.clients.client("cloudflare", ctx.ref.target, make_client))


def target_of(ctx: ToolContext[Any]) -> CloudflareTarget:
    target = ctx.clients.target("cloudflare", ctx.ref.target)
    assert isinstance(target, CloudflareTarget)
    return target


def record_name(ctx: ToolContext[Any]) -> str:
    name = ctx.ref.resource.rstrip(".").lower()
    if not name:
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"give the record name as the resource (cloudflare:{ctx.ref.target}/home.example.com)",
        )
    return name


def desired_for(target: CloudflareTarget, name: str, rtype: str | None = None) -> DesiredRecord:
    for record in target.records:
        if record.name.lower() == name and (rtype is None or record.type == rtype):
            return record
    raise ToolFailure(
        ToolErrorKind.NOT_FOUND,
        f"{name} is not among cloudflare target {target.name}'s records (the desired state)",
    )


def describe(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": record.get("id"),
        "name": record.get("name"),
        "type": record.get("type"),
        "content": record.get("content"),
        "proxied": bool(record.get("proxied")),
        "ttl": record.get("ttl"),
        "comment": record.get("comment"),
        "modified_on": record.get("modified_on"),
    }


def ttl_text(ttl: Any) -> str:
    return "auto" if ttl in (None, AUTO_TTL) else f"{ttl}s"


async def probe_async(target: CloudflareTarget) -> str:
    client = CloudflareClient(target)
    try:
        verify = await client.call("GET", "/user/tokens/verify")
        zones = await client.zones()
    finally:
        await client.aclose()
    status = (verify or {}).get("status", "?")
    missing = sorted(set(target.zones) - {z.name for z in zones})
    text = f"token {status}; zones: {', '.join(z.name for z in zones) or 'none'}"
    if missing:
        raise ToolFailure(
            ToolErrorKind.NOT_FOUND, text + f"; the token cannot see {', '.join(missing)}"
        )
    return text


def probe(target: CloudflareTarget) -> str:
    return asyncio.run(probe_async(target))


TOOLSET.probe = probe
