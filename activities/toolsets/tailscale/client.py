"""The Tailscale toolset and its API v2 client (api.tailscale.com/api/v2).

Credentials are an OAuth client (``client_credentials`` at ``/api/v2/oauth/token``; the access
token is cached until shortly before it expires, and fetched again once when the API refuses it)
or an API access token; both are sent as ``Authorization: Bearer``. A device is named by the
resource: its nodeId, legacy id, hostname or MagicDNS name.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any, cast

from activities.catalog import ToolContext, ToolFailure, Toolset
from activities.toolsets.http import HttpApi
from core.models import ToolErrorKind
from core.targets import TailscaleTarget

TOOLSET = Toolset(
    service="tailscale",
    description="Tailscale (API v2, OAuth client or API token): devices, key expiry, offline "
    "devices, subnet routes and exit nodes; HARD re-authorization-style writes.",
)

EXIT_ROUTES = {"0.0.0.0/0", "::/0"}


class TailscaleClient:
    def __init__(self, target: TailscaleTarget) -> None:
        self.target = target
        self.api = HttpApi(target.api_url, product="Tailscale API", timeout=target.timeout)
        self._token: tuple[str, float] | None = None
        self._lock = asyncio.Lock()

    async def _bearer(self, refresh: bool = False) -> str:
        target = self.target
        if target.oauth_client_secret is None:
            assert target.api_key is not None
            return target.api_key.get_secret_value()
        async with self._lock:
            if refresh or self._token is None or self._token[1] < time.monotonic():
                answer = await self.api.post(
                    "/api/v2/oauth/token",
                    data={
                        "client_id": target.oauth_client_id,
                        "client_secret": target.oauth_client_secret.get_secret_value(),
                        "grant_type": "client_credentials",
                    },
                )
                token = str((answer or {}).get("access_token") or "")
                if not token:
                    raise ToolFailure(ToolErrorKind.FAILED, "Tailscale issued no access token")
                lifetime = float((answer or {}).get("expires_in") or 3600)
                self._token = (token, time.monotonic() + max(lifetime - 60, lifetime / 2))
            return self._token[0]

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {await self._bearer()}"}
        try:
            return await self.api.request(method, path, headers=headers, **kwargs)
        except ToolFailure as failure:
            # An OAuth access token revoked or expired early: one fresh token, one more try.
            if failure.kind is not ToolErrorKind.UNAUTHORIZED or self.target.api_key is not None:
                raise
            if "401" not in failure.message:
                raise
            headers = {"Authorization": f"Bearer {await self._bearer(refresh=True)}"}
            return await self.api.request(method, path, headers=headers, **kwargs)

    async def devices(self) -> list[dict[str, Any]]:
        answer = await self.call(
            "GET", f"/api/v2/tailnet/{self.target.tailnet}/devices", params={"fields": "all"}
        )
        return cast(list[dict[str, Any]], (answer or {}).get("devices") or [])

    async def device(self, ref: str) -> dict[str, Any]:
        wanted = ref.lower()
        for device in await self.devices():
            names = {
                str(device.get("nodeId", "")).lower(),
                str(device.get("id", "")).lower(),
                str(device.get("hostname", "")).lower(),
                str(device.get("name", "")).lower(),
                str(device.get("name", "")).split(".")[0].lower(),
            }
            if wanted in names:
                return device
        raise ToolFailure(
            ToolErrorKind.NOT_FOUND, f"no device {ref!r} in tailnet {self.target.tailnet}"
        )

    async def aclose(self) -> None:
        await self.api.aclose()


def make_client(target: TailscaleTarget) -> TailscaleClient:
    return TailscaleClient(target)


def client_for(ctx: ToolContext[Any]) -> TailscaleClient:
    return cast(TailscaleClient, ctx.clients.client("tailscale", ctx.ref.target, make_client))


def target_of(ctx: ToolContext[Any]) -> TailscaleTarget:
    target = ctx.clients.target("tailscale", ctx.ref.target)
    assert isinstance(target, TailscaleTarget)
    return target


def _when(text: Any) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def describe(
    device: dict[str, Any], offline_after: float, now: datetime | None = None
) -> dict[str, Any]:
    """One device as the tools report it: who, where, online, key expiry, routes."""
    now = now or datetime.now(UTC)
    seen = _when(device.get("lastSeen"))
    seen_age = (now - seen).total_seconds() if seen else None
    if "connectedToControl" in device:
        online = bool(device["connectedToControl"])
    else:
        online = seen_age is not None and seen_age <= offline_after
    expires = _when(device.get("expires"))
    disabled = bool(device.get("keyExpiryDisabled"))
    days_left = (
        None if disabled or expires is None else round((expires - now).total_seconds() / 86400, 2)
    )
    advertised = list(device.get("advertisedRoutes") or [])
    enabled = list(device.get("enabledRoutes") or [])
    return {
        "id": device.get("nodeId") or device.get("id"),
        "name": device.get("name"),
        "hostname": device.get("hostname"),
        "os": device.get("os"),
        "user": device.get("user"),
        "addresses": device.get("addresses") or [],
        "tags": device.get("tags") or [],
        "tagged": bool(device.get("tags")),
        "authorized": bool(device.get("authorized")),
        "online": online,
        "last_seen": device.get("lastSeen"),
        "last_seen_seconds": round(seen_age) if seen_age is not None else None,
        "key_expiry_disabled": disabled,
        "expires": device.get("expires"),
        "key_days_left": days_left,
        "key_expired": days_left is not None and days_left <= 0,
        "advertised_routes": advertised,
        "enabled_routes": enabled,
        "unapproved_routes": [r for r in advertised if r not in enabled],
        "subnet_routes": [r for r in enabled if r not in EXIT_ROUTES and r in advertised],
        "exit_node": EXIT_ROUTES <= set(advertised) and EXIT_ROUTES <= set(enabled),
        "exit_node_offered": EXIT_ROUTES <= set(advertised),
        "update_available": bool(device.get("updateAvailable")),
        "client_version": device.get("clientVersion"),
    }


def device_ref(ctx: ToolContext[Any]) -> str:
    if not ctx.ref.resource:
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"give the device as the resource (tailscale:{ctx.ref.target}/HOSTNAME or nodeId)",
        )
    return ctx.ref.resource


async def probe_async(target: TailscaleTarget) -> str:
    client = TailscaleClient(target)
    try:
        devices = await client.devices()
    finally:
        await client.aclose()
    how = "OAuth client" if target.oauth_client_secret is not None else "API access token"
    return f"tailnet {target.tailnet}: {len(devices)} devices ({how})"


def probe(target: TailscaleTarget) -> str:
    return asyncio.run(probe_async(target))


TOOLSET.probe = probe
