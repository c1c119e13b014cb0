"""Write tools that create, roll back to and delete snapshots."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import ToolContext, ToolFailure
from activities.toolsets.proxmox.client import (
    SNAPNAME,
    TOOLSET,
    api_for,
    find_guest,
    wait_task,
)
from activities.toolsets.proxmox.guest_info import list_snapshots
from activities.toolsets.proxmox.safety import (
    after_state,
    guest_location,
    guest_state,
    snapshot_feature,
)
from activities.toolsets.proxmox.sizing import current_resources
from core.models import Reversibility, RiskLevel, ToolErrorKind
from core.units import human_duration


class SnapshotCreateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=SNAPNAME)
    description: str = Field(default="", max_length=500)
    vmstate: bool = Field(default=False, description="VMs: include RAM state")


def capture_snapshot_create(ctx: ToolContext[SnapshotCreateParams]) -> dict[str, Any]:
    guest = find_guest(ctx)
    if ctx.params.vmstate and guest.type != "qemu":
        raise ToolFailure(ToolErrorKind.INVALID, "vmstate is for VMs only")
    names = [s["name"] for s in list_snapshots(ctx, guest)]
    exists = ctx.params.name in names
    if not exists and not snapshot_feature(ctx, guest):
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED, f"{guest.label}'s storage does not support snapshots"
        )
    return guest_state(ctx, guest) | {"exists": exists, "snapshots": names}


@TOOLSET.write(
    "snapshot_create",
    "Take a named snapshot of a guest.",
    SnapshotCreateParams,
    level=RiskLevel.SOFT,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_snapshot_create,
    preview=lambda ctx, b: (
        f"no-op: {guest_location(b)} already has snapshot {ctx.params.name}"
        if b["exists"]
        else f"snapshot {guest_location(b)} as {ctx.params.name} ({len(b['snapshots'])} existing)"
        + (" with RAM state" if ctx.params.vmstate else "")
    ),
    compensate=lambda ctx, b: (
        None if b["exists"] else ("proxmox.snapshot_delete", {"snapshot": ctx.params.name})
    ),
    is_noop=lambda ctx, b: bool(b["exists"]),
    timeout=timedelta(minutes=12),
)
def snapshot_create(ctx: ToolContext[SnapshotCreateParams]) -> dict[str, Any]:
    guest = find_guest(ctx)
    names = [s["name"] for s in list_snapshots(ctx, guest)]
    info: dict[str, Any] = {}
    if ctx.params.name not in names:
        params: dict[str, Any] = {"snapname": ctx.params.name}
        if ctx.params.description:
            params["description"] = ctx.params.description
        if ctx.params.vmstate:
            params["vmstate"] = 1
        upid = api_for(ctx).post(f"{guest.path}/snapshot", **params)
        info = wait_task(ctx, guest.node, upid, f"snapshot {ctx.params.name} of {guest.label}")
    rows = list_snapshots(ctx, guest)
    return {
        "snapshot": ctx.params.name,
        "snapshots": [r["name"] for r in rows],
        "task": info,
        "_summary": f"snapshot {ctx.params.name} of {guest.label} "
        + ("taken" if info else "already existed"),
    }


class SnapshotRefParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    snapshot: str = Field(pattern=SNAPNAME)


class RollbackParams(SnapshotRefParams):
    start: bool | None = Field(
        default=None, description="start the guest afterwards; default: if it runs now"
    )


def capture_rollback(ctx: ToolContext[RollbackParams]) -> dict[str, Any]:
    guest = find_guest(ctx)
    rows = {r["name"]: r for r in list_snapshots(ctx, guest)}
    name = ctx.params.snapshot
    if name not in rows:
        raise ToolFailure(
            ToolErrorKind.NOT_FOUND,
            f"{guest.label} has no snapshot {name!r} (has: {', '.join(rows) or 'none'})",
        )
    api = api_for(ctx)
    snap_config = api.get(f"{guest.path}/snapshot/{name}/config") or {}
    now_config = api.get(f"{guest.path}/config") or {}
    state = guest_state(ctx, guest)
    then, now = current_resources(snap_config, guest), current_resources(now_config, guest)
    differences = {k: {"now": now[k], "snapshot": then[k]} for k in now if now[k] != then[k]}
    start_after = state["running"] if ctx.params.start is None else ctx.params.start
    return state | {
        "snapshot": name,
        "snaptime": rows[name]["snaptime"],
        "snapshot_age_seconds": rows[name]["age_seconds"],
        "differences": differences,
        "start_after": bool(start_after),
    }


def _rollback_preview(ctx: ToolContext[RollbackParams], b: dict[str, Any]) -> str:
    diff = ", ".join(
        f"{k.removesuffix('_mib')} {v['now']} → {v['snapshot']}"
        for k, v in b["differences"].items()
    )
    return (
        f"roll {guest_location(b)} back to snapshot {b['snapshot']} (taken "
        f"{human_duration(b['snapshot_age_seconds'])} ago; everything since is lost"
        + (f"; config {diff}" if diff else "")
        + f"), then {'start it' if b['start_after'] else 'leave it stopped'}"
    )


@TOOLSET.write(
    "snapshot_rollback",
    "Roll a guest back to a snapshot (disk and config; changes since are lost), then start it "
    "again if it was running.",
    RollbackParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=capture_rollback,
    preview=_rollback_preview,
    # what is approved: the snapshot (by its time) and what it changes, not its age in words
    facts=lambda ctx, b: {
        "snapshot": b["snapshot"],
        "snaptime": b["snaptime"],
        "differences": b["differences"],
        "start_after": b["start_after"],
    },
    timeout=timedelta(minutes=20),
)
def snapshot_rollback(ctx: ToolContext[RollbackParams]) -> dict[str, Any]:
    guest = find_guest(ctx)
    before = ctx.before or capture_rollback(ctx)
    api = api_for(ctx)
    upid = api.post(
        f"{guest.path}/snapshot/{before['snapshot']}/rollback", start=int(before["start_after"])
    )
    info = wait_task(ctx, guest.node, upid, f"rollback of {guest.label} to {before['snapshot']}")
    if before["start_after"] and not guest_state(ctx, guest)["running"]:
        # PVE versions before 7.3 ignore `start`: start it ourselves.
        upid = api.post(f"{guest.path}/status/start")
        wait_task(ctx, guest.node, upid, f"start of {guest.label} after rollback")
    data = after_state(ctx, guest, f"rolled {guest.label} back to {before['snapshot']}", info)
    data.update(current_resources(api.get(f"{guest.path}/config") or {}, guest))
    return data


def capture_snapshot_delete(ctx: ToolContext[SnapshotRefParams]) -> dict[str, Any]:
    guest = find_guest(ctx)
    rows = {r["name"]: r for r in list_snapshots(ctx, guest)}
    snap = rows.get(ctx.params.snapshot)
    return guest_state(ctx, guest) | {
        "exists": snap is not None,
        "snapshot": ctx.params.snapshot,
        "age_seconds": snap["age_seconds"] if snap else None,
        "has_children": any(r["parent"] == ctx.params.snapshot for r in rows.values()),
    }


@TOOLSET.write(
    "snapshot_delete",
    "Delete a guest's snapshot (the recovery point is gone for good).",
    SnapshotRefParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=capture_snapshot_delete,
    preview=lambda ctx, b: (
        f"no-op: {guest_location(b)} has no snapshot {b['snapshot']}"
        if not b["exists"]
        else f"delete snapshot {b['snapshot']} of {guest_location(b)} ({human_duration(b['age_seconds'])} old)"
    ),
    is_noop=lambda ctx, b: not b["exists"],
    timeout=timedelta(minutes=12),
)
def snapshot_delete(ctx: ToolContext[SnapshotRefParams]) -> dict[str, Any]:
    guest = find_guest(ctx)
    names = {r["name"] for r in list_snapshots(ctx, guest)}
    info: dict[str, Any] = {}
    if ctx.params.snapshot in names:
        upid = api_for(ctx).delete(f"{guest.path}/snapshot/{ctx.params.snapshot}")
        info = wait_task(ctx, guest.node, upid, f"delete of snapshot {ctx.params.snapshot}")
    remaining = [r["name"] for r in list_snapshots(ctx, guest)]
    return {
        "snapshot": ctx.params.snapshot,
        "snapshots": remaining,
        "task": info,
        "_summary": f"snapshot {ctx.params.snapshot} of {guest.label} "
        + ("deleted" if info else "was already gone"),
    }
