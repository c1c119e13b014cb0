"""HAProxy writes: take a server out of rotation and back (runtime API, compensated), set its
weight (the old weight is the compensation), reload after ``haproxy -c`` passes."""

from __future__ import annotations

import shlex
from datetime import timedelta
from typing import Any

from pydantic import Field

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.haproxy.client import (
    TOOLSET,
    ServerParams,
    config_check,
    one_server,
    place,
    run,
    runtime,
    safe_name,
    servers_of,
    show_stat,
    target_of,
)
from core.models import Reversibility, RiskLevel, ToolErrorKind


async def capture_server(ctx: ToolContext[Any]) -> dict[str, Any]:
    target = target_of(ctx)
    p = ctx.params
    rows = servers_of(await show_stat(target))
    found = next((s for s in rows if s["backend"] == p.backend and s["server"] == p.server), None)
    if found is None:
        raise ToolFailure(
            ToolErrorKind.NOT_FOUND, f"no server {p.backend}/{p.server} in {place(ctx)}"
        )
    others_up = sum(
        1
        for s in rows
        if s["backend"] == p.backend
        and s["server"] != p.server
        and s["up"]
        and not s["maintenance"]
    )
    return {**found, "others_up": others_up}


def _label(b: dict[str, Any]) -> str:
    return f"{b['backend']}/{b['server']}"


def _state(b: dict[str, Any]) -> str:
    return (
        f"now {b['status']}, check {b['check_status'] or '-'}, weight {b['weight']}, "
        f"{b['current_sessions']} sessions; {b['others_up']} other server(s) up"
    )


def _last_one(b: dict[str, Any]) -> bool:
    return bool(b["up"] and not b["maintenance"] and b["others_up"] == 0)


async def _set_state(ctx: ToolContext[Any], state: str) -> dict[str, Any]:
    p = ctx.params
    answer = await runtime(
        target_of(ctx), f"set server {safe_name(p.backend)}/{safe_name(p.server)} state {state}"
    )
    if answer.strip():
        raise ToolFailure(ToolErrorKind.FAILED, f"HAProxy answered: {answer.strip()[:300]}")
    return await one_server(target_of(ctx), p.backend, p.server)


@TOOLSET.write(
    "disable_server",
    "Take a backend server out of rotation (runtime API: state maint); refused for the last "
    "server up in its backend. Compensation: enable it again.",
    ServerParams,
    level=RiskLevel.SOFT,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_server,
    preview=lambda ctx, b: (
        f"no-op: {_label(b)} on {place(ctx)} is already in maintenance"
        if b["maintenance"]
        else f"set server {_label(b)} state maint on {place(ctx)}: no new traffic to "
        f"{b['address'] or 'it'} ({_state(b)})"
        + (" [REFUSED: it is the last server up in its backend]" if _last_one(b) else "")
    ),
    compensate=lambda ctx, b: (
        None
        if b["maintenance"]
        else ("haproxy.enable_server", {"backend": b["backend"], "server": b["server"]})
    ),
    is_noop=lambda ctx, b: bool(b["maintenance"]),
    needs_resource=False,
)
async def disable_server(ctx: ToolContext[ServerParams]) -> dict[str, Any]:
    before = ctx.before or await capture_server(ctx)
    current = await capture_server(ctx)
    if current["maintenance"]:  # a retry after success
        return {**current, "_summary": f"{_label(current)} already in maintenance"}
    if _last_one(current):
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"refusing to disable {_label(current)}: it is the last server up in its backend",
        )
    after = await _set_state(ctx, "maint")
    return {
        **after,
        "status_before": before["status"],
        "_summary": f"{_label(after)} on {place(ctx)}: {before['status']} → {after['status']}",
    }


@TOOLSET.write(
    "enable_server",
    "Put a server in maintenance back into rotation (runtime API: state ready); its health "
    "checks decide when it takes traffic. Compensation: back to maintenance.",
    ServerParams,
    level=RiskLevel.NONE,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_server,
    preview=lambda ctx, b: (
        f"set server {_label(b)} state ready on {place(ctx)} ({_state(b)}); it takes traffic "
        "once its checks pass"
        if b["maintenance"] or b["drain"]
        else f"no-op: {_label(b)} on {place(ctx)} is not in maintenance ({b['status']})"
    ),
    compensate=lambda ctx, b: (
        ("haproxy.disable_server", {"backend": b["backend"], "server": b["server"]})
        if b["maintenance"]
        else None
    ),
    is_noop=lambda ctx, b: not (b["maintenance"] or b["drain"]),
    needs_resource=False,
)
async def enable_server(ctx: ToolContext[ServerParams]) -> dict[str, Any]:
    before = ctx.before or await capture_server(ctx)
    current = await capture_server(ctx)
    if not (current["maintenance"] or current["drain"]):
        return {
            **current,
            "_summary": f"{_label(current)} is already in rotation ({current['status']})",
        }
    after = await _set_state(ctx, "ready")
    return {
        **after,
        "status_before": before["status"],
        "_summary": f"{_label(after)} on {place(ctx)}: {before['status']} → {after['status']}",
    }


