"""Write tools that change a guest's memory, swap and cores, or grow a disk."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from activities.catalog import ToolContext, ToolFailure
from activities.toolsets.proxmox.client import (
    MIB,
    TOOLSET,
    Guest,
    api_for,
    find_guest,
    target_of,
    wait_task,
)
from activities.toolsets.proxmox.cluster import node_health
from activities.toolsets.proxmox.guest_info import (
    config_options,
    config_size,
    configured_memory_mib,
    guest_runtime,
)
from activities.toolsets.proxmox.safety import (
    SnapshotMode,
    guest_location,
    guest_state,
    plan_safety_snapshot,
    prune_safety_snapshots,
    safety_note,
    snapshot_compensation,
    take_safety_snapshot,
)
from core.models import Reversibility, RiskLevel, ToolErrorKind
from core.units import human_bytes, parse_size


def _size_param(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return parse_size(value)
    return value


class ResourceParams(BaseModel):
    """Absolute values. Sizes are bytes or with a unit (768m, 2g); unset means unchanged."""

    model_config = ConfigDict(extra="forbid")
    cores: int | None = Field(
        default=None, ge=0, le=8192, description="CPU cores; 0 removes a container's core limit"
    )
    memory: int | None = Field(default=None, description="memory (bytes or 2g), at least 16 MiB")
    swap: int | None = Field(default=None, ge=0, description="container swap (bytes or 512m)")
    snapshot: SnapshotMode = Field(
        default="auto", description="auto: only critical containers get a safety snapshot"
    )

    @field_validator("memory", "swap", mode="before")
    @classmethod
    def _sizes(cls, value: Any) -> Any:
        return _size_param(value)

    @model_validator(mode="after")
    def _consistent(self) -> ResourceParams:
        if self.cores is None and self.memory is None and self.swap is None:
            raise ValueError("give at least one of cores, memory, swap")
        if self.memory is not None and self.memory < 16 * MIB:
            raise ValueError("memory must be at least 16 MiB (16m)")
        return self


def _mib(value: int) -> int:
    return max(math.ceil(value / MIB), 0)


def current_resources(config: dict[str, Any], guest: Guest) -> dict[str, Any]:
    cores = config.get("cores")
    return {
        "cores": int(cores) if cores is not None else 0,
        "memory_mib": configured_memory_mib(config, guest.type),
        "swap_mib": int(config.get("swap", 512)) if guest.type == "lxc" else None,
    }


def planned_resources(params: ResourceParams, before: dict[str, Any]) -> dict[str, Any]:
    after = {k: before[k] for k in ("cores", "memory_mib", "swap_mib")}
    if params.cores is not None:
        after["cores"] = params.cores
    if params.memory is not None:
        after["memory_mib"] = _mib(params.memory)
    if params.swap is not None:
        after["swap_mib"] = _mib(params.swap)
    return after


def _resources_changed(params: ResourceParams, before: dict[str, Any]) -> bool:
    after = planned_resources(params, before)
    return any(after[k] != before[k] for k in after)


def capture_resources(ctx: ToolContext[ResourceParams]) -> dict[str, Any]:
    guest = find_guest(ctx)
    p = ctx.params
    if guest.type == "qemu" and p.swap is not None:
        raise ToolFailure(ToolErrorKind.INVALID, "swap is a container setting; VMs have none")
    if guest.type == "qemu" and p.cores == 0:
        raise ToolFailure(ToolErrorKind.INVALID, "a VM needs at least one core")
    config = api_for(ctx).get(f"{guest.path}/config") or {}
    state = guest_state(ctx, guest)
    before = state | current_resources(config, guest)
    after = planned_resources(p, before)
    node = node_health(ctx, guest.node)
    if not node["online"]:
        raise ToolFailure(ToolErrorKind.UNREACHABLE, f"node {guest.node} is {node['status']}")
    before["node_memory_free"] = node["memory"]["free"]
    before["node_cpus"] = node["cpus"]
    increase = (after["memory_mib"] - before["memory_mib"]) * MIB
    reserve = target_of(ctx).memory_reserve
    if increase > 0 and increase + reserve > node["memory"]["free"]:
        raise ToolFailure(
            ToolErrorKind.CONFLICT,
            f"node {guest.node} has {human_bytes(node['memory']['free'])} free; raising "
            f"{guest.label}'s memory by {human_bytes(increase)} would leave less than the "
            f"{human_bytes(reserve)} reserve (memory_reserve)",
        )
    if increase < 0 and state["running"]:
        used = int(guest_runtime(ctx, guest)["mem"])
        if after["memory_mib"] * MIB < used:
            raise ToolFailure(
                ToolErrorKind.CONFLICT,
                f"{guest.label} uses {human_bytes(used)} now; a {after['memory_mib']} MiB limit "
                "would push it into the OOM killer",
            )
    if node["cpus"] and after["cores"] > int(node["cpus"]):
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"node {guest.node} has {node['cpus']} CPUs; {after['cores']} cores is more",
        )
    if _resources_changed(p, before):
        before |= plan_safety_snapshot(ctx, guest, "resources", p.snapshot)
    else:
        before |= {"safety_snapshot": "", "snapshot_reason": ""}
    return before


def _resources_facts(ctx: ToolContext[ResourceParams], before: dict[str, Any]) -> dict[str, Any]:
    """What changes on which guest (not the node's free memory, which moves by the second)."""
    keys = ("memory_mib", "swap_mib", "cores")
    return {
        "guest": guest_location(before),
        "before": {k: before[k] for k in keys},
        "after": planned_resources(ctx.params, before),
    }


def _resources_shrink(ctx: ToolContext[ResourceParams], before: dict[str, Any]) -> list[str]:
    """Fewer cores or less memory than the guest runs with now: a human decides."""
    after = planned_resources(ctx.params, before)
    risks = []
    for key, label in (
        ("memory_mib", "memory (MiB)"),
        ("swap_mib", "swap (MiB)"),
        ("cores", "cores"),
    ):
        old, new = before.get(key), after.get(key)
        if old is None or new is None:
            continue  # not a setting of this kind of guest (a VM has no swap)
        if key == "cores" and (new == 0 or new == old):
            continue  # 0 removes a container's limit: more, not less
        if new < old or (key == "cores" and old == 0 and new):
            risks.append(
                f"lowers {label} of {guest_location(before)}: {old or 'unlimited'} → {new}"
            )
    return risks


def _resources_preview(ctx: ToolContext[ResourceParams], before: dict[str, Any]) -> str:
    after = planned_resources(ctx.params, before)
    parts = []
    if after["memory_mib"] != before["memory_mib"]:
        parts.append(f"memory {before['memory_mib']} MiB → {after['memory_mib']} MiB")
    if after["swap_mib"] != before["swap_mib"]:
        parts.append(f"swap {before['swap_mib']} MiB → {after['swap_mib']} MiB")
    if after["cores"] != before["cores"]:
        parts.append(f"cores {before['cores'] or 'unlimited'} → {after['cores'] or 'unlimited'}")
    if not parts:
        return f"no-op: resources of {guest_location(before)} already as requested"
    return (
        ", ".join(parts)
        + f" on {guest_location(before)} (node free memory {human_bytes(before['node_memory_free'])})"
        + safety_note(before)
    )


def _resources_compensation(
    ctx: ToolContext[ResourceParams], before: dict[str, Any]
) -> tuple[str, dict[str, Any]] | None:
    if not _resources_changed(ctx.params, before):
        return None
    snap = snapshot_compensation(before)
    if snap:
        return snap
    after = planned_resources(ctx.params, before)
    undo: dict[str, Any] = {}
    if after["memory_mib"] != before["memory_mib"]:
        undo["memory"] = before["memory_mib"] * MIB
    if after["swap_mib"] != before["swap_mib"]:
        undo["swap"] = before["swap_mib"] * MIB
    if after["cores"] != before["cores"]:
        undo["cores"] = before["cores"]
    return ("proxmox.update_resources", undo)


@TOOLSET.write(
    "update_resources",
    "Change a guest's cores, memory or container swap; refuses a memory increase the node "
    "cannot hold. Critical containers get a safety snapshot first.",
    ResourceParams,
    level=RiskLevel.SOFT,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_resources,
    preview=_resources_preview,
    compensate=_resources_compensation,
    is_noop=lambda ctx, b: not _resources_changed(ctx.params, b),
    facts=_resources_facts,
    risks=_resources_shrink,
    timeout=timedelta(minutes=12),
)
def update_resources(ctx: ToolContext[ResourceParams]) -> dict[str, Any]:
    guest = find_guest(ctx)
    api = api_for(ctx)
    before = ctx.before or capture_resources(ctx)
    current = current_resources(api.get(f"{guest.path}/config") or {}, guest)
    after = planned_resources(ctx.params, before)
    changes: dict[str, Any] = {}
    delete: list[str] = []
    if after["memory_mib"] != current["memory_mib"]:
        changes["memory"] = after["memory_mib"]
    if after["swap_mib"] != current["swap_mib"] and after["swap_mib"] is not None:
        changes["swap"] = after["swap_mib"]
    if after["cores"] != current["cores"]:
        if after["cores"]:
            changes["cores"] = after["cores"]
        else:
            delete.append("cores")
    snap = None
    info: dict[str, Any] = {}
    if changes or delete:  # idempotent: a retry after success finds nothing to change
        increase = (after["memory_mib"] - current["memory_mib"]) * MIB
        if increase > 0:
            free = node_health(ctx, guest.node).get("memory", {}).get("free", 0)
            if increase + target_of(ctx).memory_reserve > free:
                raise ToolFailure(
                    ToolErrorKind.CONFLICT,
                    f"node {guest.node} now has only {human_bytes(free)} free for a "
                    f"{human_bytes(increase)} increase",
                )
        snap = take_safety_snapshot(ctx, guest, before, "update_resources")
        if delete:
            changes["delete"] = ",".join(delete)
        if guest.type == "lxc":
            api.put(f"{guest.path}/config", **changes)
        else:
            upid = api.post(f"{guest.path}/config", **changes)
            info = wait_task(ctx, guest.node, upid, f"config change of {guest.label}")
    config = api.get(f"{guest.path}/config") or {}
    pending_keys: list[str] = []
    if guest.type == "qemu":
        # A running VM keeps changes it cannot hotplug as pending until its next start.
        for row in api.get(f"{guest.path}/pending") or []:
            if "pending" in row:
                config[str(row.get("key"))] = row["pending"]
                pending_keys.append(str(row.get("key")))
    applied = current_resources(config, guest)
    mismatched = [k for k in after if after[k] != applied[k]]
    if mismatched:
        raise ToolFailure(
            ToolErrorKind.FAILED,
            f"{guest.label}: {', '.join(mismatched)} did not take effect "
            f"(wanted {after}, config has {applied})",
        )
    data: dict[str, Any] = applied | {"task": info}
    if guest.type == "qemu":
        data["pending_reboot"] = pending_keys
    runtime = guest_runtime(ctx, guest)
    data["maxmem"] = runtime["maxmem"]
    data["memory_percent"] = runtime["memory_percent"]
    if snap:
        data["safety_snapshot"] = snap["name"]
        data.update(prune_safety_snapshots(ctx, guest, snap["name"]))
    data["_summary"] = _resources_preview(ctx, before).removeprefix("no-op: ")
    return data


class ResizeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    disk: str = Field(
        default="rootfs",
        pattern=r"^(rootfs|mp\d+|scsi\d+|virtio\d+|sata\d+|ide\d+)$",
        description="rootfs, mp0, scsi0, virtio0...",
    )
    size: str = Field(
        pattern=r"^\+?\d+(\.\d+)?[KMGT]?$",
        description="new size (12G) or growth (+2G); disks only grow",
    )
    snapshot: SnapshotMode = "auto"


def _size_text(value: int) -> str:
    for unit, power in (("T", 4), ("G", 3), ("M", 2), ("K", 1)):
        if value % 1024**power == 0:
            return f"{value // 1024**power}{unit}"
    return str(value)


def capture_resize(ctx: ToolContext[ResizeParams]) -> dict[str, Any]:
    guest = find_guest(ctx)
    api = api_for(ctx)
    config = api.get(f"{guest.path}/config") or {}
    disk = ctx.params.disk
    if disk not in config:
        raise ToolFailure(ToolErrorKind.NOT_FOUND, f"{guest.label} has no disk {disk!r}")
    current = config_size(str(config[disk]))
    text = ctx.params.size
    amount = parse_size(text.lstrip("+").lower())
    wanted = current + amount if text.startswith("+") else amount
    if wanted < current:
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"{disk} of {guest.label} is {human_bytes(current)}; disks can only grow, not shrink "
            f"to {human_bytes(wanted)}",
        )
    volume = config_options(str(config[disk])).get("volume", "")
    store = volume.split(":", 1)[0]
    before = guest_state(ctx, guest) | {
        "disk": disk,
        "volume": volume,
        "storage": store,
        "size": current,
        "target_size": wanted,
    }
    growth = wanted - current
    if growth > 0 and store:
        rows = {r.get("storage"): r for r in api.get(f"nodes/{guest.node}/storage") or []}
        avail = int((rows.get(store) or {}).get("avail") or 0)
        before["storage_avail"] = avail
        if store in rows and growth > avail:
            raise ToolFailure(
                ToolErrorKind.CONFLICT,
                f"storage {store} on {guest.node} has {human_bytes(avail)} free; growing "
                f"{disk} by {human_bytes(growth)} does not fit",
            )
        before |= plan_safety_snapshot(ctx, guest, "resize", ctx.params.snapshot)
    else:
        before |= {"safety_snapshot": "", "snapshot_reason": ""}
    return before


