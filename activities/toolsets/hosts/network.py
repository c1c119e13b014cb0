"""Network interfaces: state, addresses, counters; and bouncing one (HARD, allow-listed)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import ToolContext, ToolFailure
from activities.toolsets.hosts.client import TOOLSET, interface_name, run, target_of, where
from core.models import Reversibility, RiskLevel, ToolErrorKind


class InterfacesParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    interface: str | None = Field(default=None, description="one interface; default: the resource")


class BounceParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    wait: int = Field(default=10, ge=1, le=120, description="seconds to wait for it to come up")


def _json(text: str, what: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        raise ToolFailure(ToolErrorKind.FAILED, f"{what} printed no JSON: {exc}") from exc
    return list(data)


async def interfaces(ctx: ToolContext[Any]) -> list[dict[str, Any]]:
    links = await run(ctx, ["ip", "-j", "-s", "link", "show"])
    links.check("ip -s link")
    addrs = await run(ctx, ["ip", "-j", "addr", "show"])
    addrs.check("ip addr")
    by_name = {
        a.get("ifname"): [
            f"{i.get('local')}/{i.get('prefixlen')}" for i in a.get("addr_info") or []
        ]
        for a in _json(addrs.stdout, "ip -j addr")
    }
    rows = []
    for link in _json(links.stdout, "ip -j link"):
        stats = link.get("stats64") or link.get("stats") or {}
        rx, tx = stats.get("rx") or {}, stats.get("tx") or {}
        flags = link.get("flags") or []
        rows.append(
            {
                "name": link.get("ifname"),
                "operstate": link.get("operstate"),
                "admin_up": "UP" in flags,
                "carrier": "NO-CARRIER" not in flags and "LOWER_UP" in flags,
                "flags": flags,
                "mtu": link.get("mtu"),
                "mac": link.get("address"),
                "addresses": by_name.get(link.get("ifname"), []),
                "rx_bytes": rx.get("bytes"),
                "rx_errors": rx.get("errors"),
                "rx_dropped": rx.get("dropped"),
                "tx_bytes": tx.get("bytes"),
                "tx_errors": tx.get("errors"),
                "tx_dropped": tx.get("dropped"),
            }
        )
    return rows


async def one(ctx: ToolContext[Any], name: str) -> dict[str, Any]:
    found = next((i for i in await interfaces(ctx) if i["name"] == name), None)
    if found is None:
        raise ToolFailure(ToolErrorKind.NOT_FOUND, f"no interface {name} on {where(ctx)}")
    return found


@TOOLSET.read(
    "network_interfaces",
    "Interfaces with operational and admin state, carrier, addresses and error/drop counters "
    "(ip -j); one interface when given (or the incident's resource).",
    InterfacesParams,
    needs_resource=False,
)
async def network_interfaces(ctx: ToolContext[InterfacesParams]) -> dict[str, Any]:
    rows = await interfaces(ctx)
    name = ctx.params.interface or ctx.ref.resource
    out: dict[str, Any] = {"interfaces": rows}
    if name:
        interface_name(name)
        found = next((i for i in rows if i["name"] == name), None)
        if found is None:
            raise ToolFailure(ToolErrorKind.NOT_FOUND, f"no interface {name} on {where(ctx)}")
        out["interface"] = found
        out["allowed_restart"] = name in target_of(ctx).interfaces
    down = [i["name"] for i in rows if i["operstate"] == "DOWN"]
    out["down"] = down
    out["_summary"] = f"{len(rows)} interface(s) on {where(ctx)}, down: {', '.join(down) or 'none'}"
    return out


async def capture_bounce(ctx: ToolContext[BounceParams]) -> dict[str, Any]:
    name = interface_name(ctx.ref.resource)
    target = target_of(ctx)
    if name not in target.interfaces:
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"{name} is not among host {target.name}'s restartable interfaces "
            f"({', '.join(target.interfaces) or 'none'})",
        )
    state = await one(ctx, name)
    ssh_host = target.ssh.host if target.ssh else None
    routes = await run(ctx, ["ip", "-j", "route", "show", "default"])
    default_dev = {r.get("dev") for r in _json(routes.stdout, "ip -j route") if routes.ok}
    if (
        name == "lo"
        or name in default_dev
        or (ssh_host and any(a.split("/")[0] == ssh_host for a in state["addresses"]))
    ):
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"{name} carries the default route or the address the agents reach {target.name} by: "
            "bouncing it would cut them off mid-command",
        )
    return state


@TOOLSET.write(
    "restart_network_interface",
    "Bounce an allow-listed interface (ip link set down, then up) and wait for it to come back; "
    "refused for the interface the agents connect through.",
    BounceParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.STATELESS,
    capture=capture_bounce,
    preview=lambda ctx, b: (
        f"ip link set dev {b['name']} down; ip link set dev {b['name']} up on {where(ctx)} "
        f"(now {b['operstate']}, addresses {', '.join(b['addresses']) or 'none'})"
    ),
)
async def restart_network_interface(ctx: ToolContext[BounceParams]) -> dict[str, Any]:
    before = ctx.before or await capture_bounce(ctx)
    name = before["name"]
    down = await run(ctx, ["ip", "link", "set", "dev", name, "down"])
    up = await run(ctx, ["ip", "link", "set", "dev", name, "up"])
    if not up.ok:  # whatever happened to `down`, the interface must not be left down
        raise ToolFailure(
            ToolErrorKind.FAILED, f"ip link set dev {name} up on {where(ctx)}: {up.tail(300)}"
        )
    down.check(f"ip link set dev {name} down")
    after = await one(ctx, name)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ctx.params.wait
    while not after["admin_up"] and loop.time() < deadline:
        await asyncio.sleep(0.5)
        after = await one(ctx, name)
    if not after["admin_up"]:
        raise ToolFailure(ToolErrorKind.FAILED, f"{name} on {where(ctx)} is still down")
    return {
        "interface": name,
        "before": before,
        "after": after,
        "_summary": f"bounced {name} on {where(ctx)}: now {after['operstate']}",
    }