class WeightParams(ServerParams):
    weight: int = Field(ge=0, le=256, description="0 drains the server; 1-256 relative share")


@TOOLSET.write(
    "set_weight",
    "Change a server's weight at runtime (0 drains it). Compensation: the old weight.",
    WeightParams,
    level=RiskLevel.SOFT,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_server,
    preview=lambda ctx, b: (
        f"no-op: {_label(b)} on {place(ctx)} already has weight {b['weight']}"
        if b["weight"] == ctx.params.weight
        else f"set weight {_label(b)} {ctx.params.weight} on {place(ctx)}: weight "
        f"{b['weight']} → {ctx.params.weight} ({_state(b)})"
        + (
            " [REFUSED: it is the last server up in its backend]"
            if ctx.params.weight == 0 and _last_one(b)
            else ""
        )
    ),
    compensate=lambda ctx, b: (
        None
        if b["weight"] == ctx.params.weight
        else (
            "haproxy.set_weight",
            {"backend": b["backend"], "server": b["server"], "weight": b["weight"]},
        )
    ),
    is_noop=lambda ctx, b: b["weight"] == ctx.params.weight,
    needs_resource=False,
)
async def set_weight(ctx: ToolContext[WeightParams]) -> dict[str, Any]:
    p = ctx.params
    before = ctx.before or await capture_server(ctx)
    current = await capture_server(ctx)
    if p.weight == 0 and _last_one(current):
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"refusing to drain {_label(current)}: it is the last server up in its backend",
        )
    if current["weight"] != p.weight:
        answer = await runtime(
            target_of(ctx), f"set weight {safe_name(p.backend)}/{safe_name(p.server)} {p.weight}"
        )
        if answer.strip():
            raise ToolFailure(ToolErrorKind.FAILED, f"HAProxy answered: {answer.strip()[:300]}")
    after = await one_server(target_of(ctx), p.backend, p.server)
    return {
        **after,
        "weight_before": before["weight"],
        "_summary": f"{_label(after)} on {place(ctx)}: weight {before['weight']} → {after['weight']}",
    }


async def capture_reload(ctx: ToolContext[Any]) -> dict[str, Any]:
    target = target_of(ctx)
    if target.reload_command is None:
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED, f"{place(ctx)} has no reload_command configured"
        )
    check = await config_check(target)
    return {**check.model_dump(), "reload_command": shlex.join(target.reload_command)}


@TOOLSET.write(
    "reload",
    "Reload HAProxy with its configuration file, only if haproxy -c passes (checked again just "
    "before): a broken configuration is refused and the running one kept.",
    level=RiskLevel.SOFT,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=capture_reload,
    preview=lambda ctx, b: (
        f"`{b['command']}` passes; run `{b['reload_command']}` on {b['where']}: {place(ctx)} "
        "loads its configuration file (old processes finish their connections)"
        if b["valid"]
        else f"REFUSED: `{b['command']}` fails on {b['where']}, so {place(ctx)} is not reloaded "
        "and keeps its running configuration: " + "; ".join(b["output"][-3:])
    ),
    needs_resource=False,
    timeout=timedelta(minutes=2),
)
async def reload(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    target = target_of(ctx)
    before = await capture_reload(ctx)
    if not before["valid"]:
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"refusing to reload {place(ctx)}: `{before['command']}` fails ("
            + "; ".join(before["output"][-3:])
            + "); the running configuration is kept",
        )
    assert target.reload_command is not None
    done = (await run(target, list(target.reload_command))).check(f"reload of {place(ctx)}")
    return {
        "reloaded": True,
        "command": shlex.join(done.argv),
        "where": done.where,
        "_summary": f"reloaded {place(ctx)} (`{shlex.join(done.argv)}` after haproxy -c passed)",
    }
