"""Read tools for guests: list, runtime status, configuration, snapshots, resource usage."""

from __future__ import annotations

import re
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import NoParams, ToolContext
from activities.toolsets.proxmox.client import (
    MIB,
    SAFETY_MARK,
    SAFETY_PREFIX,
    TOOLSET,
    Guest,
    api_for,
    find_guest,
    percent_of,
)
from activities.toolsets.proxmox.cluster import node_health
from core.units import human_bytes, human_duration, seconds_since


class GuestsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["lxc", "qemu"] | None = None
    status: Literal["running", "stopped", "paused"] | None = None
    node: str | None = None


def _guest_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row.get("id") or f"{row.get('type')}/{row.get('vmid')}",
        "vmid": int(row.get("vmid", 0)),
        "type": row.get("type"),
        "node": row.get("node"),
        "name": row.get("name"),
        "status": row.get("status"),
        "template": bool(row.get("template")),
        "cpu_percent": round(float(row.get("cpu") or 0) * 100, 2),
        "maxcpu": row.get("maxcpu"),
        "mem": row.get("mem"),
        "maxmem": row.get("maxmem"),
        "memory_percent": percent_of(float(row.get("mem") or 0), float(row.get("maxmem") or 0)),
        "disk": row.get("disk"),
        "maxdisk": row.get("maxdisk"),
        "uptime": row.get("uptime"),
        "hastate": row.get("hastate"),
        "tags": [t for t in str(row.get("tags") or "").split(";") if t],
        "lock": row.get("lock"),
    }


@TOOLSET.read(
    "guests",
    "LXC containers and VMs across the cluster with status, node and resource use.",
    GuestsParams,
    needs_resource=False,
)
def guests(ctx: ToolContext[GuestsParams]) -> dict[str, Any]:
    p = ctx.params
    rows = [
        _guest_row(r)
        for r in api_for(ctx).get("cluster/resources", type="vm") or []
        if (p.type is None or r.get("type") == p.type)
        and (p.status is None or r.get("status") == p.status)
        and (p.node is None or r.get("node") == p.node)
    ]
    rows.sort(key=lambda r: r["vmid"])
    running = sum(1 for r in rows if r["status"] == "running")
    return {
        "guests": rows,
        "count": len(rows),
        "running": running,
        "_summary": f"{len(rows)} guests, {running} running",
    }


def guest_runtime(ctx: ToolContext[Any], guest: Guest) -> dict[str, Any]:
    raw = api_for(ctx).get(f"{guest.path}/status/current") or {}
    mem, maxmem = int(raw.get("mem") or 0), int(raw.get("maxmem") or 0)
    swap, maxswap = int(raw.get("swap") or 0), int(raw.get("maxswap") or 0)
    disk, maxdisk = int(raw.get("disk") or 0), int(raw.get("maxdisk") or 0)
    ha = raw.get("ha") or {}
    status = str(raw.get("status") or guest.status)
    return {
        "id": f"{guest.type}/{guest.vmid}",
        "vmid": guest.vmid,
        "type": guest.type,
        "node": guest.node,
        "name": raw.get("name") or guest.name,
        "status": status,
        "running": status == "running",
        "qmpstatus": raw.get("qmpstatus"),
        "uptime": int(raw.get("uptime") or 0),
        "pid": raw.get("pid"),
        "cpu_percent": round(float(raw.get("cpu") or 0) * 100, 2),
        "cpus": raw.get("cpus"),
        "mem": mem,
        "maxmem": maxmem,
        "memory_percent": percent_of(mem, maxmem),
        "swap": swap,
        "maxswap": maxswap,
        "swap_percent": percent_of(swap, maxswap),
        "disk": disk,
        "maxdisk": maxdisk,
        "disk_percent": percent_of(disk, maxdisk) if guest.type == "lxc" else None,
        "netin": raw.get("netin"),
        "netout": raw.get("netout"),
        "lock": raw.get("lock"),
        "template": bool(raw.get("template") or guest.template),
        "ha": {"managed": bool(ha.get("managed")), "state": ha.get("state")},
    }


