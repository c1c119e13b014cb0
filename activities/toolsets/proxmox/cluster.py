"""Read tools for the cluster and its nodes: quorum, node health, storage, tasks, HA."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.proxmox.client import (
    TOOLSET,
    api_for,
    cluster_summary,
    find_guest,
    node_of,
    parse_resource,
    percent_of,
    upid_node,
)
from activities.toolsets.proxmox_api import task_log
from core.models import ToolErrorKind
from core.units import human_bytes, human_duration, seconds_since


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
        "memory_percent": percent_of(float(row.get("mem") or 0), float(row.get("maxmem") or 0)),
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
            "percent": percent_of(used, total),
        },
        "swap": {
            "total": swap.get("total", 0),
            "used": swap.get("used", 0),
            "percent": percent_of(float(swap.get("used") or 0), float(swap.get("total") or 0)),
        },
        "rootfs": {
            "total": rootfs.get("total", 0),
            "used": rootfs.get("used", 0),
            "avail": rootfs.get("avail", rootfs.get("free", 0)),
            "percent": percent_of(float(rootfs.get("used") or 0), float(rootfs.get("total") or 0)),
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
        f"{human_bytes(data['memory']['used'])} of {human_bytes(data['memory']['total'])} "
        f"({data['memory']['percent']}%), rootfs {data['rootfs']['percent']}%, load "
        f"{data['loadavg'][0] if data['loadavg'] else '?'}, up {human_duration(data['uptime'])}"
    )
    return data


class StorageParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    warn_percent: float = Field(default=85, gt=0, le=100)


def _storage_row(node: str, row: dict[str, Any], warn: float) -> dict[str, Any]:
    total, used = int(row.get("total") or 0), int(row.get("used") or 0)
    percent = percent_of(used, total)
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
                "age_seconds": seconds_since(i.get("ctime")),
            }
            for i in largest
        ]
        data["_summary"] = (
            f"{one['id']} ({one['type']}): {human_bytes(one['used'])} of "
            f"{human_bytes(one['total'])} used ({one['used_percent']}%)"
        )
    else:
        data["_summary"] = (
            f"{len(rows)} storages, {len(data['over'])} over {ctx.params.warn_percent}%"
        )
    return data


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
