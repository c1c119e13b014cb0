"""A fake Tailscale control API (v2), written from Tailscale's public API documentation.

What it models, because the toolset depends on it:

* ``POST /api/v2/oauth/token`` (form ``client_id``, ``client_secret``, ``grant_type``): an access
  token with the client's scopes and ``expires_in``; wrong credentials ``401``;
* ``Authorization: Bearer`` on every other call; an unknown or revoked token ``401 {"message":
  "API token invalid"}``, a token without the scope (``devices:core:read`` to read,
  ``devices:core`` to write) ``403``; more than ``rate_limit`` calls ``429`` with ``Retry-After``;
* ``GET /api/v2/tailnet/-/devices?fields=all`` (``{"devices": [...]}``, the documented device
  attributes), ``GET /api/v2/device/{id}``, ``POST .../key`` (``keyExpiryDisabled``),
  ``POST .../authorized``, ``GET|POST .../routes``; unknown devices ``404``;
* behaviour: a device whose key expired is disconnected; once its key expiry is disabled it
  reconnects (what the documentation promises).
"""

from __future__ import annotations

import secrets
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.fakes.httpfake import FakeServer, Reply, Request

READ = "devices:core:read"
WRITE = "devices:core"


def iso(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class Device:
    node_id: str
    hostname: str
    user: str = "alice@example.com"
    tags: list[str] = field(default_factory=list)
    os: str = "linux"
    online: bool = True
    expires: datetime = field(default_factory=lambda: datetime.now(UTC) + timedelta(days=120))
    key_expiry_disabled: bool = False
    authorized: bool = True
    advertised: list[str] = field(default_factory=list)
    enabled: list[str] = field(default_factory=list)
    powered_off: bool = False  # offline for a reason no API call fixes

    def json(self, tailnet: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        expired = not self.key_expiry_disabled and self.expires <= now
        connected = self.online and not expired and not self.powered_off
        return {
            "addresses": [f"100.64.0.{zlib.crc32(self.node_id.encode()) % 250 + 1}"],
            "id": str(zlib.crc32(self.node_id.encode()) % 10**12),
            "nodeId": self.node_id,
            "user": self.user if not self.tags else "tagged-devices",
            "name": f"{self.hostname}.{tailnet}.ts.net",
            "hostname": self.hostname,
            "clientVersion": "1.76.6-t4b4c2ef9c",
            "updateAvailable": False,
            "os": self.os,
            "created": iso(now - timedelta(days=200)),
            "lastSeen": iso(now if connected else now - timedelta(hours=3)),
            "connectedToControl": connected,
            "keyExpiryDisabled": self.key_expiry_disabled,
            "expires": iso(self.expires),
            "authorized": self.authorized,
            "isExternal": False,
            "machineKey": "mkey:" + self.node_id,
            "nodeKey": "nodekey:" + self.node_id,
            "blocksIncomingConnections": False,
            "enabledRoutes": list(self.enabled),
            "advertisedRoutes": list(self.advertised),
            "tags": list(self.tags),
            "tailnetLockError": "",
            "tailnetLockKey": "",
        }


class FakeTailscale:
    def __init__(
        self, clients: dict[str, tuple[str, list[str]]], tailnet: str = "tail1234"
    ) -> None:
        self.clients = clients  # client_id -> (secret, scopes)
        self.api_keys: dict[str, list[str]] = {}
        self.tokens: dict[str, tuple[list[str], float]] = {}
        self.tailnet = tailnet
        self.devices: dict[str, Device] = {}
        self.requests: list[Request] = []
        self.rate_limit = 100
        self.retry_after = 2
        self.throttled = 0
        self.server = FakeServer(self)

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()

    def add(self, device: Device) -> Device:
        self.devices[device.node_id] = device
        return device

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    def _find(self, ref: str) -> Device | None:
        for device in self.devices.values():
            if ref in (device.node_id, device.json(self.tailnet)["id"]):
                return device
        return None

    def answer(self, request: Request) -> Reply:
        if request.path == "/api/v2/oauth/token" and request.method == "POST":
            body = request.body or {}
            client = self.clients.get(str(body.get("client_id")))
            if client is None or client[0] != body.get("client_secret"):
                return Reply(401, {"message": "invalid client credentials"})
            token = "tskey-api-" + secrets.token_hex(12)
            self.tokens[token] = (client[1], time.monotonic() + 3600)
            return Reply(
                body={
                    "access_token": token,
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "scope": " ".join(client[1]),
                }
            )
        header = request.header("authorization") or ""
        token = header.removeprefix("Bearer ").strip()
        scopes = self.api_keys.get(token) or (self.tokens.get(token) or ([], 0))[0]
        if not header.startswith("Bearer ") or not scopes:
            return Reply(401, {"message": "API token invalid"})
        if self.throttled > 0:
            self.throttled -= 1
            return Reply(
                429, {"message": "rate limit exceeded"}, {"Retry-After": str(self.retry_after)}
            )
        need = READ if request.method == "GET" else WRITE
        if need not in scopes and WRITE not in scopes:
            return Reply(
                403,
                {
                    "message": "calling actor does not have enough permissions to perform this function"
                },
            )
        parts = [p for p in request.path.split("/") if p]
        if (
            parts[:3] == ["api", "v2", "tailnet"]
            and parts[4:] == ["devices"]
            and request.method == "GET"
        ):
            if parts[3] not in ("-", self.tailnet):
                return Reply(404, {"message": "tailnet not found"})
            return Reply(body={"devices": [d.json(self.tailnet) for d in self.devices.values()]})
        if parts[:3] == ["api", "v2", "device"] and len(parts) >= 4:
            device = self._find(parts[3])
            if device is None:
                return Reply(404, {"message": "device not found"})
            rest = parts[4:]
            body = request.body if isinstance(request.body, dict) else {}
            if not rest and request.method == "GET":
                return Reply(body=device.json(self.tailnet))
            if rest == ["key"] and request.method == "POST":
                if "keyExpiryDisabled" in body:
                    device.key_expiry_disabled = bool(body["keyExpiryDisabled"])
                return Reply(body={})
            if rest == ["authorized"] and request.method == "POST":
                if not isinstance(body.get("authorized"), bool):
                    return Reply(400, {"message": "authorized must be a boolean"})
                device.authorized = body["authorized"]
                return Reply(body={})
            if rest == ["routes"]:
                if request.method == "POST":
                    device.enabled = list(body.get("routes") or [])
                return Reply(
                    body={"advertisedRoutes": device.advertised, "enabledRoutes": device.enabled}
                )
        return Reply(404, {"message": "not found"})
