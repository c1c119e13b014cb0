"""Proxmox VE toolset (proxmoxer, API token auth), on any configured node or cluster.

Targets are ``proxmox:<target>/<id>`` with the pve-exporter's ``id`` forms: ``lxc/200``,
``qemu/100``, ``node/pve1``, ``storage/pve1/local``, ``cluster/<name>``; guests are found by vmid
across the cluster's nodes. Reads cover nodes, quorum, storage, guests, snapshots, tasks, HA and
backup coverage (with PBS evidence). Every write waits for its UPID task and reports its exit
status, has an exact preview, a before-state and a compensation. Risky container changes (resize,
reboot, a resource change on a critical guest) first take an ``ha-<incident>`` snapshot, register
the rollback to it as the compensation, and prune older ``ha-`` snapshots by the target's policy.
``restart_service`` runs ``pct exec`` over SSH on the guest's node and reports the unit's state
before and after.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import shlex
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from activities.catalog import NoParams, ToolContext, ToolFailure, Toolset
from activities.proxmox_api import translator
from core.config import ProxmoxTarget
from core.models import Reversibility, RiskLevel, ToolErrorKind
from core.units import human_size, parse_duration, parse_size

MIB = 1024 * 1024
SAFETY_PREFIX = "ha-"
SAFETY_MARK = "homelab-agents safety snapshot"
SNAPNAME = r"^[A-Za-z][A-Za-z0-9_-]{1,39}$"
UNREACHABLE_CODES = {595, 596, 597, 598, 599}


# --- errors ------------------------------------------------------------------------------------


def _resource_message(exc: ResourceException) -> str:
    """PVE puts its message in the HTTP reason phrase; parameter errors come in ``errors``."""
    message = str(exc.content or exc.status_message or "").strip()
    errors = exc.errors
    if isinstance(errors, dict) and errors:
        detail = "; ".join(f"{k}: {str(v).strip()}" for k, v in errors.items())
        message = f"{message} ({detail})" if message else detail
    return message or f"HTTP {exc.status_code}"


translate = translator(
    product="Proxmox VE API",
    section="proxmox",
    message=_resource_message,
    unreachable=frozenset(UNREACHABLE_CODES),
    ca_hint="a copy of /etc/pve/pve-root-ca.pem",
)


TOOLSET = Toolset(
    service="proxmox",
    description="Proxmox VE nodes and clusters: LXC containers, VMs, storage, snapshots, HA, backups.",
    translate=translate,
)


# --- client and resources ----------------------------------------------------------------------


def make_client(target: ProxmoxTarget) -> ProxmoxAPI:
    assert target.token_secret is not None
    return ProxmoxAPI(
        target.host,
        port=target.port,
        user=target.token_user,
        token_name=target.token_name,
        token_value=target.token_secret.get_secret_value(),
        verify_ssl=target.verify_ssl,
        timeout=target.timeout,
    )


def probe(target: ProxmoxTarget) -> str:
    api = make_client(target)
    version = api.get("version") or {}
    cluster = cluster_summary(api.get("cluster/status") or [])
    text = (
        f"PVE {version.get('version', '?')}, "
        + (f"cluster {cluster['cluster']} " if cluster["cluster"] else "standalone, ")
        + ("quorate" if cluster["quorate"] else "NOT QUORATE")
        + f", {cluster['nodes_online']}/{cluster['nodes_total']} nodes online"
    )
    if target.verify_ssl is False:
        text += "; WARNING: TLS verification is off (verify_ssl: false)"
    return text


TOOLSET.probe = probe


def api_for(ctx: ToolContext[Any]) -> ProxmoxAPI:
    return ctx.clients.client("proxmox", ctx.ref.target, make_client)


def target_of(ctx: ToolContext[Any]) -> ProxmoxTarget:
    target = ctx.clients.target("proxmox", ctx.ref.target)
    assert isinstance(target, ProxmoxTarget)
    return target


@dataclass(frozen=True)
class Resource:
    kind: Literal["guest", "lxc", "qemu", "node", "storage", "cluster", ""]
    vmid: int = 0
    node: str = ""
    storage: str = ""
    name: str = ""


def parse_resource(text: str) -> Resource:
    """The pve-exporter ``id`` forms, plus a bare vmid."""
    text = text.strip().strip("/")
    if not text:
        return Resource(kind="")
    parts = text.split("/")
    if len(parts) == 1 and parts[0].isdigit():
        return Resource(kind="guest", vmid=int(parts[0]))
    head = parts[0]
    if head in ("lxc", "qemu") and len(parts) == 2 and parts[1].isdigit():
        return Resource(kind=head, vmid=int(parts[1]))  # type: ignore[arg-type]
    if head == "node" and len(parts) == 2 and parts[1]:
        return Resource(kind="node", node=parts[1])
    if head == "storage" and len(parts) == 3 and all(parts[1:]):
        return Resource(kind="storage", node=parts[1], storage=parts[2])
    if head == "cluster" and len(parts) == 2:
        return Resource(kind="cluster", name=parts[1])
    raise ToolFailure(
        ToolErrorKind.INVALID,
        f"{text!r} is not a Proxmox resource (lxc/200, qemu/100, node/pve1, "
        "storage/pve1/local, cluster/name or a vmid)",
    )


@dataclass(frozen=True)
class Guest:
    vmid: int
    type: str  # lxc | qemu
    node: str
    name: str
    status: str
    template: bool

    @property
    def path(self) -> str:
        return f"nodes/{self.node}/{self.type}/{self.vmid}"

    @property
    def label(self) -> str:
        kind = "CT" if self.type == "lxc" else "VM"
        return f"{kind} {self.vmid}" + (f" ({self.name})" if self.name else "")


def find_guest(ctx: ToolContext[Any]) -> Guest:
    res = parse_resource(ctx.ref.resource)
    if res.kind not in ("guest", "lxc", "qemu"):
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"{ctx.ref.resource!r} is not a guest (use lxc/<vmid> or qemu/<vmid>)",
        )
    for row in api_for(ctx).get("cluster/resources", type="vm") or []:
        if int(row.get("vmid", -1)) != res.vmid:
            continue
        guest = Guest(
            vmid=res.vmid,
            type=str(row.get("type")),
            node=str(row.get("node")),
            name=str(row.get("name") or ""),
            status=str(row.get("status")),
            template=bool(row.get("template")),
        )
        if res.kind in ("lxc", "qemu") and guest.type != res.kind:
            raise ToolFailure(
                ToolErrorKind.NOT_FOUND,
                f"guest {res.vmid} on {ctx.ref.target} is a {guest.type}, not {res.kind}",
            )
        return guest
    raise ToolFailure(
        ToolErrorKind.NOT_FOUND, f"no guest with vmid {res.vmid} on proxmox target {ctx.ref.target}"
    )


def node_of(ctx: ToolContext[Any]) -> str:
    """The node a resource lives on (a guest's node, a storage's node, or the node itself)."""
    res = parse_resource(ctx.ref.resource)
    if res.kind in ("node", "storage"):
        return res.node
    if res.kind in ("guest", "lxc", "qemu"):
        return find_guest(ctx).node
    raise ToolFailure(
        ToolErrorKind.INVALID, f"{ctx.ref.resource or 'the target'} names no node or guest"
    )


def _pct(value: float, total: float) -> float | None:
    return round(value / total * 100, 2) if total else None


def _age(epoch: float | None, now: float | None = None) -> int | None:
    if not epoch:
        return None
    return max(int((now or time.time()) - float(epoch)), 0)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


# --- tasks -------------------------------------------------------------------------------------


def upid_node(upid: str) -> str:
    parts = upid.split(":")
    if len(parts) < 8 or parts[0] != "UPID":
        raise ToolFailure(ToolErrorKind.INVALID, f"{upid!r} is not a Proxmox task id (UPID:...)")
    return parts[1]


def task_log(api: ProxmoxAPI, node: str, upid: str, lines: int = 20) -> list[str]:
    try:
        rows = api.get(f"nodes/{node}/tasks/{upid}/log", start=0, limit=5000) or []
    except ResourceException:
        return []
    return [str(r.get("t", "")) for r in rows][-lines:]


def wait_task(ctx: ToolContext[Any], node: str, upid: str | None, what: str) -> dict[str, Any]:
    """Wait for a PVE task; its exit status decides success (``WARNINGS: n`` counts as done)."""
    if not upid:  # an older PVE finished the change synchronously
        return {"upid": None, "exitstatus": "OK", "seconds": 0.0}
    api = api_for(ctx)
    timeout = target_of(ctx).task_timeout.total_seconds()
    started = time.monotonic()
    delay = 0.1
    while True:
        status = api.get(f"nodes/{node}/tasks/{upid}/status") or {}
        if status.get("status") == "stopped":
            break
        if time.monotonic() - started > timeout:
            raise ToolFailure(
                ToolErrorKind.FAILED,
                f"{what}: task {upid} still running after {timeout:.0f}s "
                "(it may still finish; check it with proxmox.task)",
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)
    exitstatus = str(status.get("exitstatus", ""))
    result = {
        "upid": upid,
        "type": status.get("type"),
        "exitstatus": exitstatus,
        "seconds": round(time.monotonic() - started, 2),
    }
    if exitstatus == "OK" or exitstatus.startswith("WARNINGS"):
        return result
    log = [
        line
        for line in task_log(api, node, upid, 5)
        if line and line != "TASK ERROR: " + exitstatus
    ]
    kind = ToolErrorKind.FAILED
    lowered = exitstatus.lower()
    if "does not exist" in lowered or "no such" in lowered:
        kind = ToolErrorKind.NOT_FOUND
    elif any(s in lowered for s in ("already running", "not running", "is locked", "already used")):
        kind = ToolErrorKind.CONFLICT
    detail = f" (log: {' | '.join(log)})" if log else ""
    raise ToolFailure(kind, f"{what} failed: task {upid} ended with {exitstatus!r}{detail}")


# --- read tools --------------------------------------------------------------------------------


def cluster_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    cluster = next((r for r in rows if r.get("type") == "cluster"), None)
    nodes = [
        {
            "name": r.get("name"),
            "online": bool(r.get("online")),
            "ip": r.get("ip"),
            "nodeid": r.get("nodeid"),
            "local": bool(r.get("local")),
        }
        for r in rows
        if r.get("type") == "node"
    ]
    online = [n for n in nodes if n["online"]]
    return {
        "cluster": cluster.get("name", "") if cluster else "",
        "clustered": cluster is not None,
        # A standalone node has no corosync: it is its own quorum.
        "quorate": bool(cluster.get("quorate")) if cluster else bool(online),
        "nodes_total": len(nodes),
        "nodes_online": len(online),
        "nodes": nodes,
        "offline": [n["name"] for n in nodes if not n["online"]],
    }


@TOOLSET.read(
    "cluster_status",
    "Cluster name, quorum and which nodes are online (a standalone node is its own quorum).",
    needs_resource=False,
)
def cluster_status(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    data = cluster_summary(api_for(ctx).get("cluster/status") or [])
    data["_summary"] = (
        f"{data['cluster'] or ctx.ref.target}: "
        + ("quorate" if data["quorate"] else "NOT quorate")
        + f", {data['nodes_online']}/{data['nodes_total']} nodes online"
        + (f" (offline: {', '.join(data['offline'])})" if data["offline"] else "")
    )
    return data


def _node_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "node": row.get("node"),
        "online": row.get("status") == "online",
        "cpu_percent": round(float(row.get("cpu") or 0) * 100, 2),
        "maxcpu": row.get("maxcpu"),
        "memory_used": row.get("mem"),
        "memory_total": row.get("maxmem"),
        "memory_percent": _pct(float(row.get("mem") or 0), float(row.get("maxmem") or 0)),
        "uptime": row.get("uptime"),
    }


@TOOLSET.read("nodes", "Every node with online state, CPU and memory use.", needs_resource=False)
def nodes(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    rows = [_node_row(r) for r in api_for(ctx).get("nodes") or []]
    rows.sort(key=lambda r: str(r["node"]))
    offline = [r["node"] for r in rows if not r["online"]]
    return {
        "nodes": rows,
        "count": len(rows),
        "offline": offline,
        "_summary": f"{len(rows) - len(offline)}/{len(rows)} nodes online",
    }


def node_health(ctx: ToolContext[Any], node: str) -> dict[str, Any]:
    api = api_for(ctx)
    listed = {str(r.get("node")): r for r in api.get("nodes") or []}
    if node not in listed:
        raise ToolFailure(
            ToolErrorKind.NOT_FOUND, f"no node {node!r} in proxmox target {ctx.ref.target}"
        )
    if listed[node].get("status") != "online":
        return {"node": node, "online": False, "status": listed[node].get("status")}
    raw = api.get(f"nodes/{node}/status") or {}
    memory = raw.get("memory") or {}
    rootfs = raw.get("rootfs") or {}
    swap = raw.get("swap") or {}
    total = int(memory.get("total") or 0)
    used = int(memory.get("used") or 0)
    free = int(memory["free"]) if memory.get("free") is not None else total - used
    cpuinfo = raw.get("cpuinfo") or {}
    loadavg = [float(x) for x in raw.get("loadavg") or []]
    return {
        "node": node,
        "online": True,
        "status": "online",
        "cpu_percent": round(float(raw.get("cpu") or 0) * 100, 2),
        "cpus": cpuinfo.get("cpus"),
        "cpu_model": cpuinfo.get("model"),
        "iowait_percent": round(float(raw.get("wait") or 0) * 100, 2),
        "loadavg": loadavg,
        "load_per_cpu": round(loadavg[0] / cpuinfo["cpus"], 2)
        if loadavg and cpuinfo.get("cpus")
        else None,
        "memory": {
            "total": total,
            "used": used,
            "free": free,
            "percent": _pct(used, total),
        },
        "swap": {
            "total": swap.get("total", 0),
            "used": swap.get("used", 0),
            "percent": _pct(float(swap.get("used") or 0), float(swap.get("total") or 0)),
        },
        "rootfs": {
            "total": rootfs.get("total", 0),
            "used": rootfs.get("used", 0),
            "avail": rootfs.get("avail", rootfs.get("free", 0)),
            "percent": _pct(float(rootfs.get("used") or 0), float(rootfs.get("total") or 0)),
        },
        "pveversion": raw.get("pveversion"),
        "kernel": raw.get("kversion"),
        "uptime": raw.get("uptime"),
    }


@TOOLSET.read(
    "node_status",
    "A node's health: CPU, memory, swap, rootfs, load, PVE and kernel version, uptime "
    "(the resource's node for a guest or storage).",
)
def node_status(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    data = node_health(ctx, node_of(ctx))
    if not data["online"]:
        data["_summary"] = f"node {data['node']} is {data['status']}"
        return data
    data["_summary"] = (
        f"node {data['node']}: cpu {data['cpu_percent']}%, memory "
        f"{human_size(data['memory']['used'])} of {human_size(data['memory']['total'])} "
        f"({data['memory']['percent']}%), rootfs {data['rootfs']['percent']}%, load "
        f"{data['loadavg'][0] if data['loadavg'] else '?'}, up {_duration(data['uptime'])}"
    )
    return data


class StorageParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    warn_percent: float = Field(default=85, gt=0, le=100)


def _storage_row(node: str, row: dict[str, Any], warn: float) -> dict[str, Any]:
    total, used = int(row.get("total") or 0), int(row.get("used") or 0)
    percent = _pct(used, total)
    return {
        "id": f"storage/{node}/{row.get('storage')}",
        "node": node,
        "storage": row.get("storage"),
        "type": row.get("type"),
        "content": sorted(str(row.get("content") or "").split(",")) if row.get("content") else [],
        "shared": bool(row.get("shared")),
        "active": bool(row.get("active")),
        "enabled": bool(row.get("enabled", 1)),
        "total": total,
        "used": used,
        "avail": int(row.get("avail") or 0),
        "used_percent": percent,
        "over": bool(percent is not None and percent >= warn),
    }


@TOOLSET.read(
    "storage",
    "Storage usage per node (one storage for storage/<node>/<id>, a node's for node/<node>), "
    "with the largest volumes of a single storage.",
    StorageParams,
    needs_resource=False,
)
def storage(ctx: ToolContext[StorageParams]) -> dict[str, Any]:
    api = api_for(ctx)
    res = parse_resource(ctx.ref.resource)
    if res.kind in ("node", "storage"):
        node_names = [res.node]
    elif res.kind in ("guest", "lxc", "qemu"):
        node_names = [find_guest(ctx).node]
    else:
        node_names = [
            str(r.get("node")) for r in api.get("nodes") or [] if r.get("status") == "online"
        ]
    rows: list[dict[str, Any]] = []
    for node in sorted(node_names):
        for row in api.get(f"nodes/{node}/storage") or []:
            if res.kind == "storage" and row.get("storage") != res.storage:
                continue
            rows.append(_storage_row(node, row, ctx.params.warn_percent))
    if res.kind == "storage" and not rows:
        raise ToolFailure(
            ToolErrorKind.NOT_FOUND, f"no storage {res.storage!r} on node {res.node!r}"
        )
    data: dict[str, Any] = {
        "storages": rows,
        "count": len(rows),
        "over": [r["id"] for r in rows if r["over"]],
    }
    if res.kind == "storage":
        one = rows[0]
        data.update({k: one[k] for k in ("id", "type", "total", "used", "avail", "used_percent")})
        content = api.get(f"nodes/{res.node}/storage/{res.storage}/content") or []
        by_kind: dict[str, int] = {}
        for item in content:
            by_kind[str(item.get("content"))] = by_kind.get(str(item.get("content")), 0) + int(
                item.get("size") or 0
            )
        largest = sorted(content, key=lambda i: -int(i.get("size") or 0))[:10]
        data["content_bytes"] = by_kind
        data["largest"] = [
            {
                "volid": i.get("volid"),
                "content": i.get("content"),
                "size": i.get("size"),
                "vmid": i.get("vmid"),
                "age_seconds": _age(i.get("ctime")),
            }
            for i in largest
        ]
        data["_summary"] = (
            f"{one['id']} ({one['type']}): {human_size(one['used'])} of "
            f"{human_size(one['total'])} used ({one['used_percent']}%)"
        )
    else:
        data["_summary"] = (
            f"{len(rows)} storages, {len(data['over'])} over {ctx.params.warn_percent}%"
        )
    return data


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
        "memory_percent": _pct(float(row.get("mem") or 0), float(row.get("maxmem") or 0)),
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
        "memory_percent": _pct(mem, maxmem),
        "swap": swap,
        "maxswap": maxswap,
        "swap_percent": _pct(swap, maxswap),
        "disk": disk,
        "maxdisk": maxdisk,
        "disk_percent": _pct(disk, maxdisk) if guest.type == "lxc" else None,
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
        + (f", up {_duration(data['uptime'])}" if data["running"] else "")
        + f", memory {human_size(data['mem'])} of {human_size(data['maxmem'])}"
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


def _options(value: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for index, part in enumerate(value.split(",")):
        key, sep, val = part.partition("=")
        if sep:
            out[key] = val
        elif index == 0:
            out["volume"] = part
    return out


def _memory_mib(config: dict[str, Any], guest_type: str) -> int:
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
        opts = _options(value)
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
        opts = _options(str(config[key]))
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
    memory = _memory_mib(config, guest.type)
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
        "features": _options(str(config.get("features", ""))) if config.get("features") else {},
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
        + (f", {root['key']} {human_size(root['size'])} on {root['storage']}" if root else "")
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
                "age_seconds": _age(snap.get("snaptime"), now),
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
            f", newest {rows[-1]['name']} ({_duration(rows[-1]['age_seconds'])} old)"
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


class TaskParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    upid: str = Field(
        pattern=r"^UPID:[^:]+:[0-9A-Fa-f]+:[0-9A-Fa-f]+:[0-9A-Fa-f]+:[^:]*:[^:]*:[^:]*:"
    )
    lines: int = Field(default=50, ge=1, le=5000)


@TOOLSET.read(
    "task", "A task's status, exit status and log by UPID.", TaskParams, needs_resource=False
)
def task(ctx: ToolContext[TaskParams]) -> dict[str, Any]:
    node = upid_node(ctx.params.upid)
    api = api_for(ctx)
    status = api.get(f"nodes/{node}/tasks/{ctx.params.upid}/status") or {}
    done = status.get("status") == "stopped"
    exitstatus = status.get("exitstatus")
    ok = bool(done and (exitstatus == "OK" or str(exitstatus).startswith("WARNINGS")))
    return {
        "upid": ctx.params.upid,
        "node": node,
        "type": status.get("type"),
        "id": status.get("id"),
        "user": status.get("user"),
        "status": status.get("status"),
        "running": not done,
        "exitstatus": exitstatus,
        "ok": ok,
        "starttime": status.get("starttime"),
        "log": task_log(api, node, ctx.params.upid, ctx.params.lines),
        "_summary": f"task {status.get('type')} {status.get('id') or ''} on {node}: "
        + ("running" if not done else f"{exitstatus}"),
    }


class TasksParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=20, ge=1, le=500)
    errors_only: bool = False
    typefilter: str | None = Field(default=None, pattern=r"^[a-z]+$")


@TOOLSET.read(
    "tasks",
    "Recent tasks of a guest (or of a node for node/<name>): type, user, exit status.",
    TasksParams,
)
def tasks(ctx: ToolContext[TasksParams]) -> dict[str, Any]:
    res = parse_resource(ctx.ref.resource)
    query: dict[str, Any] = {"limit": ctx.params.limit}
    if res.kind in ("guest", "lxc", "qemu"):
        guest = find_guest(ctx)
        node = guest.node
        query["vmid"] = guest.vmid
    else:
        node = node_of(ctx)
    if ctx.params.errors_only:
        query["errors"] = 1
    if ctx.params.typefilter:
        query["typefilter"] = ctx.params.typefilter
    rows = [
        {
            "upid": t.get("upid"),
            "type": t.get("type"),
            "id": t.get("id"),
            "user": t.get("user"),
            "starttime": t.get("starttime"),
            "endtime": t.get("endtime"),
            "status": t.get("status", "running") if t.get("endtime") else "running",
            "ok": t.get("status") == "OK" or str(t.get("status", "")).startswith("WARNINGS"),
        }
        for t in api_for(ctx).get(f"nodes/{node}/tasks", **query) or []
    ]
    failed = [r for r in rows if r["status"] != "running" and not r["ok"]]
    return {
        "tasks": rows,
        "count": len(rows),
        "failed": len(failed),
        "last_failure": failed[0] if failed else None,
        "_summary": f"{len(rows)} recent tasks on {node}, {len(failed)} failed",
    }


@TOOLSET.read(
    "ha_status",
    "HA manager state: quorum, master, node LRMs and services (the guest's own for a guest).",
    needs_resource=False,
)
def ha_status(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    api = api_for(ctx)
    current = api.get("cluster/ha/status/current") or []
    resources = {str(r.get("sid")): r for r in api.get("cluster/ha/resources") or []}
    quorum: dict[str, Any] = next((e for e in current if e.get("type") == "quorum"), {})
    master: dict[str, Any] = next((e for e in current if e.get("type") == "master"), {})
    lrms = [
        {"node": e.get("node"), "status": e.get("status")}
        for e in current
        if e.get("type") == "lrm"
    ]
    services = [
        {
            "sid": e.get("sid"),
            "node": e.get("node"),
            "state": e.get("state"),
            "request_state": e.get("request_state"),
            "crm_state": e.get("crm_state"),
            "status": e.get("status"),
            "group": (resources.get(str(e.get("sid"))) or {}).get("group"),
        }
        for e in current
        if e.get("type") == "service"
    ]
    data: dict[str, Any] = {
        "enabled": bool(resources) or bool(services),
        "quorum_ok": str(quorum.get("status", "")).upper() == "OK" if quorum else None,
        "quorate": bool(quorum.get("quorate")) if quorum else None,
        "master": master.get("node"),
        "master_status": master.get("status"),
        "lrms": lrms,
        "services": services,
        "errors": [s["sid"] for s in services if s["state"] in ("error", "fence")],
    }
    res = parse_resource(ctx.ref.resource)
    if res.kind in ("guest", "lxc", "qemu"):
        guest = find_guest(ctx)
        sid = f"{'ct' if guest.type == 'lxc' else 'vm'}:{guest.vmid}"
        data["guest"] = next((s for s in services if s["sid"] == sid), None)
        data["guest_managed"] = data["guest"] is not None
    data["_summary"] = (
        "HA not configured"
        if not data["enabled"]
        else f"HA: master {data['master']}, {len(services)} services, {len(data['errors'])} in error"
    )
    return data


class CoverageParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_age: str = Field(default="26h", description="a backup older than this is stale (26h, 7d)")

    @field_validator("max_age")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not isinstance(parse_duration(value), timedelta):
            raise ValueError(f"{value!r} is not a duration such as 26h or 7d")
        return value

    @property
    def max_age_seconds(self) -> float:
        parsed = parse_duration(self.max_age)
        assert isinstance(parsed, timedelta)
        return parsed.total_seconds()


def _job_covers(job: dict[str, Any], vmid: int, node: str) -> bool:
    if not job.get("enabled", 1) or str(job.get("enabled", "1")) == "0":
        return False
    if job.get("node") and job.get("node") != node:
        return False
    excluded = {int(v) for v in str(job.get("exclude") or "").split(",") if v.strip().isdigit()}
    if str(job.get("all", "0")) == "1" or job.get("all") is True:
        return vmid not in excluded
    listed = {int(v) for v in str(job.get("vmid") or "").split(",") if v.strip().isdigit()}
    return vmid in listed


def _pbs_evidence(
    ctx: ToolContext[Any],
) -> tuple[dict[tuple[str, int], list[dict[str, Any]]], list[str]]:
    """Last backup per guest on every configured PBS (evidence beyond what PVE lists)."""
    from activities import pbs  # the PBS toolset's client, one path to every PBS

    found: dict[tuple[str, int], list[dict[str, Any]]] = {}
    errors: list[str] = []
    for target in ctx.settings.pbs:
        try:
            client = ctx.clients.client("pbs", target.name, pbs.make_client)
            for store in pbs.datastore_names(client, target):
                for group in client.get(f"admin/datastore/{store}/groups") or []:
                    kind = group.get("backup-type")
                    ident = str(group.get("backup-id", ""))
                    if kind not in ("ct", "vm") or not ident.isdigit():
                        continue
                    found.setdefault((kind, int(ident)), []).append(
                        {
                            "pbs": target.name,
                            "datastore": store,
                            "last_backup": group.get("last-backup"),
                            "count": group.get("backup-count"),
                        }
                    )
        except Exception as exc:  # evidence is best-effort: say what could not be read
            failure = pbs.translate(exc) if not isinstance(exc, ToolFailure) else exc
            errors.append(f"pbs {target.name}: {failure.message if failure else exc}")
    return found, errors


@TOOLSET.read(
    "backup_coverage",
    "Which guests no backup job covers, and each guest's newest backup (PVE backup storages, "
    "vzdump tasks and every configured PBS) against a maximum age.",
    CoverageParams,
    needs_resource=False,
)
def backup_coverage(ctx: ToolContext[CoverageParams]) -> dict[str, Any]:
    api = api_for(ctx)
    now = time.time()
    max_age = ctx.params.max_age_seconds
    vms = [r for r in api.get("cluster/resources", type="vm") or [] if not r.get("template")]
    jobs = api.get("cluster/backup") or []
    not_covered = {
        int(r.get("vmid", 0)) for r in api.get("cluster/backup-info/not-backed-up") or []
    }
    online = [str(r.get("node")) for r in api.get("nodes") or [] if r.get("status") == "online"]
    last: dict[int, dict[str, Any]] = {}
    seen_shared: set[str] = set()
    for node in online:
        for store in api.get(f"nodes/{node}/storage", content="backup") or []:
            name = str(store.get("storage"))
            if store.get("shared") and name in seen_shared:
                continue
            seen_shared.add(name)
            if not store.get("active", 1):
                continue
            for item in api.get(f"nodes/{node}/storage/{name}/content", content="backup") or []:
                vmid = int(item.get("vmid") or 0)
                if vmid and (vmid not in last or item.get("ctime", 0) > last[vmid]["ctime"]):
                    last[vmid] = {
                        "ctime": item.get("ctime", 0),
                        "volid": item.get("volid"),
                        "storage": name,
                        "verification": (item.get("verification") or {}).get("state"),
                    }
    pbs_found, pbs_errors = _pbs_evidence(ctx)
    res = parse_resource(ctx.ref.resource)
    wanted = find_guest(ctx).vmid if res.kind in ("guest", "lxc", "qemu") else None
    rows = []
    for vm in sorted(vms, key=lambda r: int(r.get("vmid", 0))):
        vmid = int(vm.get("vmid", 0))
        if wanted is not None and vmid != wanted:
            continue
        kind = "ct" if vm.get("type") == "lxc" else "vm"
        pbs_rows = pbs_found.get((kind, vmid), [])
        times = [last[vmid]["ctime"]] if vmid in last else []
        times += [r["last_backup"] for r in pbs_rows if r.get("last_backup")]
        newest = max(times) if times else None
        age = _age(newest, now)
        vzdump = None
        node = str(vm.get("node"))
        if node in online:
            recent = api.get(f"nodes/{node}/tasks", typefilter="vzdump", vmid=vmid, limit=1) or []
            if recent:
                vzdump = {
                    "upid": recent[0].get("upid"),
                    "status": recent[0].get("status"),
                    "starttime": recent[0].get("starttime"),
                    "ok": recent[0].get("status") == "OK",
                }
        covered = vmid not in not_covered and any(_job_covers(j, vmid, node) for j in jobs)
        rows.append(
            {
                "id": f"{vm.get('type')}/{vmid}",
                "vmid": vmid,
                "name": vm.get("name"),
                "covered": covered,
                "jobs": [j.get("id") for j in jobs if _job_covers(j, vmid, node)],
                "last_backup": newest,
                "last_backup_age_seconds": age,
                "last_backup_on": last.get(vmid, {}).get("volid"),
                "recent": age is not None and age <= max_age,
                "last_vzdump": vzdump,
                "pbs": pbs_rows,
            }
        )
    uncovered = [r["id"] for r in rows if not r["covered"]]
    stale = [r["id"] for r in rows if not r["recent"]]
    data: dict[str, Any] = {
        "guests": rows,
        "jobs": [
            {
                "id": j.get("id"),
                "schedule": j.get("schedule"),
                "enabled": str(j.get("enabled", "1")) != "0",
                "storage": j.get("storage"),
            }
            for j in jobs
        ],
        "uncovered": uncovered,
        "stale": stale,
        "max_age": ctx.params.max_age,
        "pbs_errors": pbs_errors,
    }
    if wanted is not None:
        if not rows:
            raise ToolFailure(ToolErrorKind.NOT_FOUND, f"guest {wanted} is a template or unknown")
        row = rows[0]
        data.update({k: row[k] for k in row if k not in ("id",)})
        data["id"] = row["id"]
        data["_summary"] = (
            f"{row['id']}: "
            + ("covered by " + ", ".join(row["jobs"]) if row["covered"] else "in NO backup job")
            + (
                f"; newest backup {_duration(row['last_backup_age_seconds'])} old"
                if row["last_backup"]
                else "; no backup found"
            )
            + (
                f" (PBS: {', '.join(r['pbs'] + '/' + r['datastore'] for r in row['pbs'])})"
                if row["pbs"]
                else ""
            )
        )
    else:
        data["_summary"] = (
            f"{len(rows)} guests: {len(uncovered)} in no backup job, {len(stale)} without a "
            f"backup newer than {ctx.params.max_age}"
        )
    return data


# --- write helpers -----------------------------------------------------------------------------


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
    }


def _after(
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


def _safety_note(before: dict[str, Any]) -> str:
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


def _snapshot_compensation(
    before: dict[str, Any],
) -> tuple[str, dict[str, Any]] | None:
    name = before.get("safety_snapshot")
    if not name:
        return None
    return ("proxmox.snapshot_rollback", {"snapshot": name, "start": bool(before["running"])})


# --- write tools: power ------------------------------------------------------------------------


def capture_power(ctx: ToolContext[Any]) -> dict[str, Any]:
    guest = find_guest(ctx)
    if guest.template:
        raise ToolFailure(ToolErrorKind.INVALID, f"{guest.label} is a template, not a guest to run")
    return guest_state(ctx, guest)


def _where(before: dict[str, Any]) -> str:
    kind = "CT" if before["type"] == "lxc" else "VM"
    name = f" ({before['name']})" if before.get("name") else ""
    return f"{kind} {before['vmid']}{name} on node {before['node']}"


@TOOLSET.write(
    "start",
    "Start a stopped guest and wait for its start task.",
    level=RiskLevel.SOFT,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_power,
    preview=lambda ctx, b: (
        f"no-op: {_where(b)} is already running"
        if b["running"]
        else f"start {_where(b)} (now {b['status']})"
    ),
    compensate=lambda ctx, b: None if b["running"] else ("proxmox.shutdown", {}),
    is_noop=lambda ctx, b: bool(b["running"]),
)
def start(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    guest = find_guest(ctx)
    if guest_state(ctx, guest)["running"]:
        return _after(ctx, guest, f"{guest.label} already running", {})
    upid = api_for(ctx).post(f"{guest.path}/status/start")
    info = wait_task(ctx, guest.node, upid, f"start of {guest.label}")
    return _after(ctx, guest, f"started {guest.label} on {guest.node}", info)


class ShutdownParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout: int = Field(default=60, ge=1, le=3600, description="seconds to wait for a clean stop")
    force_stop: bool = Field(default=True, description="hard-stop after the timeout")


@TOOLSET.write(
    "shutdown",
    "Shut a guest down cleanly (hard stop after the timeout if force_stop).",
    ShutdownParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_power,
    preview=lambda ctx, b: (
        f"shut down {_where(b)} (timeout {ctx.params.timeout}s"
        + (", then hard stop)" if ctx.params.force_stop else ", no hard stop)")
        if b["running"]
        else f"no-op: {_where(b)} is already {b['status']}"
    ),
    compensate=lambda ctx, b: ("proxmox.start", {}) if b["running"] else None,
    is_noop=lambda ctx, b: not b["running"],
    timeout=timedelta(minutes=65),
)
def shutdown(ctx: ToolContext[ShutdownParams]) -> dict[str, Any]:
    guest = find_guest(ctx)
    if not guest_state(ctx, guest)["running"]:
        return _after(ctx, guest, f"{guest.label} already stopped", {})
    upid = api_for(ctx).post(
        f"{guest.path}/status/shutdown",
        timeout=ctx.params.timeout,
        forceStop=int(ctx.params.force_stop),
    )
    info = wait_task(ctx, guest.node, upid, f"shutdown of {guest.label}")
    return _after(ctx, guest, f"shut down {guest.label}", info)


class RebootParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout: int = Field(default=60, ge=1, le=3600, description="seconds for the clean shutdown")
    snapshot: SnapshotMode = Field(
        default="auto", description="auto: containers get a safety snapshot; always: VMs too"
    )


def capture_reboot(ctx: ToolContext[RebootParams]) -> dict[str, Any]:
    before = capture_power(ctx)
    if not before["running"]:
        raise ToolFailure(ToolErrorKind.CONFLICT, f"{_where(before)} is not running: start it")
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
        f"reboot {_where(b)} (up {_duration(b['uptime'])}, shutdown timeout {ctx.params.timeout}s)"
        + _safety_note(b)
    ),
    compensate=lambda ctx, b: _snapshot_compensation(b),
    timeout=timedelta(minutes=65),
)
def reboot(ctx: ToolContext[RebootParams]) -> dict[str, Any]:
    guest = find_guest(ctx)
    before = ctx.before or capture_reboot(ctx)
    now = guest_state(ctx, guest)
    if now["running"] and before.get("pid") and now["pid"] and now["pid"] != before["pid"]:
        return _after(ctx, guest, f"{guest.label} was already rebooted by this change", {})
    snap = take_safety_snapshot(ctx, guest, before, "reboot")
    upid = api_for(ctx).post(f"{guest.path}/status/reboot", timeout=ctx.params.timeout)
    info = wait_task(ctx, guest.node, upid, f"reboot of {guest.label}")
    data = _after(ctx, guest, f"rebooted {guest.label}", info)
    if snap:
        data["safety_snapshot"] = snap["name"]
        data.update(prune_safety_snapshots(ctx, guest, snap["name"]))
    return data


# --- write tools: resources --------------------------------------------------------------------


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
        "memory_mib": _memory_mib(config, guest.type),
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
            f"node {guest.node} has {human_size(node['memory']['free'])} free; raising "
            f"{guest.label}'s memory by {human_size(increase)} would leave less than the "
            f"{human_size(reserve)} reserve (memory_reserve)",
        )
    if increase < 0 and state["running"]:
        used = int(guest_runtime(ctx, guest)["mem"])
        if after["memory_mib"] * MIB < used:
            raise ToolFailure(
                ToolErrorKind.CONFLICT,
                f"{guest.label} uses {human_size(used)} now; a {after['memory_mib']} MiB limit "
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
        return f"no-op: resources of {_where(before)} already as requested"
    return (
        ", ".join(parts)
        + f" on {_where(before)} (node free memory {human_size(before['node_memory_free'])})"
        + _safety_note(before)
    )


def _resources_compensation(
    ctx: ToolContext[ResourceParams], before: dict[str, Any]
) -> tuple[str, dict[str, Any]] | None:
    if not _resources_changed(ctx.params, before):
        return None
    snap = _snapshot_compensation(before)
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
                    f"node {guest.node} now has only {human_size(free)} free for a "
                    f"{human_size(increase)} increase",
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
            f"{disk} of {guest.label} is {human_size(current)}; disks can only grow, not shrink "
            f"to {human_size(wanted)}",
        )
    volume = _options(str(config[disk])).get("volume", "")
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
                f"storage {store} on {guest.node} has {human_size(avail)} free; growing "
                f"{disk} by {human_size(growth)} does not fit",
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
    return _snapshot_compensation(before) or Reversibility.IRREVERSIBLE


@TOOLSET.write(
    "resize_disk",
    "Grow a guest's disk (never shrinks; irreversible in place). Containers get a safety "
    "snapshot first, whose rollback is the way back.",
    ResizeParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=capture_resize,
    preview=lambda ctx, b: (
        f"no-op: {b['disk']} of {_where(b)} is already {human_size(b['size'])}"
        if b["target_size"] == b["size"]
        else f"grow {b['disk']} ({b['volume']}) of {_where(b)} from {human_size(b['size'])} to "
        f"{human_size(b['target_size'])}" + _safety_note(b)
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
    data["_summary"] = f"{disk} of {guest.label} is now {human_size(size)}"
    return data


# --- write tools: snapshots --------------------------------------------------------------------


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
        f"no-op: {_where(b)} already has snapshot {ctx.params.name}"
        if b["exists"]
        else f"snapshot {_where(b)} as {ctx.params.name} ({len(b['snapshots'])} existing)"
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
        f"roll {_where(b)} back to snapshot {b['snapshot']} (taken "
        f"{_duration(b['snapshot_age_seconds'])} ago; everything since is lost"
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
    data = _after(ctx, guest, f"rolled {guest.label} back to {before['snapshot']}", info)
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
        f"no-op: {_where(b)} has no snapshot {b['snapshot']}"
        if not b["exists"]
        else f"delete snapshot {b['snapshot']} of {_where(b)} ({_duration(b['age_seconds'])} old)"
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


# --- services inside containers (pct exec over SSH) --------------------------------------------


class ServiceParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9:_.@-]{0,200}$",
        description="systemd unit (nginx or nginx.service)",
    )

    @property
    def unit(self) -> str:
        known = (".service", ".socket", ".timer", ".target", ".path", ".mount")
        return self.service if self.service.endswith(known) else f"{self.service}.service"


class RestartServiceParams(ServiceParams):
    wait: int = Field(default=30, ge=1, le=600, description="seconds to wait for it to be active")


SHOW_PROPERTIES = (
    "Id,LoadState,ActiveState,SubState,MainPID,ExecMainStartTimestampMonotonic,NRestarts,Result"
)


@dataclass
class SshRun:
    exit_status: int
    stdout: str
    stderr: str


def _ssh_plan(ctx: ToolContext[Any], node: str) -> tuple[str, Path]:
    """The node's SSH address and the known_hosts file that must vouch for its key."""
    target = target_of(ctx)
    if target.ssh is None:
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED,
            f"proxmox target {target.name} has no `ssh` settings (key_file, known_hosts): "
            "commands inside containers need SSH to the node",
        )
    ssh = target.ssh
    known_hosts = ssh.known_hosts or Path.home() / ".ssh" / "known_hosts"
    if not known_hosts.is_file():
        raise ToolFailure(
            ToolErrorKind.FAILED,
            f"no known_hosts file at {known_hosts}: the node's host key must be trusted "
            "(set ssh.known_hosts)",
        )
    if node in ssh.nodes:
        return ssh.nodes[node], known_hosts
    cluster = cluster_summary(api_for(ctx).get("cluster/status") or [])
    if cluster["nodes_total"] > 1:
        ip = next((n["ip"] for n in cluster["nodes"] if n["name"] == node and n["ip"]), None)
        if ip:
            return str(ip), known_hosts
    if ssh.host:
        return ssh.host, known_hosts
    host = target.host
    return (host.rsplit(":", 1)[0] if host.count(":") == 1 else host), known_hosts


