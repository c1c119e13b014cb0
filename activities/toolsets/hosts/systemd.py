"""systemd units on the host: what failed, one unit's state and journal, and a restart."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import ToolContext, ToolFailure
from activities.toolsets.commands import unit_name
from activities.toolsets.hosts.client import TOOLSET, run, target_of, where
from core.models import Reversibility, RiskLevel, ToolErrorKind

SHOW = (
    "Id,Description,LoadState,ActiveState,SubState,MainPID,Result,NRestarts,"
    "ExecMainStartTimestampMonotonic,ExecMainStatus"
)


class UnitsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit: str | None = Field(default=None, description="one unit to detail; default: the resource")
    lines: int = Field(default=20, ge=0, le=200, description="journal lines of that unit")


class RestartParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    wait: int = Field(default=30, ge=1, le=300, description="seconds to wait for it to be active")


def parse_show(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


async def unit_state(ctx: ToolContext[Any], unit: str) -> dict[str, Any]:
    done = await run(ctx, ["systemctl", "show", f"--property={SHOW}", "--", unit])
    done.check(f"systemctl show {unit}")
    props = parse_show(done.stdout)
    if props.get("LoadState") == "not-found":
        raise ToolFailure(ToolErrorKind.NOT_FOUND, f"no unit {unit} on {where(ctx)}")
    pid = props.get("MainPID", "0")
    restarts = props.get("NRestarts", "")
    return {
        "unit": unit,
        "description": props.get("Description", ""),
        "load_state": props.get("LoadState"),
        "active_state": props.get("ActiveState"),
        "sub_state": props.get("SubState"),
        "active": props.get("ActiveState") == "active",
        "result": props.get("Result"),
        "main_pid": int(pid) if pid.isdigit() else 0,
        "restarts": int(restarts) if restarts.isdigit() else None,
        "started_monotonic": props.get("ExecMainStartTimestampMonotonic", ""),
        "exit_status": props.get("ExecMainStatus"),
    }


async def journal(ctx: ToolContext[Any], unit: str, lines: int) -> list[str]:
    if lines == 0:
        return []
    done = await run(
        ctx, ["journalctl", "-u", unit, "-n", str(lines), "--no-pager", "-o", "short-iso"]
    )
    return done.stdout.strip().splitlines()[-lines:] if done.ok else []


async def failed_units(ctx: ToolContext[Any]) -> list[dict[str, str]]:
    done = await run(
        ctx, ["systemctl", "list-units", "--failed", "--no-legend", "--plain", "--no-pager"]
    )
    done.check("systemctl list-units --failed")
    rows = []
    for line in done.stdout.splitlines():
        parts = line.split(None, 4)
        if len(parts) >= 4:
            rows.append(
                {
                    "unit": parts[0],
                    "load": parts[1],
                    "active": parts[2],
                    "sub": parts[3],
                    "description": parts[4] if len(parts) > 4 else "",
                }
            )
    return rows


@TOOLSET.read(
    "systemd_units",
    "Failed units; with a unit (or the incident's resource): its state, restarts, exit status and "
    "recent journal lines.",
    UnitsParams,
    needs_resource=False,
)
async def systemd_units(ctx: ToolContext[UnitsParams]) -> dict[str, Any]:
    failed = await failed_units(ctx)
    out: dict[str, Any] = {"failed": failed, "failed_count": len(failed)}
    name = ctx.params.unit or ctx.ref.resource
    if name:
        unit = unit_name(name)
        out["unit"] = await unit_state(ctx, unit)
        out["journal"] = await journal(ctx, unit, ctx.params.lines)
        out["allowed_restart"] = unit in {unit_name(u) for u in target_of(ctx).units}
    state = out.get("unit")
    out["_summary"] = f"{len(failed)} failed unit(s) on {where(ctx)}" + (
        f"; {state['unit']} {state['active_state']}/{state['sub_state']} ({state['result']})"
        if state
        else ""
    )
    return out


def allowed_unit(ctx: ToolContext[Any]) -> str:
    unit = unit_name(ctx.ref.resource)
    allowed = {unit_name(u) for u in target_of(ctx).units}
    if unit not in allowed:
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"{unit} is not among host {ctx.ref.target}'s restartable units "
            f"({', '.join(sorted(allowed)) or 'none'})",
        )
    return unit


async def capture_unit(ctx: ToolContext[RestartParams]) -> dict[str, Any]:
    return await unit_state(ctx, allowed_unit(ctx))


@TOOLSET.write(
    "restart_unit",
    "Restart an allow-listed systemd unit (systemctl restart) and wait until it is active; a "
    "unit that fails again is reported with its journal.",
    RestartParams,
    level=RiskLevel.SOFT,
    reversibility=Reversibility.STATELESS,
    capture=capture_unit,
    preview=lambda ctx, b: (
        f"systemctl restart {b['unit']} on {where(ctx)} (now {b['active_state']}/{b['sub_state']}, "
        f"result {b['result']}, pid {b['main_pid'] or '-'}; wait up to {ctx.params.wait}s)"
    ),
    timeout=timedelta(minutes=6),
)
async def restart_unit(ctx: ToolContext[RestartParams]) -> dict[str, Any]:
    unit = allowed_unit(ctx)
    before = ctx.before or await unit_state(ctx, unit)
    now = await unit_state(ctx, unit)
    restarted_already = (
        now["active"]
        and before.get("started_monotonic")
        and now["started_monotonic"] != before["started_monotonic"]
    )
    if not restarted_already:
        done = await run(ctx, ["systemctl", "restart", "--", unit], limit=ctx.params.wait + 30)
        if not done.ok:
            lines = await journal(ctx, unit, 10)
            raise ToolFailure(
                ToolErrorKind.FAILED,
                f"systemctl restart {unit} on {where(ctx)} exited {done.exit_status}: "
                f"{done.tail(300)}" + (f" | journal: {' / '.join(lines[-5:])}" if lines else ""),
            )
    deadline = time.monotonic() + ctx.params.wait
    after = await unit_state(ctx, unit)
    while not after["active"] and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        after = await unit_state(ctx, unit)
    if not after["active"]:
        lines = await journal(ctx, unit, 10)
        raise ToolFailure(
            ToolErrorKind.FAILED,
            f"{unit} on {where(ctx)} is {after['active_state']}/{after['sub_state']} after restart"
            + (f" | journal: {' / '.join(lines[-5:])}" if lines else ""),
        )
    return {
        "unit": unit,
        "before": before,
        "after": after,
        "_summary": f"restarted {unit} on {where(ctx)}: {after['active_state']}, pid {after['main_pid']}",
    }
