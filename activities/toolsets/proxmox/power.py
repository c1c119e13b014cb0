"""Write tools that start, shut down and reboot guests."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.proxmox.client import (
    TOOLSET,
    Guest,
    api_for,
    find_guest,
    target_of,
    wait_task,
)
from activities.toolsets.proxmox.safety import (
    SnapshotMode,
    after_state,
    guest_location,
    guest_state,
    plan_safety_snapshot,
    prune_safety_snapshots,
    safety_note,
    snapshot_compensation,
    take_safety_snapshot,
)
from core.models import Reversibility, RiskLevel, ToolErrorKind
from core.units import human_duration

HA_TASKS = ("hastart", "hastop")


def await_ha(ctx: ToolContext[Any], guest: Guest, info: dict[str, Any], running: bool) -> None:
    """An HA-managed guest's start/stop task only asks the HA stack (``ha-manager set``) and ends
    at once; the node's LRM acts later. Wait for the guest itself, up to the task timeout, so the
    result (and the verification after it) sees what HA did, not the request."""
    if info.get("type") not in HA_TASKS:
        return
    want = "running" if running else "stopped"
    limit = target_of(ctx).task_timeout.total_seconds()
    started = time.monotonic()
    delay = 0.25
    while True:
        state = guest_state(ctx, guest)
        if state["running"] == running:
            info["ha_seconds"] = round(time.monotonic() - started, 2)
            return
        if time.monotonic() - started > limit:
            ha = state.get("ha_state") or "unknown"
            raise ToolFailure(
                ToolErrorKind.FAILED,
                f"HA accepted the request ({info['type']} {info.get('exitstatus')}) but "
                f"{guest.label} is still {state['status']}, not {want}, after {limit:.0f}s "
                f"(HA state {ha}): check `ha-manager status` and the node's pve-ha-lrm",
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)


def capture_power(ctx: ToolContext[Any]) -> dict[str, Any]:
    guest = find_guest(ctx)
    if guest.template:
        raise ToolFailure(ToolErrorKind.INVALID, f"{guest.label} is a template, not a guest to run")
    return guest_state(ctx, guest)


@TOOLSET.write(
    "start",
    "Start a stopped guest and wait until it runs (HA-managed: until the HA stack started it).",
    level=RiskLevel.SOFT,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_power,
    preview=lambda ctx, b: (
        f"no-op: {guest_location(b)} is already running"
        if b["running"]
        else f"start {guest_location(b)} (now {b['status']})"
    ),
    compensate=lambda ctx, b: None if b["running"] else ("proxmox.shutdown", {}),
    is_noop=lambda ctx, b: bool(b["running"]),
)
def start(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    guest = find_guest(ctx)
    if guest_state(ctx, guest)["running"]:
        return after_state(ctx, guest, f"{guest.label} already running", {})
    upid = api_for(ctx).post(f"{guest.path}/status/start")
    info = wait_task(ctx, guest.node, upid, f"start of {guest.label}")
    await_ha(ctx, guest, info, running=True)
    how = " through HA" if info.get("type") in HA_TASKS else ""
    return after_state(ctx, guest, f"started {guest.label} on {guest.node}{how}", info)


class ShutdownParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout: int = Field(default=60, ge=1, le=3600, description="seconds to wait for a clean stop")
    force_stop: bool = Field(default=True, description="hard-stop after the timeout")


@TOOLSET.write(
    "shutdown",
    "Shut a guest down cleanly (hard stop after the timeout if force_stop); HA-managed guests "
    "through the HA stack.",
    ShutdownParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_power,
    preview=lambda ctx, b: (
        f"shut down {guest_location(b)} (timeout {ctx.params.timeout}s"
        + (", then hard stop)" if ctx.params.force_stop else ", no hard stop)")
        if b["running"]
        else f"no-op: {guest_location(b)} is already {b['status']}"
    ),
    compensate=lambda ctx, b: ("proxmox.start", {}) if b["running"] else None,
    is_noop=lambda ctx, b: not b["running"],
    timeout=timedelta(minutes=65),
)
def shutdown(ctx: ToolContext[ShutdownParams]) -> dict[str, Any]:
    guest = find_guest(ctx)
    if not guest_state(ctx, guest)["running"]:
        return after_state(ctx, guest, f"{guest.label} already stopped", {})
    upid = api_for(ctx).post(
        f"{guest.path}/status/shutdown",
        timeout=ctx.params.timeout,
        forceStop=int(ctx.params.force_stop),
    )
    info = wait_task(ctx, guest.node, upid, f"shutdown of {guest.label}")
    await_ha(ctx, guest, info, running=False)
    how = " through HA" if info.get("type") in HA_TASKS else ""
    return after_state(ctx, guest, f"shut down {guest.label}{how}", info)


class RebootParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout: int = Field(default=60, ge=1, le=3600, description="seconds for the clean shutdown")
    snapshot: SnapshotMode = Field(
        default="auto", description="auto: containers get a safety snapshot; always: VMs too"
    )


def capture_reboot(ctx: ToolContext[RebootParams]) -> dict[str, Any]:
    before = capture_power(ctx)
    if not before["running"]:
        raise ToolFailure(
            ToolErrorKind.CONFLICT, f"{guest_location(before)} is not running: start it"
        )
    guest = find_guest(ctx)
    return before | plan_safety_snapshot(ctx, guest, "reboot", ctx.params.snapshot)


@TOOLSET.write(
    "reboot",
    "Reboot a running guest (clean shutdown, then start); containers get a safety snapshot first.",
    RebootParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_reboot,
    preview=lambda ctx, b: (
        f"reboot {guest_location(b)} (up {human_duration(b['uptime'])}, shutdown timeout {ctx.params.timeout}s)"
        + safety_note(b)
    ),
    compensate=lambda ctx, b: snapshot_compensation(b),
    timeout=timedelta(minutes=65),
)
def reboot(ctx: ToolContext[RebootParams]) -> dict[str, Any]:
    guest = find_guest(ctx)
    before = ctx.before or capture_reboot(ctx)
    now = guest_state(ctx, guest)
    if now["running"] and before.get("pid") and now["pid"] and now["pid"] != before["pid"]:
        return after_state(ctx, guest, f"{guest.label} was already rebooted by this change", {})
    snap = take_safety_snapshot(ctx, guest, before, "reboot")
    upid = api_for(ctx).post(f"{guest.path}/status/reboot", timeout=ctx.params.timeout)
    info = wait_task(ctx, guest.node, upid, f"reboot of {guest.label}")
    data = after_state(ctx, guest, f"rebooted {guest.label}", info)
    if snap:
        data["safety_snapshot"] = snap["name"]
        data.update(prune_safety_snapshots(ctx, guest, snap["name"]))
    return data