async def ssh_run(ctx: ToolContext[Any], node: str, command: list[str], limit: float) -> SshRun:
    """Run one command on a node over SSH (host key verified against known_hosts)."""
    import asyncssh

    host, known_hosts = await asyncio.to_thread(_ssh_plan, ctx, node)
    ssh = target_of(ctx).ssh
    assert ssh is not None
    line = shlex.join(command)
    try:
        async with asyncssh.connect(
            host,
            port=ssh.port,
            username=ssh.user,
            client_keys=[str(ssh.key_file)],
            known_hosts=str(known_hosts),
            agent_path=None,
            config=[],
            connect_timeout=ssh.timeout,
        ) as conn:
            result = await asyncio.wait_for(conn.run(line, check=False), limit)
    except asyncssh.HostKeyNotVerifiable as exc:
        raise ToolFailure(
            ToolErrorKind.FAILED,
            f"host key of {host}:{ssh.port} is not in {known_hosts}: {exc.reason}",
        ) from exc
    except asyncssh.PermissionDenied as exc:
        raise ToolFailure(
            ToolErrorKind.UNAUTHORIZED,
            f"SSH to {ssh.user}@{host}:{ssh.port} refused the key {ssh.key_file}",
        ) from exc
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        raise ToolFailure(
            ToolErrorKind.UNREACHABLE,
            f"SSH to {host}:{ssh.port} failed: {type(exc).__name__}: {exc}",
        ) from exc
    return SshRun(
        exit_status=int(result.exit_status if result.exit_status is not None else 255),
        stdout=str(result.stdout or ""),
        stderr=str(result.stderr or ""),
    )


