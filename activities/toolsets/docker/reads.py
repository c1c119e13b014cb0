"""Docker read tools: what an operator checks first."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.docker.client import (
    LOG_LINE_LIMIT,
    TOOLSET,
    client_for,
    container_for,
    describe_container,
)
from core.models import ToolErrorKind
from core.units import human_size as mib


@TOOLSET.read(
    "inspect", "A container's state, exit code, OOM kill, restarts, health log and limits."
)
def inspect(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    data = describe_container(container_for(ctx))
    state = data["state"]
    data["_summary"] = (
        f"{ctx.where()}: {state['status']}, exit {state['exit_code']}, "
        f"oom={state['oom_killed']}, health={state['health']}, restarts={data['restart_count']}"
    )
    return data


class LogsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tail: int = Field(default=100, ge=1, le=5000)
    since_seconds: int | None = Field(default=None, ge=1, description="only lines newer than this")


@TOOLSET.read("logs", "The last lines of a container's log (stdout and stderr).", LogsParams)
def logs(ctx: ToolContext[LogsParams]) -> dict[str, Any]:
    container = container_for(ctx)
    since = None
    if ctx.params.since_seconds:
        since = datetime.now(UTC) - timedelta(seconds=ctx.params.since_seconds)
    raw = container.logs(tail=ctx.params.tail, since=since, timestamps=True)
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    lines = [line[:LOG_LINE_LIMIT] for line in text.splitlines()]
    return {"lines": lines, "count": len(lines), "_summary": f"{len(lines)} log lines"}


class ListParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    all: bool = True
    status: str | None = Field(default=None, description="created|running|exited|paused|dead")


@TOOLSET.read(
    "containers",
    "Containers on an engine with state, health and image.",
    ListParams,
    needs_resource=False,
)
def containers(ctx: ToolContext[ListParams]) -> dict[str, Any]:
    filters = {"status": ctx.params.status} if ctx.params.status else None
    items = client_for(ctx).containers.list(all=ctx.params.all, filters=filters)
    rows = [
        {
            "name": d["name"],
            "id": d["id"],
            "image": d["image"],
            "status": d["state"]["status"],
            "health": d["state"]["health"],
            "exit_code": d["state"]["exit_code"],
            "restart_count": d["restart_count"],
        }
        for d in (describe_container(c) for c in items)
    ]
    return {"containers": rows, "count": len(rows)}


@TOOLSET.read(
    "images", "Images with tags and sizes, the dangling ones and the total.", needs_resource=False
)
def images(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    client = client_for(ctx)
    used = {c.attrs.get("Image") for c in client.containers.list(all=True)}
    rows = []
    for image in client.images.list():
        rows.append(
            {
                "id": image.id,
                "tags": image.tags,
                "size": image.attrs.get("Size", 0),
                "created": image.attrs.get("Created"),
                "dangling": not image.tags,
                "in_use": image.id in used,
            }
        )
    dangling = [r for r in rows if r["dangling"]]
    return {
        "images": rows,
        "count": len(rows),
        "total_size": sum(r["size"] for r in rows),
        "dangling_count": len(dangling),
        "dangling_size": sum(r["size"] for r in dangling),
    }


@TOOLSET.read(
    "networks", "Networks with driver, IPAM and attached containers.", needs_resource=False
)
def networks(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    rows = []
    for net in client_for(ctx).networks.list(greedy=True):
        attrs = net.attrs
        rows.append(
            {
                "name": attrs.get("Name"),
                "id": attrs.get("Id", "")[:12],
                "driver": attrs.get("Driver"),
                "scope": attrs.get("Scope"),
                "internal": attrs.get("Internal", False),
                "ipam": (attrs.get("IPAM") or {}).get("Config") or [],
                "containers": sorted(
                    v.get("Name", k) for k, v in (attrs.get("Containers") or {}).items()
                ),
            }
        )
    return {"networks": rows, "count": len(rows)}


@TOOLSET.read(
    "volumes", "Volumes, which containers mount them, and the orphaned ones.", needs_resource=False
)
def volumes(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    client = client_for(ctx)
    mounted: dict[str, list[str]] = {}
    for c in client.containers.list(all=True):
        for mount in c.attrs.get("Mounts") or []:
            if mount.get("Type") == "volume":
                mounted.setdefault(mount.get("Name", ""), []).append(c.name)
    rows = [
        {
            "name": v.name,
            "driver": v.attrs.get("Driver"),
            "mountpoint": v.attrs.get("Mountpoint"),
            "created": v.attrs.get("CreatedAt"),
            "used_by": sorted(mounted.get(v.name, [])),
            "orphaned": v.name not in mounted,
        }
        for v in client.volumes.list()
    ]
    return {
        "volumes": rows,
        "count": len(rows),
        "orphaned": [r["name"] for r in rows if r["orphaned"]],
    }


def _cpu_percent(stats: dict[str, Any]) -> float | None:
    cpu, pre = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    try:
        cpu_delta = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
        system_delta = cpu["system_cpu_usage"] - pre["system_cpu_usage"]
    except (KeyError, TypeError):
        return None
    online = cpu.get("online_cpus") or len(cpu["cpu_usage"].get("percpu_usage") or []) or 1
    if system_delta <= 0:
        return None
    return round(cpu_delta / system_delta * online * 100, 2)


@TOOLSET.read("stats", "A container's CPU %, memory use vs limit, network and block I/O.")
def stats(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    container = container_for(ctx)
    if container.status != "running":
        return {"running": False, "_summary": f"{ctx.where()} is {container.status}: no live stats"}
    raw = container.stats(stream=False)
    memory = raw.get("memory_stats") or {}
    inner = memory.get("stats") or {}
    cache = inner.get("total_inactive_file", inner.get("inactive_file", inner.get("cache", 0))) or 0
    usage = max((memory.get("usage") or 0) - cache, 0)
    limit = memory.get("limit") or 0
    host_limit = container.attrs.get("HostConfig", {}).get("Memory") or 0
    nets = raw.get("networks") or {}
    blkio = (raw.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    percent = round(usage / limit * 100, 2) if limit else None
    return {
        "running": True,
        "cpu_percent": _cpu_percent(raw),
        "memory_usage": usage,
        "memory_limit": limit,
        "memory_limited": bool(host_limit),
        "memory_percent": percent,
        "pids": (raw.get("pids_stats") or {}).get("current"),
        "net_rx_bytes": sum(n.get("rx_bytes", 0) for n in nets.values()),
        "net_tx_bytes": sum(n.get("tx_bytes", 0) for n in nets.values()),
        "block_read_bytes": sum(
            e.get("value", 0) for e in blkio if e.get("op", "").lower() == "read"
        ),
        "block_write_bytes": sum(
            e.get("value", 0) for e in blkio if e.get("op", "").lower() == "write"
        ),
        "_summary": f"{ctx.where()}: memory {mib(usage)} of {mib(limit)} ({percent}%)",
    }


@TOOLSET.read(
    "engine",
    "Engine version, health, counts and reclaimable space (system df).",
    needs_resource=False,
)
def engine(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    client = client_for(ctx)
    client.ping()
    info, version, df = client.info(), client.version(), client.df()
    images_df = df.get("Images") or []
    containers_df = df.get("Containers") or []
    volumes_df = df.get("Volumes") or []
    cache_df = df.get("BuildCache") or []
    reclaimable = {
        "images": sum(i.get("Size", 0) for i in images_df if not i.get("Containers")),
        "containers": sum(
            c.get("SizeRw", 0) or 0 for c in containers_df if c.get("State") != "running"
        ),
        "volumes": sum(
            (v.get("UsageData") or {}).get("Size", 0) or 0
            for v in volumes_df
            if (v.get("UsageData") or {}).get("RefCount", 0) == 0
        ),
        "build_cache": sum(b.get("Size", 0) for b in cache_df if not b.get("InUse")),
    }
    return {
        "server_version": version.get("Version"),
        "api_version": version.get("ApiVersion"),
        "os": info.get("OperatingSystem"),
        "kernel": info.get("KernelVersion"),
        "storage_driver": info.get("Driver"),
        "cgroup_version": info.get("CgroupVersion"),
        "ncpu": info.get("NCPU"),
        "memory_total": info.get("MemTotal"),
        "containers": info.get("Containers"),
        "containers_running": info.get("ContainersRunning"),
        "containers_stopped": info.get("ContainersStopped"),
        "images": info.get("Images"),
        "warnings": info.get("Warnings") or [],
        "layers_size": df.get("LayersSize", 0),
        "reclaimable": reclaimable,
        "reclaimable_total": sum(reclaimable.values()),
        "_summary": f"engine {version.get('Version')}: {info.get('ContainersRunning')} running, "
        f"{mib(sum(reclaimable.values()))} reclaimable",
    }


class DiskParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mountpoint: str | None = Field(
        default=None, description="a filesystem an alert names: is the engine's data on it?"
    )


@TOOLSET.read(
    "disk_usage",
    "Free space where the engine keeps its data, the largest container logs and dangling images.",
    DiskParams,
    needs_resource=False,
)
def disk_usage(ctx: ToolContext[DiskParams]) -> dict[str, Any]:
    client = client_for(ctx)
    root = str(client.info().get("DockerRootDir") or "")
    if not root or not os.path.isdir(root):
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED,
            f"the data root of engine {ctx.ref.target} ({root or 'unknown'}) is not on this host; "
            "disk diagnostics need the agent on the engine's host",
        )
    stat = os.statvfs(root)
    size, free = stat.f_blocks * stat.f_frsize, stat.f_bavail * stat.f_frsize
    mountpoint = ctx.params.mountpoint
    on_mountpoint = True
    if mountpoint is not None:
        on_mountpoint = (
            os.path.isdir(mountpoint) and os.stat(mountpoint).st_dev == os.stat(root).st_dev
        )
    logs = []
    for container in client.containers.list(all=True):
        path = container.attrs.get("LogPath") or ""
        if path and os.path.exists(path):
            logs.append({"container": container.name, "size": os.path.getsize(path)})
    logs.sort(key=lambda entry: -int(entry["size"]))
    dangling = client.images.list(filters={"dangling": True})
    dangling_size = sum(image.attrs.get("Size", 0) for image in dangling)
    return {
        "data_root": root,
        "mountpoint": mountpoint,
        "on_mountpoint": on_mountpoint,
        "size_bytes": size,
        "free_bytes": free,
        "free_percent": round(free / size * 100, 2) if size else None,
        "largest_log": logs[0] if logs else None,
        "logs": logs[:5],
        "dangling_count": len(dangling),
        "dangling_size": dangling_size,
        "_summary": f"{mib(free)} free of {mib(size)} at {root}; largest log "
        f"{logs[0]['container'] + ' ' + mib(logs[0]['size']) if logs else 'none'}; "
        f"{len(dangling)} dangling images ({mib(dangling_size)})",
    }
