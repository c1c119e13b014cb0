"""HAProxy reads: servers (state, checks, sessions, 5xx, and what runs behind each), process
info, the configuration check."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.haproxy.client import (
    NAME,
    TOOLSET,
    config_check,
    place,
    runtime,
    servers_of,
    show_stat,
    target_of,
)
from activities.toolsets.upstreams import backend_for
from core.models import ToolErrorKind


class ServersParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backend: str | None = Field(default=None, pattern=NAME, description="only this backend")
    sample_seconds: float = Field(
        default=0,
        ge=0,
        le=10,
        description="> 0: read twice this far apart for 5xx and request rates",
    )


def _rates(first: list[dict[str, Any]], second: list[dict[str, Any]], seconds: float) -> None:
    before = {(s["backend"], s["server"]): s for s in first}
    for s in second:
        old = before.get((s["backend"], s["server"]))
        if old is None:
            continue
        errors = max(s["http_5xx"] - old["http_5xx"], 0)
        total = max(s["http_total"] - old["http_total"], 0)
        s["rate_5xx"] = round(errors / seconds, 3)
        s["rate_requests"] = round(total / seconds, 3)
        s["share_5xx"] = round(errors / total, 3) if total else 0.0


@TOOLSET.read(
    "servers",
    "Every backend server: state (UP/DOWN/MAINT/DRAIN), check status, weight, sessions, 5xx "
    "(rates when sampled), and the configured Docker/PostgreSQL target behind its address.",
    ServersParams,
    needs_resource=False,
)
async def servers(ctx: ToolContext[ServersParams]) -> dict[str, Any]:
    target = target_of(ctx)
    p = ctx.params
    rows = servers_of(await show_stat(target))
    if p.sample_seconds:
        await asyncio.sleep(p.sample_seconds)
        later = servers_of(await show_stat(target))
        _rates(rows, later, p.sample_seconds)
        rows = later
    if p.backend is not None:
        rows = [s for s in rows if s["backend"] == p.backend]
        if not rows:
            raise ToolFailure(ToolErrorKind.NOT_FOUND, f"no backend {p.backend!r} in {place(ctx)}")
    for s in rows:
        s["backend_target"] = backend_for(s["address"], target.backends) if s["address"] else None
    backends: dict[str, dict[str, Any]] = {}
    for s in rows:
        b = backends.setdefault(s["backend"], {"servers": 0, "up": 0, "maintenance": 0})
        b["servers"] += 1
        b["up"] += int(s["up"] and not s["maintenance"])
        b["maintenance"] += int(s["maintenance"])
    for s in rows:
        s["others_up"] = backends[s["backend"]]["up"] - int(s["up"] and not s["maintenance"])
    down = [s for s in rows if not s["up"]]
    failing = [s for s in down if not s["maintenance"]]
    sampled = [s for s in rows if "rate_5xx" in s]
    worst = max(sampled, key=lambda s: s["rate_5xx"], default=None)
    first = (failing or down)[0] if down else None
    return {
        "servers": rows,
        "backends": backends,
        "down": down,
        "down_count": len(down),
        "failing_count": len(failing),
        "maintenance_count": sum(1 for s in rows if s["maintenance"]),
        "first_down": first,
        "first_down_backend": first["backend_target"] if first else None,
        "worst_5xx": worst if worst and worst["rate_5xx"] > 0 else None,
        "backends_without_servers_up": [n for n, b in backends.items() if b["up"] == 0],
        "_summary": (
            f"{len(rows)} servers in {len(backends)} backend(s) of {place(ctx)}; "
            + (
                "down: "
                + ", ".join(
                    f"{s['backend']}/{s['server']} {s['status']} ({s['check_status'] or '-'})"
                    for s in down[:4]
                )
                if down
                else "all up"
            )
            + (
                f"; most 5xx: {worst['backend']}/{worst['server']} {worst['rate_5xx']}/s "
                f"({worst['share_5xx']:.0%})"
                if worst and worst["rate_5xx"] > 0
                else ""
            )
        ),
    }


@TOOLSET.read(
    "info",
    "The HAProxy process: version, uptime, connections against maxconn.",
    needs_resource=False,
)
async def info(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    text = await runtime(target_of(ctx), "show info")
    values = dict(
        (k.strip(), v.strip())
        for k, sep, v in (line.partition(":") for line in text.splitlines())
        if sep
    )
    conns, maxconn = int(values.get("CurrConns", 0) or 0), int(values.get("Maxconn", 0) or 0)
    return {
        "version": values.get("Version"),
        "uptime_seconds": int(values.get("Uptime_sec", 0) or 0),
        "current_connections": conns,
        "maxconn": maxconn,
        "connections_percent": round(100 * conns / maxconn, 1) if maxconn else None,
        "pid": values.get("Pid"),
        "_summary": f"HAProxy {values.get('Version')} up {values.get('Uptime')}, {conns}/{maxconn} connections",
    }


@TOOLSET.read(
    "config_test",
    "Check the configuration file (haproxy -c -f FILE): valid or not, and HAProxy's messages.",
    needs_resource=False,
)
async def config_test(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    check = await config_check(target_of(ctx))
    return {
        **check.model_dump(),
        "_summary": f"haproxy -c on {place(ctx)}: "
        + ("valid" if check.valid else "FAILS: " + "; ".join(check.output[-2:])),
    }