async def pct_exec(
    ctx: ToolContext[Any], guest: Guest, command: list[str], limit: float = 60
) -> SshRun:
    return await ssh_run(ctx, guest.node, ["pct", "exec", str(guest.vmid), "--", *command], limit)


def parse_show(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


async def running_container(ctx: ToolContext[Any]) -> Guest:
    guest = await asyncio.to_thread(find_guest, ctx)
    if guest.type != "lxc":
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED,
            f"{guest.label} is a VM: services run inside containers only (pct exec)",
        )
    if guest.status != "running":
        raise ToolFailure(
            ToolErrorKind.CONFLICT, f"{guest.label} is {guest.status}: start it first"
        )
    return guest


async def service_state(ctx: ToolContext[Any], guest: Guest, unit: str) -> dict[str, Any]:
    run = await pct_exec(ctx, guest, ["systemctl", "show", f"--property={SHOW_PROPERTIES}", unit])
    if run.exit_status != 0:
        raise ToolFailure(
            ToolErrorKind.FAILED,
            f"pct exec {guest.vmid} -- systemctl show {unit} exited {run.exit_status}: "
            f"{(run.stderr or run.stdout).strip()[-500:]}",
        )
    props = parse_show(run.stdout)
    if props.get("LoadState") == "not-found":
        raise ToolFailure(ToolErrorKind.NOT_FOUND, f"no unit {unit} in {guest.label}")
    pid = props.get("MainPID", "0")
    return {
        "unit": unit,
        "vmid": guest.vmid,
        "node": guest.node,
        "load_state": props.get("LoadState"),
        "active_state": props.get("ActiveState"),
        "sub_state": props.get("SubState"),
        "active": props.get("ActiveState") == "active",
        "main_pid": int(pid) if pid.isdigit() else 0,
        "started_monotonic": props.get("ExecMainStartTimestampMonotonic"),
        "restarts": int(props["NRestarts"]) if props.get("NRestarts", "").isdigit() else None,
        "result": props.get("Result"),
    }