@TOOLSET.read(
    "guest_status",
    "A guest's runtime state: status, uptime, CPU, memory/swap/disk use, lock, HA state.",
)
def guest_status(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    guest = find_guest(ctx)
    data = guest_runtime(ctx, guest)
    data["_summary"] = (
        f"{guest.label} on {guest.node}: {data['status']}"
        + (f", up {human_duration(data['uptime'])}" if data["running"] else "")
        + f", memory {human_bytes(data['mem'])} of {human_bytes(data['maxmem'])}"
        + (f" ({data['memory_percent']}%)" if data["memory_percent"] is not None else "")
        + (f", locked ({data['lock']})" if data["lock"] else "")
    )
    return data


_SIZE_IN_CONFIG = re.compile(r"(?:^|,)size=(\d+(?:\.\d+)?)([KMGT]?)", re.IGNORECASE)
_DISK_KEY = re.compile(
    r"^(rootfs|mp\d+|scsi\d+|virtio\d+|sata\d+|ide\d+|efidisk\d+|tpmstate\d+|unused\d+)$"
)


def config_size(value: str) -> int:
    match = _SIZE_IN_CONFIG.search(value)
    if not match:
        return 0
    number, unit = float(match.group(1)), match.group(2).upper()
    return int(number * 1024 ** "BKMGT".index(unit or "B"))


def config_options(value: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for index, part in enumerate(value.split(",")):
        key, sep, val = part.partition("=")
        if sep:
            out[key] = val
        elif index == 0:
            out["volume"] = part
    return out


def configured_memory_mib(config: dict[str, Any], guest_type: str) -> int:
    raw = config.get("memory")
    if raw is None:
        return 512 if guest_type == "lxc" else 2048
    text = str(raw)
    match = re.search(r"(?:current=)?(\d+)", text)
    return int(match.group(1)) if match else 0


def describe_config(guest: Guest, config: dict[str, Any]) -> dict[str, Any]:
    disks = []
    for key in sorted(k for k in config if _DISK_KEY.match(k)):
        value = str(config[key])
        if "media=cdrom" in value:
            continue
        opts = config_options(value)
        volume = opts.get("volume", "")
        disks.append(
            {
                "key": key,
                "volume": volume,
                "storage": volume.split(":", 1)[0] if ":" in volume else "",
                "size": config_size(value),
                "mountpoint": "/" if key == "rootfs" else opts.get("mp"),
                "backup": opts.get("backup", "1") != "0",
            }
        )
    networks = []
    for key in sorted(k for k in config if re.fullmatch(r"net\d+", k)):
        opts = config_options(str(config[key]))
        networks.append(
            {
                "key": key,
                "name": opts.get("name"),
                "bridge": opts.get("bridge"),
                "ip": opts.get("ip"),
                "gw": opts.get("gw"),
                "hwaddr": opts.get("hwaddr")
                or next((v for k, v in opts.items() if k in ("virtio", "e1000", "vmxnet3")), None),
                "firewall": opts.get("firewall") == "1",
                "tag": opts.get("tag"),
            }
        )
    memory = configured_memory_mib(config, guest.type)
    cores = config.get("cores")
    return {
        "id": f"{guest.type}/{guest.vmid}",
        "vmid": guest.vmid,
        "type": guest.type,
        "node": guest.node,
        "name": config.get("hostname") or config.get("name") or guest.name,
        "cores": int(cores) if cores is not None else None,
        "sockets": int(config.get("sockets", 1)) if guest.type == "qemu" else None,
        "memory_mib": memory,
        "memory_bytes": memory * MIB,
        "swap_mib": int(config.get("swap", 512)) if guest.type == "lxc" else None,
        "onboot": str(config.get("onboot", "0")) == "1",
        "protection": str(config.get("protection", "0")) == "1",
        "features": config_options(str(config.get("features", "")))
        if config.get("features")
        else {},
        "unprivileged": str(config.get("unprivileged", "0")) == "1"
        if guest.type == "lxc"
        else None,
        "ostype": config.get("ostype"),
        "disks": disks,
        "networks": networks,
        "parent_snapshot": config.get("parent"),
        "lock": config.get("lock"),
        "tags": [t for t in str(config.get("tags") or "").split(";") if t],
    }


@TOOLSET.read(
    "guest_config",
    "A guest's configuration: cores, memory, swap, rootfs/mount points/disks with sizes, "
    "networks, onboot, protection, features, pending changes (VMs).",
)
def guest_config(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    guest = find_guest(ctx)
    api = api_for(ctx)
    data = describe_config(guest, api.get(f"{guest.path}/config") or {})
    if guest.type == "qemu":
        pending = api.get(f"{guest.path}/pending") or []
        data["pending"] = [
            {"key": p.get("key"), "value": p.get("value"), "pending": p.get("pending")}
            for p in pending
            if "pending" in p or p.get("delete")
        ]
    root = next((d for d in data["disks"] if d["key"] in ("rootfs", "scsi0", "virtio0")), None)
    data["_summary"] = (
        f"{guest.label}: {data['cores'] or 'all'} cores, {data['memory_mib']} MiB"
        + (f" + {data['swap_mib']} MiB swap" if data["swap_mib"] is not None else "")
        + (f", {root['key']} {human_bytes(root['size'])} on {root['storage']}" if root else "")
        + f", onboot={'yes' if data['onboot'] else 'no'}"
    )
    return data


def list_snapshots(ctx: ToolContext[Any], guest: Guest) -> list[dict[str, Any]]:
    now = time.time()
    rows = []
    for snap in api_for(ctx).get(f"{guest.path}/snapshot") or []:
        if snap.get("name") == "current":
            continue
        description = str(snap.get("description") or "")
        rows.append(
            {
                "name": snap.get("name"),
                "description": description.strip(),
                "snaptime": snap.get("snaptime"),
                "age_seconds": seconds_since(snap.get("snaptime"), now),
                "parent": snap.get("parent"),
                "vmstate": bool(snap.get("vmstate")),
                "safety": str(snap.get("name", "")).startswith(SAFETY_PREFIX)
                and SAFETY_MARK in description,
            }
        )
    rows.sort(key=lambda r: r["snaptime"] or 0)
    return rows


@TOOLSET.read("snapshots", "A guest's snapshots with age, parent and whether the agents took it.")
def snapshots(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    guest = find_guest(ctx)
    rows = list_snapshots(ctx, guest)
    safety = [r["name"] for r in rows if r["safety"]]
    return {
        "snapshots": rows,
        "count": len(rows),
        "names": [r["name"] for r in rows],
        "safety": safety,
        "newest": rows[-1]["name"] if rows else None,
        "_summary": f"{guest.label}: {len(rows)} snapshots ({len(safety)} safety)"
        + (
            f", newest {rows[-1]['name']} ({human_duration(rows[-1]['age_seconds'])} old)"
            if rows
            else ""
        ),
    }


class UsageParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    memory_percent: float = Field(default=90, gt=0, le=100)
    swap_percent: float = Field(default=80, gt=0, le=100)
    disk_percent: float = Field(default=90, gt=0, le=100)
    cpu_percent: float = Field(default=90, gt=0)


@TOOLSET.read(
    "resource_usage",
    "A guest's memory, swap, disk and CPU use against thresholds, with its node's free memory.",
    UsageParams,
)
def resource_usage(ctx: ToolContext[UsageParams]) -> dict[str, Any]:
    guest = find_guest(ctx)
    runtime = guest_runtime(ctx, guest)
    node = node_health(ctx, guest.node)
    p = ctx.params
    checks = {
        "memory_percent": (runtime["memory_percent"], p.memory_percent),
        "swap_percent": (runtime["swap_percent"], p.swap_percent),
        "disk_percent": (runtime["disk_percent"], p.disk_percent),
        "cpu_percent": (runtime["cpu_percent"], p.cpu_percent),
    }
    over = [k for k, (value, limit) in checks.items() if value is not None and value >= limit]
    return {
        "id": runtime["id"],
        "status": runtime["status"],
        "running": runtime["running"],
        "memory_used": runtime["mem"],
        "memory_limit": runtime["maxmem"],
        "memory_percent": runtime["memory_percent"],
        "swap_used": runtime["swap"],
        "swap_limit": runtime["maxswap"],
        "swap_percent": runtime["swap_percent"],
        "disk_used": runtime["disk"],
        "disk_size": runtime["maxdisk"],
        "disk_percent": runtime["disk_percent"],
        "cpu_percent": runtime["cpu_percent"],
        "thresholds": {k: limit for k, (_, limit) in checks.items()},
        "over": over,
        "ok": not over,
        "node": guest.node,
        "node_memory_free": node.get("memory", {}).get("free") if node["online"] else None,
        "node_memory_percent": node.get("memory", {}).get("percent") if node["online"] else None,
        "_summary": f"{guest.label}: memory {runtime['memory_percent']}%, swap "
        f"{runtime['swap_percent']}%, disk {runtime['disk_percent']}%, cpu {runtime['cpu_percent']}%"
        + (f"; over: {', '.join(over)}" if over else ""),
    }
