"""What every write shares: the guest's before-state and the ``ha-<incident>`` safety snapshot.

Risky container changes take the snapshot first and register the rollback to it as their
compensation; older ``ha-`` snapshots are pruned by the target's policy, never anyone else's.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any, Literal

from proxmoxer.core import ResourceException

from activities.catalog import ToolContext, ToolFailure
from activities.toolsets.proxmox.client import (
    SAFETY_MARK,
    SAFETY_PREFIX,
    Guest,
    api_for,
    target_of,
    wait_task,
)
from activities.toolsets.proxmox.guest_info import guest_runtime, list_snapshots
from core.models import ToolErrorKind


def guest_state(ctx: ToolContext[Any], guest: Guest) -> dict[str, Any]:
    runtime = guest_runtime(ctx, guest)
    return {
        "vmid": guest.vmid,
        "type": guest.type,
        "node": guest.node,
        "name": runtime["name"],
        "status": runtime["status"],
        "running": runtime["running"],
        "pid": runtime["pid"],
        "uptime": runtime["uptime"],
        "lock": runtime["lock"],
        "ha_managed": runtime["ha"]["managed"],
        "ha_state": runtime["ha"]["state"],
    }


def after_state(
    ctx: ToolContext[Any], guest: Guest, note: str, task_info: dict[str, Any]
) -> dict[str, Any]:
    data = guest_state(ctx, guest)
    data["task"] = task_info
    data["_summary"] = note + (
        f" (task {task_info['exitstatus']})" if task_info.get("upid") else ""
    )
    return data


SnapshotMode = Literal["auto", "always"]


def safety_snapshot_name(incident_id: str, existing: set[str]) -> str:
    """``ha-<incident>``, a valid PVE snapshot name (40 chars), unique on this guest."""
    base = incident_id.removeprefix("incident-") if incident_id else ""
    if not base:
        base = "manual-" + datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", base).strip("-_") or "x"
    name = f"{SAFETY_PREFIX}{slug}"
    if len(name) > 36:
        digest = hashlib.sha1(base.encode()).hexdigest()[:8]
        name = f"{name[:27]}-{digest}"
    candidate, n = name, 1
    while candidate in existing:
        n += 1
        candidate = f"{name[:36]}-{n}"
    return candidate


def snapshot_feature(ctx: ToolContext[Any], guest: Guest) -> bool:
    raw = api_for(ctx).get(f"{guest.path}/feature", feature="snapshot") or {}
    return bool(raw.get("hasFeature"))


def plan_safety_snapshot(
    ctx: ToolContext[Any], guest: Guest, change: str, mode: str
) -> dict[str, Any]:
    """Whether this change gets an ``ha-`` snapshot first, its name, and why (for the preview)."""
    reason = ""
    if mode == "always":
        reason = "asked for by the action"
    elif guest.type == "lxc":
        if change in ("resize", "reboot"):
            reason = f"{change} of a container"
        elif change == "resources":
            critical = ctx.settings.critical_reason(ctx.ref)
            if critical:
                reason = f"resource change on a critical guest ({critical})"
    if not reason:
        return {"safety_snapshot": "", "snapshot_reason": ""}
    if not snapshot_feature(ctx, guest):
        if target_of(ctx).snapshots.required:
            raise ToolFailure(
                ToolErrorKind.UNSUPPORTED,
                f"{guest.label} cannot be snapshotted (its storage has no snapshot support), and "
                f"a safety snapshot is required before this change ({reason}); set "
                "snapshots.required: false on the target to proceed without one",
            )
        return {"safety_snapshot": "", "snapshot_reason": f"NO safety snapshot possible ({reason})"}
    existing = {str(s.get("name")) for s in api_for(ctx).get(f"{guest.path}/snapshot") or []}
    name = safety_snapshot_name(ctx.incident_id, existing)
    return {"safety_snapshot": name, "snapshot_reason": reason}


def safety_note(before: dict[str, Any]) -> str:
    if before.get("safety_snapshot"):
        return f"; safety snapshot {before['safety_snapshot']} first ({before['snapshot_reason']})"
    if before.get("snapshot_reason"):
        return f"; {before['snapshot_reason']}"
    return ""


def take_safety_snapshot(
    ctx: ToolContext[Any], guest: Guest, before: dict[str, Any], change: str
) -> dict[str, Any] | None:
    name = before.get("safety_snapshot")
    if not name:
        return None
    api = api_for(ctx)
    existing = {str(s.get("name")) for s in api.get(f"{guest.path}/snapshot") or []}
    if name in existing:  # a retried activity: this change already took it
        return {"name": name, "created": False}
    description = (
        f"{SAFETY_MARK} before {change}"
        + (f" ({ctx.incident_id})" if ctx.incident_id else "")
        + (f", change {ctx.change_id}" if ctx.change_id else "")
    )
    upid = api.post(f"{guest.path}/snapshot", snapname=name, description=description)
    info = wait_task(ctx, guest.node, upid, f"safety snapshot {name} of {guest.label}")
    return {"name": name, "created": True, "task": info}


def prune_safety_snapshots(ctx: ToolContext[Any], guest: Guest, current: str) -> dict[str, Any]:
    """Keep the newest ``keep`` of our own ``ha-`` snapshots (and none older than ``max_age``)."""
    policy = target_of(ctx).snapshots
    ours = [s for s in list_snapshots(ctx, guest) if s["safety"] and s["name"] != current]
    ours.sort(key=lambda s: s["snaptime"] or 0, reverse=True)
    keep_others = policy.keep - (1 if current else 0)
    max_age = policy.max_age.total_seconds()
    doomed = [
        s
        for i, s in enumerate(ours)
        if i >= keep_others or (s["age_seconds"] is not None and s["age_seconds"] > max_age)
    ]
    pruned, errors = [], []
    api = api_for(ctx)
    for snap in doomed:
        try:
            upid = api.delete(f"{guest.path}/snapshot/{snap['name']}")
            wait_task(ctx, guest.node, upid, f"prune snapshot {snap['name']}")
            pruned.append(snap["name"])
        except (ToolFailure, ResourceException) as exc:  # never fail the change over a prune
            errors.append(f"{snap['name']}: {getattr(exc, 'message', None) or exc}")
    return {"pruned": pruned, "prune_errors": errors}


def snapshot_compensation(
    before: dict[str, Any],
) -> tuple[str, dict[str, Any]] | None:
    name = before.get("safety_snapshot")
    if not name:
        return None
    return ("proxmox.snapshot_rollback", {"snapshot": name, "start": bool(before["running"])})


def guest_location(before: dict[str, Any]) -> str:
    kind = "CT" if before["type"] == "lxc" else "VM"
    name = f" ({before['name']})" if before.get("name") else ""
    return f"{kind} {before['vmid']}{name} on node {before['node']}"