def _resize_compensation(
    ctx: ToolContext[ResizeParams], before: dict[str, Any]
) -> tuple[str, dict[str, Any]] | Reversibility | None:
    if before["target_size"] == before["size"]:
        return None
    return snapshot_compensation(before) or Reversibility.IRREVERSIBLE


@TOOLSET.write(
    "resize_disk",
    "Grow a guest's disk (never shrinks; irreversible in place). Containers get a safety "
    "snapshot first, whose rollback is the way back.",
    ResizeParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=capture_resize,
    preview=lambda ctx, b: (
        f"no-op: {b['disk']} of {guest_location(b)} is already {human_bytes(b['size'])}"
        if b["target_size"] == b["size"]
        else f"grow {b['disk']} ({b['volume']}) of {guest_location(b)} from {human_bytes(b['size'])} to "
        f"{human_bytes(b['target_size'])}" + safety_note(b)
    ),
    compensate=_resize_compensation,
    is_noop=lambda ctx, b: b["target_size"] == b["size"],
    timeout=timedelta(minutes=12),
)
def resize_disk(ctx: ToolContext[ResizeParams]) -> dict[str, Any]:
    guest = find_guest(ctx)
    api = api_for(ctx)
    before = ctx.before or capture_resize(ctx)
    disk = before["disk"]
    current = config_size(str((api.get(f"{guest.path}/config") or {}).get(disk, "")))
    snap = None
    info: dict[str, Any] = {}
    if current < before["target_size"]:  # a retry after success finds the disk grown
        snap = take_safety_snapshot(ctx, guest, before, "resize_disk")
        upid = api.put(f"{guest.path}/resize", disk=disk, size=_size_text(before["target_size"]))
        info = wait_task(ctx, guest.node, upid, f"resize of {disk} of {guest.label}")
    size = config_size(str((api.get(f"{guest.path}/config") or {}).get(disk, "")))
    data: dict[str, Any] = {"disk": disk, "size": size, "task": info}
    if snap:
        data["safety_snapshot"] = snap["name"]
        data.update(prune_safety_snapshots(ctx, guest, snap["name"]))
    data["_summary"] = f"{disk} of {guest.label} is now {human_bytes(size)}"
    return data
