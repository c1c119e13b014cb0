"""UniFi reads (sites, devices, clients, alarms) and the two HARD writes: restart a device, and
power-cycle a PoE port (what brings back an access point that hangs without answering its
controller). Neither changes configuration, so nothing needs undoing; both name the device and
port exactly in their preview and act once per change (a retry finds the device rebooted)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.unifi.client import TOOLSET, client_for, describe, find
from core.models import Reversibility, RiskLevel, ToolErrorKind
from core.units import human_duration


@TOOLSET.read("sites", "Sites of the controller the account can see.", needs_resource=False)
async def sites(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    rows = await client_for(ctx).call("GET", "/api/self/sites")
    listed = [
        {"name": s.get("name"), "description": s.get("desc"), "role": s.get("role")} for s in rows
    ]
    return {
        "sites": listed,
        "_summary": f"{len(listed)} sites: " + ", ".join(str(s["name"]) for s in listed),
    }


@TOOLSET.read(
    "devices",
    "Devices of the site: kind, model, state, uptime, firmware (and upgrade), clients, uplink "
    "switch port. A device (name or MAC) as the resource reports that one as `device`.",
    needs_resource=False,
)
async def devices(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    client = client_for(ctx)
    found = await client.devices()
    rows = [describe(d, found) for d in found]
    down = [r["name"] for r in rows if not r["connected"]]
    data: dict[str, Any] = {
        "devices": rows,
        "count": len(rows),
        "not_connected": down,
        "upgradable": [r["name"] for r in rows if r["upgradable"]],
        "_summary": f"{len(rows)} devices, {len(down)} not connected"
        + (f" ({', '.join(str(d) for d in down)})" if down else ""),
    }
    if ctx.ref.resource:
        one = describe(find(found, ctx.ref.resource, client.target.unifi_site), found)
        data["device"] = one
        data["_summary"] = (
            f"{one['kind']} {one['name']} ({one['model']}) {one['state']}, up "
            f"{human_duration(one['uptime'])}, {one['clients']} clients"
        )
    return data


@TOOLSET.read(
    "clients",
    "Connected clients: wired and wireless counts, per access point; a device as the resource "
    "lists its clients.",
    needs_resource=False,
)
async def clients(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    client = client_for(ctx)
    stations = await client.call("GET", client.site("/stat/sta"))
    if ctx.ref.resource:
        mac = find(await client.devices(), ctx.ref.resource, client.target.unifi_site)["mac"]
        stations = [s for s in stations if mac in (s.get("ap_mac"), s.get("sw_mac"))]
    per_ap: dict[str, int] = {}
    for station in stations:
        if station.get("ap_mac"):
            per_ap[station["ap_mac"]] = per_ap.get(station["ap_mac"], 0) + 1
    wired = sum(1 for s in stations if s.get("is_wired"))
    return {
        "count": len(stations),
        "wired": wired,
        "wireless": len(stations) - wired,
        "per_ap": per_ap,
        "clients": [
            {
                "name": s.get("name") or s.get("hostname") or s.get("mac"),
                "mac": s.get("mac"),
                "ip": s.get("ip"),
                "wired": bool(s.get("is_wired")),
                "ap_mac": s.get("ap_mac"),
                "signal": s.get("signal"),
            }
            for s in stations[:100]
        ],
        "_summary": f"{len(stations)} clients ({wired} wired, {len(stations) - wired} wireless)",
    }


@TOOLSET.read(
    "alarms",
    "Unarchived alarms of the site, newest first (device lost contact, ...).",
    needs_resource=False,
)
async def alarms(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    client = client_for(ctx)
    rows = await client.call("GET", client.site("/list/alarm"), params={"archived": "false"})
    rows.sort(key=lambda a: a.get("time") or 0, reverse=True)
    listed = [
        {
            "key": a.get("key"),
            "message": a.get("msg"),
            "time": a.get("datetime"),
            "device": a.get("ap_name") or a.get("sw_name") or a.get("gw_name"),
            "mac": a.get("ap") or a.get("sw") or a.get("gw"),
        }
        for a in rows[:50]
    ]
    return {
        "alarms": listed,
        "count": len(rows),
        "_summary": f"{len(rows)} open alarms"
        + (f"; newest: {listed[0]['message']}" if listed else ""),
    }


async def capture_device(ctx: ToolContext[Any]) -> dict[str, Any]:
    client = client_for(ctx)
    found = await client.devices()
    one = describe(find(found, ctx.ref.resource, client.target.unifi_site), found)
    return one | {"site": client.target.unifi_site, "captured_at": time.time()}


def _restart_preview(ctx: ToolContext[Any], b: dict[str, Any]) -> str:
    return (
        f"restart UniFi {b['kind']} '{b['name']}' ({b['model']}, {b['mac']}) on site {b['site']}: "
        f"up {human_duration(b['uptime'])}, {b['clients']} clients lose their connection for the "
        "reboot (about 2 minutes)"
    )


async def _capture_restart(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    before = await capture_device(ctx)
    if not before["connected"] and before["state"] != "isolated":
        raise ToolFailure(
            ToolErrorKind.CONFLICT,
            f"{before['name']} is {before['state']}: the controller cannot reach it to restart it "
            "(power-cycle its PoE port instead)",
        )
    return before


def _rebooted(before: dict[str, Any], now: dict[str, Any]) -> bool:
    """Booted since the capture: its uptime is shorter than the time since then."""
    return now["connected"] and now["uptime"] < time.time() - before["captured_at"] + 1


@TOOLSET.write(
    "restart_device",
    "Restart one UniFi device (AP, switch, gateway) through the controller.",
    level=RiskLevel.HARD,
    reversibility=Reversibility.STATELESS,
    capture=_capture_restart,
    preview=_restart_preview,
)
async def restart_device(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    before = ctx.before or await _capture_restart(ctx)
    client = client_for(ctx)
    now = await capture_device(ctx)
    if _rebooted(before, now):
        return now | {"_summary": f"{now['name']} already restarted by this change"}
    await client.call(
        "POST",
        client.site("/cmd/devmgr"),
        json_body={"cmd": "restart", "mac": before["mac"], "reboot_type": "soft"},
    )
    return now | {"restart_requested": True, "_summary": f"restart of {before['name']} requested"}


class PortParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port_idx: int = Field(ge=1, le=64, description="the switch port (1-based, as UniFi numbers it)")


async def _capture_port(ctx: ToolContext[PortParams]) -> dict[str, Any]:
    client = client_for(ctx)
    found = await client.devices()
    raw = find(found, ctx.ref.resource, client.target.unifi_site)
    switch = describe(raw, found)
    if switch["kind"] not in ("switch", "console", "gateway"):
        raise ToolFailure(
            ToolErrorKind.INVALID, f"{switch['name']} is a {switch['kind']}, not a switch"
        )
    if not switch["connected"]:
        raise ToolFailure(
            ToolErrorKind.CONFLICT,
            f"switch {switch['name']} is {switch['state']}: it cannot power-cycle a port",
        )
    port = next(
        (p for p in raw.get("port_table") or [] if p.get("port_idx") == ctx.params.port_idx), None
    )
    if port is None:
        raise ToolFailure(
            ToolErrorKind.NOT_FOUND, f"switch {switch['name']} has no port {ctx.params.port_idx}"
        )
    if not port.get("port_poe") or port.get("poe_mode") in (None, "off"):
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"port {ctx.params.port_idx} of {switch['name']} does not supply PoE",
        )
    attached = [
        describe(d, found)
        for d in found
        if (d.get("uplink") or d.get("last_uplink") or {}).get("uplink_mac") == raw.get("mac")
        and (d.get("uplink") or d.get("last_uplink") or {}).get("uplink_remote_port")
        == ctx.params.port_idx
    ]
    device = attached[0] if attached else None
    return {
        "site": client.target.unifi_site,
        "switch": switch["name"],
        "switch_mac": switch["mac"],
        "switch_model": switch["model"],
        "port": ctx.params.port_idx,
        "port_name": port.get("name"),
        "poe_power_w": float(port.get("poe_power") or 0),
        "device": {k: device[k] for k in ("name", "mac", "model", "kind", "state", "uptime")}
        if device
        else None,
        "captured_at": time.time(),
    }


def _port_preview(ctx: ToolContext[PortParams], b: dict[str, Any]) -> str:
    attached = (
        f"{b['device']['kind']} '{b['device']['name']}' ({b['device']['model']}, {b['device']['mac']}, now {b['device']['state']})"
        if b["device"]
        else "an unknown device"
    )
    return (
        f"power-cycle PoE port {b['port']} ('{b['port_name']}', {b['poe_power_w']:g} W) of switch "
        f"'{b['switch']}' ({b['switch_model']}, {b['switch_mac']}) on site {b['site']}: {attached} "
        "loses power for a few seconds and boots again"
    )


@TOOLSET.write(
    "power_cycle_port",
    "Cut and restore PoE power on one switch port: reboots the device it powers, even one its "
    "controller cannot reach.",
    PortParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.STATELESS,
    capture=_capture_port,
    preview=_port_preview,
    timeout=timedelta(minutes=2),
)
async def power_cycle_port(ctx: ToolContext[PortParams]) -> dict[str, Any]:
    before = ctx.before or await _capture_port(ctx)
    client = client_for(ctx)
    if before["device"]:
        found = await client.devices()
        now = describe(find(found, before["device"]["mac"], client.target.unifi_site), found)
        if _rebooted(before, now):  # a retried activity: the device already came back
            return {"device": now, "_summary": f"{now['name']} already rebooted by this change"}
    await client.call(
        "POST",
        client.site("/cmd/devmgr"),
        json_body={"cmd": "power-cycle", "mac": before["switch_mac"], "port_idx": before["port"]},
    )
    return {
        "switch": before["switch"],
        "port": before["port"],
        "power_cycled": True,
        "_summary": f"power-cycled port {before['port']} of {before['switch']}",
    }