@TOOLSET.read(
    "service_status",
    "A systemd unit's state inside a running container (pct exec over SSH to its node).",
    ServiceParams,
)
async def service_status(ctx: ToolContext[ServiceParams]) -> dict[str, Any]:
    guest = await running_container(ctx)
    data = await service_state(ctx, guest, ctx.params.unit)
    data["_summary"] = (
        f"{ctx.params.unit} in {guest.label}: {data['active_state']} ({data['sub_state']})"
    )
    return data


async def capture_service(ctx: ToolContext[RestartServiceParams]) -> dict[str, Any]:
    guest = await running_container(ctx)
    return await service_state(ctx, guest, ctx.params.unit) | {"name": guest.name}


async def journal_tail(ctx: ToolContext[Any], guest: Guest, unit: str) -> list[str]:
    try:
        run = await pct_exec(
            ctx, guest, ["journalctl", "-u", unit, "-n", "10", "--no-pager", "-o", "cat"], 20
        )
    except ToolFailure:
        return []
    return run.stdout.strip().splitlines()[-10:] if run.exit_status == 0 else []


@TOOLSET.write(
    "restart_service",
    "Restart a systemd service inside a container (pct exec over SSH to the node) and report "
    "its state before and after.",
    RestartServiceParams,
    level=RiskLevel.SOFT,
    reversibility=Reversibility.STATELESS,
    capture=capture_service,
    preview=lambda ctx, b: (
        f"restart {b['unit']} in CT {b['vmid']}"
        + (f" ({b['name']})" if b.get("name") else "")
        + f" on node {b['node']} via pct exec (now {b['active_state']}/{b['sub_state']}, "
        f"pid {b['main_pid'] or '-'}; wait up to {ctx.params.wait}s for active)"
    ),
    timeout=timedelta(minutes=12),
)
async def restart_service(ctx: ToolContext[RestartServiceParams]) -> dict[str, Any]:
    guest = await running_container(ctx)
    unit = ctx.params.unit
    before = ctx.before or await service_state(ctx, guest, unit)
    now = await service_state(ctx, guest, unit)
    already = (
        now["active"]
        and before.get("started_monotonic")
        and now["started_monotonic"] != before["started_monotonic"]
    )
    run: SshRun | None = None
    if not already:
        run = await pct_exec(ctx, guest, ["systemctl", "restart", unit], ctx.params.wait + 30)
    deadline = time.monotonic() + ctx.params.wait
    after = await service_state(ctx, guest, unit)
    while after["active_state"] in ("activating", "deactivating", "reloading") and (
        time.monotonic() < deadline
    ):
        await asyncio.sleep(0.5)
        after = await service_state(ctx, guest, unit)
    state_before = {k: before.get(k) for k in ("active_state", "sub_state", "main_pid")}
    state_after = {k: after[k] for k in ("active_state", "sub_state", "main_pid")}
    if not after["active"] or (run is not None and run.exit_status != 0):
        journal = await journal_tail(ctx, guest, unit)
        why = (run.stderr or run.stdout).strip()[-300:] if run and run.exit_status else ""
        raise ToolFailure(
            ToolErrorKind.FAILED,
            f"restart of {unit} in {guest.label} did not leave it active: before {state_before}, "
            f"after {state_after}"
            + (f"; systemctl: {why}" if why else "")
            + (f"; journal: {' | '.join(journal)}" if journal else ""),
        )
    return {
        "unit": unit,
        "before": state_before,
        "after": state_after,
        "active": True,
        "main_pid": after["main_pid"],
        "_summary": f"{unit} in {guest.label}: {state_before['active_state']} (pid "
        f"{state_before['main_pid'] or '-'}) → {after['active_state']} (pid {after['main_pid']})"
        + (" (already restarted by this change)" if already else ""),
    }
