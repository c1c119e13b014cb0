"""The UniFi toolset and its client for the UniFi Network application's API.

A local admin logs in (``POST /api/login`` on a self-hosted controller, ``/api/auth/login`` on a
UniFi OS console, whose Network API then lives under ``/proxy/network``); the session cookie is
kept by the HTTP client and the console's ``X-CSRF-Token`` is sent back on writes. Answers come as
``{"meta": {"rc": "ok"|"error", "msg": ...}, "data": [...]}``; an expired session
(``api.err.LoginRequired``) logs in again once. Devices are named by the resource: name or MAC.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, cast

import httpx

from activities.catalog import ToolContext, ToolFailure, Toolset
from activities.toolsets.http import HttpApi
from core.models import ToolErrorKind
from core.targets import UnifiTarget

TOOLSET = Toolset(
    service="unifi",
    description="UniFi Network (controller API): sites, devices, clients, alarms; HARD device "
    "restart and PoE port power-cycle.",
)

MAC = re.compile(r"^([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$", re.IGNORECASE)
STATES = {
    0: "disconnected",
    1: "connected",
    2: "pending",
    4: "upgrading",
    5: "provisioning",
    6: "heartbeat_missed",
    7: "adopting",
    9: "adoption_failed",
    10: "isolated",
}
KINDS = {"uap": "AP", "usw": "switch", "ugw": "gateway", "udm": "console", "uxg": "gateway"}


def unifi_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict):
        meta = body.get("meta") or {}
        return str(meta.get("msg") or body.get("message") or body.get("code") or json.dumps(body))[
            :300
        ]
    return json.dumps(body)[:300]


class UnifiClient:
    def __init__(self, target: UnifiTarget) -> None:
        self.target = target
        self.http = HttpApi(
            target.url,
            product="UniFi Network",
            verify=target.verify_tls,
            timeout=target.timeout,
            message=unifi_message,
        )
        self.prefix = "/proxy/network" if target.unifi_os else ""
        self.csrf: str | None = None
        self._logged_in = False
        self._lock = asyncio.Lock()

    async def login(self) -> None:
        target = self.target
        assert target.password is not None
        path = "/api/auth/login" if target.unifi_os else "/api/login"
        try:
            response = await self.http.post(
                path,
                json_body={
                    "username": target.username,
                    "password": target.password.get_secret_value(),
                    "remember": False,
                },
                raw=True,
            )
        except ToolFailure as failure:
            if failure.kind in (ToolErrorKind.INVALID, ToolErrorKind.UNAUTHORIZED):
                raise ToolFailure(
                    ToolErrorKind.UNAUTHORIZED,
                    f"UniFi refused the login of {target.username!r}: {failure.message} "
                    "(check username and password of the unifi target)",
                ) from failure
            raise
        self.csrf = response.headers.get("x-csrf-token") or self.csrf
        self._logged_in = True

    async def call(self, method: str, path: str, **kwargs: Any) -> list[Any]:
        """``data`` of a Network API call, logging in first (and again once if the session ended)."""
        async with self._lock:
            if not self._logged_in:
                await self.login()
        headers = {"X-CSRF-Token": self.csrf} if self.csrf and method != "GET" else None
        try:
            body = await self.http.request(method, self.prefix + path, headers=headers, **kwargs)
        except ToolFailure as failure:
            if (
                failure.kind is not ToolErrorKind.UNAUTHORIZED
                or "LoginRequired" not in failure.message
            ):
                raise
            async with self._lock:
                await self.login()
            headers = {"X-CSRF-Token": self.csrf} if self.csrf and method != "GET" else None
            body = await self.http.request(method, self.prefix + path, headers=headers, **kwargs)
        meta = (body or {}).get("meta") or {}
        if meta.get("rc") != "ok":
            raise ToolFailure(
                ToolErrorKind.FAILED,
                f"UniFi {method} {path}: {meta.get('msg') or 'rc ' + str(meta.get('rc'))}",
            )
        return cast(list[Any], body.get("data") or [])

    def site(self, path: str) -> str:
        return f"/api/s/{self.target.unifi_site}{path}"

    async def devices(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self.call("GET", self.site("/stat/device")))

    async def aclose(self) -> None:
        await self.http.aclose()


def make_client(target: UnifiTarget) -> UnifiClient:
    return UnifiClient(target)


def client_for(ctx: ToolContext[Any]) -> UnifiClient:
    return cast(UnifiClient, ctx.clients.client("unifi", ctx.ref.target, make_client))


def find(devices: list[dict[str, Any]], ref: str, site: str) -> dict[str, Any]:
    wanted = ref.lower().replace("-", ":") if MAC.match(ref) else ref.lower()
    for device in devices:
        if wanted in (str(device.get("mac", "")).lower(), str(device.get("name", "")).lower()):
            return device
    raise ToolFailure(ToolErrorKind.NOT_FOUND, f"no UniFi device {ref!r} on site {site}")


def uplink_of(device: dict[str, Any], devices: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The switch port a device hangs off (the last known one when it is disconnected)."""
    link = device.get("uplink") or {}
    last = device.get("last_uplink") or {}
    mac = link.get("uplink_mac") or last.get("uplink_mac")
    port = link.get("uplink_remote_port") or last.get("uplink_remote_port")
    if not mac or not port:
        return None
    switch = next((d for d in devices if d.get("mac") == mac), None)
    ports: list[dict[str, Any]] = (switch or {}).get("port_table") or []
    row: dict[str, Any] = next((p for p in ports if p.get("port_idx") == port), {})
    return {
        "switch_mac": mac,
        "switch_name": (switch or {}).get("name"),
        "switch_connected": switch is not None
        and STATES.get(int(switch.get("state", 0))) == "connected",
        "port": port,
        "poe": bool(row.get("port_poe")) and row.get("poe_mode") not in (None, "off"),
        "poe_power_w": float(row.get("poe_power") or 0),
    }


def describe(device: dict[str, Any], devices: list[dict[str, Any]]) -> dict[str, Any]:
    state = STATES.get(int(device.get("state", 0)), f"state {device.get('state')}")
    return {
        "name": device.get("name") or device.get("mac"),
        "mac": device.get("mac"),
        "model": device.get("model"),
        "kind": KINDS.get(str(device.get("type")), str(device.get("type"))),
        "ip": device.get("ip"),
        "state": state,
        "connected": state == "connected",
        "adopted": bool(device.get("adopted")),
        "version": device.get("version"),
        "upgradable": bool(device.get("upgradable")),
        "upgrade_to": device.get("upgrade_to_firmware"),
        "uptime": int(device.get("uptime") or 0),
        "last_seen": device.get("last_seen"),
        "clients": int(device.get("num_sta") or 0),
        "uplink": uplink_of(device, devices),
    }


async def probe_async(target: UnifiTarget) -> str:
    client = UnifiClient(target)
    try:
        sites = await client.call("GET", "/api/self/sites")
        devices = await client.devices()
    finally:
        await client.aclose()
    names = [s.get("name") for s in sites]
    if target.unifi_site not in names:
        raise ToolFailure(
            ToolErrorKind.NOT_FOUND, f"no site {target.unifi_site!r} (sites: {names})"
        )
    return f"UniFi Network, site {target.unifi_site}: {len(devices)} devices"


def probe(target: UnifiTarget) -> str:
    return asyncio.run(probe_async(target))


TOOLSET.probe = probe
